"""Deterministic, photo-like images for the replica CDNs (Pillow only).

A picture is drawn once as a small *scene* (sky, house, rooms, pool...) from
its seed; every variant is a crop/resize of that scene plus film grain, so all
variants of one photo are the same picture and perceptual hashes agree. Grain
comes from one seeded noise tile: never ``Image.effect_noise``, whose C
``rand()`` would make bytes depend on request order.

Encoded bytes are cached (bounded in-memory LRU plus an optional directory),
so a photo requested twice is rendered once and is byte-identical.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import random
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageOps

# Bump when drawing changes, so stale on-disk caches are not served.
RENDER_VERSION = "4"
_SCENE_WIDTH = 480
_GRAIN_SIDE = 3200


@dataclass(frozen=True)
class PhotoSpec:
    """One encoded file of one picture."""

    seed: int
    scene: str
    native: tuple[int, int]
    size: tuple[int, int]
    fmt: str = "JPEG"  # JPEG | WEBP | PNG
    quality: int = 85
    exif: str = ""  # "", "rotated", "gps", "rotated+gps"
    grain: float = 0.05


class ImageCache:
    """Thread-safe bytes cache: LRU bounded by total size, backed by an optional dir."""

    def __init__(self, max_bytes: int = 256 << 20, directory: Path | None = None) -> None:
        self._max = max_bytes
        self._dir = directory
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.renders = 0
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def get(self, key: str, produce: Callable[[], bytes]) -> bytes:
        digest = hashlib.sha1(f"{RENDER_VERSION}:{key}".encode()).hexdigest()
        with self._lock:
            data = self._items.get(digest)
            if data is not None:
                self._items.move_to_end(digest)
                return data
        data = self._read_disk(digest)
        if data is None:
            data = produce()
            self.renders += 1
            self._write_disk(digest, data)
        with self._lock:
            if digest not in self._items:
                self._items[digest] = data
                self._size += len(data)
            while self._size > self._max and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._size -= len(old)
        return data

    def _read_disk(self, digest: str) -> bytes | None:
        if self._dir is None:
            return None
        try:
            return (self._dir / digest[:2] / digest).read_bytes()
        except FileNotFoundError:
            return None

    def _write_disk(self, digest: str, data: bytes) -> None:
        if self._dir is None:
            return
        folder = self._dir / digest[:2]
        folder.mkdir(exist_ok=True)
        tmp = folder / f".{digest}.{os.getpid()}.{threading.get_ident()}"
        tmp.write_bytes(data)
        tmp.replace(folder / digest)


# --- scenes ---
def _rgb(rng: random.Random, lo: tuple[int, int, int], hi: tuple[int, int, int]) -> tuple:
    return tuple(rng.randint(a, b) for a, b in zip(lo, hi, strict=True))


@lru_cache(maxsize=128)
def scene(seed: int, kind: str, aspect: tuple[int, int]) -> Image.Image:
    """The picture itself, small; variants are cut from it."""
    width = _SCENE_WIDTH
    height = max(1, round(width * aspect[1] / aspect[0]))
    rng = random.Random(seed)
    draw_scene = _SCENES.get(kind, _exterior)
    image = draw_scene(rng, width, height)
    noise = Image.frombytes("L", (width, height), rng.randbytes(width * height))
    texture = noise.filter(ImageFilter.GaussianBlur(1.3)).convert("RGB")
    return Image.blend(image, texture, 0.16)


def _gradient(size: tuple[int, int], top: tuple, bottom: tuple) -> Image.Image:
    ramp = Image.linear_gradient("L").resize(size)
    return ImageOps.colorize(ramp, top, bottom)


def _exterior(rng: random.Random, w: int, h: int) -> Image.Image:
    image = _gradient((w, h), _rgb(rng, (40, 100, 190), (110, 160, 240)), (225, 232, 240))
    draw = ImageDraw.Draw(image)
    horizon = int(h * rng.uniform(0.5, 0.66))
    ridge = [(x, horizon - rng.randint(10, 60)) for x in range(0, w + 60, 60)]
    draw.polygon(
        [(0, horizon), *ridge, (w, horizon)], fill=_rgb(rng, (120, 90, 90), (160, 130, 140))
    )
    draw.rectangle([0, horizon, w, h], fill=_rgb(rng, (150, 120, 80), (200, 170, 120)))
    house_x, house_w = rng.randint(20, w // 3), rng.randint(w // 3, w // 2)
    wall_top = horizon - rng.randint(h // 6, h // 4)
    draw.rectangle(
        [house_x, wall_top, house_x + house_w, horizon + 12],
        fill=_rgb(rng, (190, 160, 120), (240, 215, 175)),
    )
    roof = _rgb(rng, (110, 50, 40), (170, 100, 80))
    peak = wall_top - rng.randint(h // 12, h // 6)
    draw.polygon(
        [
            (house_x - 18, wall_top),
            (house_x + house_w // 2, peak),
            (house_x + house_w + 18, wall_top),
        ],
        fill=roof,
    )
    for _ in range(rng.randint(2, 5)):
        x = rng.randint(house_x + 8, house_x + house_w - 36)
        draw.rectangle([x, wall_top + 14, x + 26, wall_top + 40], fill=(50, 70, 100))
    draw.rectangle(
        [house_x + house_w // 2 - 10, horizon - 30, house_x + house_w // 2 + 10, horizon + 12],
        fill=(90, 60, 40),
    )
    for _ in range(rng.randint(3, 9)):
        x, y, r = rng.randint(0, w), rng.randint(horizon - 40, h), rng.randint(10, 40)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=_rgb(rng, (30, 80, 30), (90, 140, 70)))
    return image


def _interior(rng: random.Random, w: int, h: int) -> Image.Image:
    wall = _rgb(rng, (170, 160, 140), (235, 230, 215))
    image = _gradient((w, h), wall, tuple(max(0, c - 60) for c in wall))
    draw = ImageDraw.Draw(image)
    floor_y = int(h * rng.uniform(0.6, 0.72))
    draw.polygon(
        [(0, h), (w, h), (w - w // 6, floor_y), (w // 6, floor_y)],
        fill=_rgb(rng, (110, 70, 40), (190, 150, 110)),
    )
    for i in range(1, 10):
        x = w // 6 + (w - w // 3) * i // 10
        draw.line([(x, floor_y), (x + (x - w // 2) // 2, h)], fill=(90, 60, 35), width=1)
    wx = rng.randint(w // 8, w // 2)
    draw.rectangle([wx, h // 8, wx + w // 4, floor_y - h // 6], fill=(225, 240, 255))
    draw.line(
        [(wx + w // 8, h // 8), (wx + w // 8, floor_y - h // 6)], fill=(240, 240, 240), width=3
    )
    for _ in range(rng.randint(2, 4)):
        x, bw = rng.randint(0, w - 60), rng.randint(40, 110)
        y = floor_y - rng.randint(20, 60)
        draw.rectangle(
            [x, y, x + bw, y + rng.randint(30, 70)], fill=_rgb(rng, (40, 40, 40), (160, 120, 100))
        )
    return image


def _kitchen(rng: random.Random, w: int, h: int) -> Image.Image:
    image = _interior(rng, w, h)
    draw = ImageDraw.Draw(image)
    counter = int(h * 0.55)
    cabinet = _rgb(rng, (200, 200, 200), (250, 250, 245))
    draw.rectangle([0, counter, w, counter + h // 5], fill=cabinet)
    draw.rectangle([0, counter - 6, w, counter + 4], fill=_rgb(rng, (40, 40, 40), (120, 110, 100)))
    for x in range(0, w, w // 8):
        draw.rectangle(
            [x + 3, h // 10, x + w // 8 - 3, h // 3], fill=cabinet, outline=(120, 120, 120)
        )
    return image


def _bath(rng: random.Random, w: int, h: int) -> Image.Image:
    image = _interior(rng, w, h)
    draw = ImageDraw.Draw(image)
    for y in range(0, h // 2, 18):
        draw.line([(0, y), (w, y)], fill=(200, 200, 205), width=1)
    draw.rectangle(
        [w // 3, h // 8, 2 * w // 3, h // 2], fill=(190, 205, 215), outline=(90, 90, 90), width=3
    )
    draw.ellipse([w // 3, int(h * 0.55), 2 * w // 3, int(h * 0.75)], fill=(245, 245, 245))
    return image


def _pool(rng: random.Random, w: int, h: int) -> Image.Image:
    image = _exterior(rng, w, h)
    draw = ImageDraw.Draw(image)
    top = int(h * 0.7)
    draw.polygon(
        [(w // 10, h - 8), (w - w // 10, h - 8), (w - w // 5, top), (w // 5, top)],
        fill=_rgb(rng, (30, 140, 190), (80, 190, 230)),
    )
    for y in range(top + 6, h - 8, 9):
        draw.arc([w // 4, y - 4, 3 * w // 4, y + 4], 0, 180, fill=(200, 240, 255))
    return image


_SCENES: dict[str, Callable[[random.Random, int, int], Image.Image]] = {
    "exterior": _exterior,
    "interior": _interior,
    "kitchen": _kitchen,
    "bath": _bath,
    "pool": _pool,
}


# --- grain and encoding ---
_grain_lock = threading.Lock()
_grain_tile: Image.Image | None = None


def _grain(size: tuple[int, int], seed: int) -> Image.Image:
    global _grain_tile
    with _grain_lock:
        if _grain_tile is None:
            side = _GRAIN_SIDE
            _grain_tile = Image.frombytes(
                "L", (side, side), random.Random(7).randbytes(side * side)
            )
        tile = _grain_tile
    if size[0] > tile.width or size[1] > tile.height:
        return tile.resize(size, Image.Resampling.NEAREST)
    rng = random.Random(seed ^ (size[0] << 16 | size[1]))
    x, y = rng.randint(0, tile.width - size[0]), rng.randint(0, tile.height - size[1])
    return tile.crop((x, y, x + size[0], y + size[1]))


def _cut(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Centre-crop ``image`` to the aspect of ``size``, then scale to it."""
    target = size[0] / size[1]
    width, height = image.size
    if abs(width / height - target) > 0.01:
        if width / height > target:
            new_w = round(height * target)
            box = ((width - new_w) // 2, 0, (width + new_w) // 2, height)
        else:
            new_h = round(width / target)
            box = (0, (height - new_h) // 2, width, (height + new_h) // 2)
        image = image.crop(box)
    # Bilinear, not bicubic: upscaling dominates render time and grain hides the difference.
    return image.resize(size, Image.Resampling.BILINEAR)


def render_photo(spec: PhotoSpec) -> bytes:
    picture = _cut(scene(spec.seed, spec.scene, spec.native), spec.size)
    if spec.grain:
        grain = _grain(spec.size, spec.seed).convert("RGB")
        picture = Image.blend(picture, grain, spec.grain)
    return encode(picture, spec.fmt, spec.quality, spec.exif)


def encode(image: Image.Image, fmt: str = "JPEG", quality: int = 85, exif: str = "") -> bytes:
    buf = io.BytesIO()
    options: dict[str, object] = {}
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = quality
    if exif:
        image, options["exif"] = _with_exif(image, exif)
    if fmt == "WEBP":
        options["method"] = 0  # fastest encoder: the replica must stay cheap
    image.save(buf, fmt, **options)
    return buf.getvalue()


def _with_exif(image: Image.Image, kind: str) -> tuple[Image.Image, Image.Exif]:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "EOS R6"
    if "rotated" in kind:
        # Stored sideways with Orientation=6: viewers rotate it upright again.
        image = image.transpose(Image.Transpose.ROTATE_90)
        exif[0x0112] = 6
    if "gps" in kind:
        gps = exif.get_ifd(0x8825)
        gps.update({1: "N", 2: (33.0, 29.0, 12.5), 3: "W", 4: (112.0, 4.0, 31.2)})
    return image, exif


# --- special files ---
def bomb() -> bytes:
    """A 12 KB PNG that decodes to 10000 x 10000 pixels (100 megapixels)."""
    buf = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def tiny(seed: int, scene_kind: str = "exterior") -> bytes:
    return render_photo(PhotoSpec(seed, scene_kind, (4, 3), (120, 90)))


def badge(width: int = 91, height: int = 31, label: str = "ARMLS") -> bytes:
    image = _gradient((width, height), (20, 60, 130), (10, 30, 80))
    draw = ImageDraw.Draw(image)
    draw.rectangle([1, 1, width - 2, height - 2], outline=(240, 240, 240))
    draw.text((6, height // 2 - 6), label, fill=(255, 255, 255))
    return encode(image, "PNG")


def headshot(seed: int) -> bytes:
    rng = random.Random(seed)
    image = _gradient((240, 240), _rgb(rng, (60, 60, 60), (140, 140, 160)), (220, 220, 225))
    draw = ImageDraw.Draw(image)
    skin = _rgb(rng, (140, 90, 60), (240, 200, 170))
    draw.ellipse([70, 40, 170, 150], fill=skin)
    draw.ellipse([30, 140, 210, 300], fill=_rgb(rng, (20, 20, 40), (90, 90, 120)))
    return encode(image, "JPEG", 88)


def static_map(width: int, height: int, seed: int) -> bytes:
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), (236, 232, 224))
    draw = ImageDraw.Draw(image)
    for x in range(rng.randint(0, 60), width, 90):
        draw.line([(x, 0), (x, height)], fill=(255, 255, 255), width=7)
    for y in range(rng.randint(0, 60), height, 70):
        draw.line([(0, y), (width, y)], fill=(255, 255, 255), width=5)
    draw.line([(0, height // 3), (width, height // 2)], fill=(250, 210, 110), width=10)
    cx, cy = width // 2, height // 2
    draw.ellipse([cx - 9, cy - 26, cx + 9, cy - 8], fill=(220, 50, 40))
    draw.polygon([(cx - 8, cy - 14), (cx + 8, cy - 14), (cx, cy)], fill=(220, 50, 40))
    return encode(image, "PNG")


# --- aerial imagery (Maricopa MapServer export) ---
_LOT_W, _LOT_D, _BLOCK_LOTS = 22.0, 32.0, 6  # metres; lots per block along x


def aerial(bbox: tuple[float, float, float, float], size: tuple[int, int], fmt: str) -> bytes:
    """An aerial-looking view of ``bbox`` (Web Mercator metres) at ``size`` pixels.

    Drawn from world coordinates, so overlapping requests show the same lots.
    """
    xmin, ymin, xmax, ymax = bbox
    width, height = size
    sx, sy = width / (xmax - xmin), height / (ymax - ymin)
    seed = int(xmin // 50) * 1_000_003 + int(ymin // 50)
    base = _gradient((64, 64), (176, 150, 112), (150, 128, 96)).resize(size)
    noise = Image.frombytes("L", (128, 128), random.Random(seed).randbytes(128 * 128))
    image = Image.blend(base, noise.resize(size, Image.Resampling.BICUBIC).convert("RGB"), 0.2)
    draw = ImageDraw.Draw(image)

    def px(x: float, y: float) -> tuple[float, float]:
        return (x - xmin) * sx, (ymax - y) * sy

    if _LOT_W * sx >= 3:
        i0, i1 = math.floor(xmin / _LOT_W), math.ceil(xmax / _LOT_W)
        j0, j1 = math.floor(ymin / _LOT_D), math.ceil(ymax / _LOT_D)
        for i in range(i0, min(i1, i0 + 300) + 1):
            for j in range(j0, min(j1, j0 + 300) + 1):
                _draw_lot(draw, px, i, j)
    street = _LOT_W * _BLOCK_LOTS
    for k in range(math.floor(xmin / street), math.ceil(xmax / street) + 1):
        x0, _ = px(k * street - 6, 0)
        x1, _ = px(k * street + 6, 0)
        draw.rectangle([x0, 0, x1, height], fill=(88, 88, 92))
    for k in range(math.floor(ymin / (2 * _LOT_D)), math.ceil(ymax / (2 * _LOT_D)) + 1):
        if k % 2 == 0:
            _, y0 = px(0, k * 2 * _LOT_D + 5)
            _, y1 = px(0, k * 2 * _LOT_D - 5)
            draw.rectangle([0, y0, width, y1], fill=(96, 96, 100))
    image = Image.blend(image, _grain(size, seed).convert("RGB"), 0.04)
    return encode(image, "PNG" if fmt.startswith("png") else "JPEG", 85)


def _draw_lot(draw: ImageDraw.ImageDraw, px: Callable, i: int, j: int) -> None:
    rng = random.Random(i * 1_000_003 + j)
    x, y = i * _LOT_W, j * _LOT_D
    draw.rectangle([*px(x, y + _LOT_D), *px(x + _LOT_W, y)], outline=(130, 115, 90))
    roof = _rgb(rng, (120, 70, 50), (200, 180, 160))
    draw.rectangle([*px(x + 4, y + _LOT_D - 6), *px(x + _LOT_W - 4, y + 12)], fill=roof)
    if rng.random() < 0.35:
        draw.rectangle([*px(x + 6, y + 10), *px(x + 14, y + 4)], fill=(40, 160, 210))
    for _ in range(rng.randint(0, 2)):
        cx, cy, r = x + rng.uniform(2, _LOT_W - 2), y + rng.uniform(2, 10), rng.uniform(1.5, 3)
        draw.ellipse([*px(cx - r, cy + r), *px(cx + r, cy - r)], fill=(60, 100, 50))
