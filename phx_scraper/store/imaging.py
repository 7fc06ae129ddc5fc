"""Validate and standardize one downloaded image (runs in a worker thread).

One decode serves every check, the thumbnails and the perceptual hashes
(computed on the largest thumbnail: the same hash, a fraction of the work).
Rejections carry a short reason that ends up
in the manifest and in the stats (``phx/image/rejected/<reason>``).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import imagehash
from PIL import Image, ImageOps

from phx_scraper.store.files import EXTENSIONS, md5_hex

# Magic bytes decide what a body is, never its Content-Type header.
_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)

_SAVE_FORMATS = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG", "webp": "WEBP"}


class ImageRejected(Exception):
    """The body is not an image the store accepts; ``reason`` says why."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Standard:
    """How stored images are standardized (from the PHX_IMAGE_* settings)."""

    min_width: int = 200
    min_height: int = 200
    max_pixels: int = 60_000_000
    max_side: int = 2048
    format: str = "jpeg"
    quality: int = 90
    thumb_sizes: tuple[int, ...] = (256,)


@dataclass(frozen=True)
class ProcessedImage:
    data: bytes
    ext: str
    width: int
    height: int
    source_md5: str
    phash: str
    dhash: str
    #: Thumbnail JPEG bytes per size (longest side in pixels).
    thumbs: dict[int, bytes]


def sniff(body: bytes) -> str | None:
    for magic, fmt in _MAGIC:
        if body.startswith(magic):
            return fmt
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return "WEBP"
    return None


def process(body: bytes, standard: Standard) -> ProcessedImage:
    """Check ``body`` and return the bytes to store, or raise ImageRejected."""
    if not body:
        raise ImageRejected("empty")
    fmt = sniff(body)
    if fmt is None:
        raise ImageRejected("not_an_image", f"starts with {body[:16]!r}")
    image = _open(body, standard)
    width, height = image.size
    if width < standard.min_width or height < standard.min_height:
        raise ImageRejected("too_small", f"{width}x{height}")
    source_md5 = md5_hex(body)
    if fmt == "JPEG" and _keeps_losslessly(image, standard):
        data, ext = strip_jpeg_metadata(body), "jpg"
    else:
        image, data, ext = _reencode(image, standard)
    thumbs, small = _thumbnails(image, standard.thumb_sizes)
    return ProcessedImage(
        data=data,
        ext=ext,
        width=image.width,
        height=image.height,
        source_md5=source_md5,
        phash=str(imagehash.phash(small)),
        dhash=str(imagehash.dhash(small)),
        thumbs=thumbs,
    )


def _open(body: bytes, standard: Standard) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(body))
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_many_pixels", str(exc)) from exc
    except Exception as exc:
        raise ImageRejected("corrupt", str(exc)) from exc
    width, height = image.size
    # Decided from the header, before any pixel is decoded: memory stays bounded.
    if width * height > standard.max_pixels:
        raise ImageRejected("too_many_pixels", f"{width}x{height}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except OSError as exc:
        reason = "truncated" if "truncated" in str(exc) else "corrupt"
        raise ImageRejected(reason, str(exc)) from exc
    except Exception as exc:
        raise ImageRejected("corrupt", str(exc)) from exc
    return image


def _keeps_losslessly(image: Image.Image, standard: Standard) -> bool:
    """A JPEG that needs no pixel change is kept as is, minus its metadata."""
    return (
        _SAVE_FORMATS.get(standard.format) == "JPEG"
        and image.mode in ("RGB", "L")
        and image.getexif().get(0x0112, 1) == 1
        and max(image.size) <= standard.max_side
    )


def _reencode(image: Image.Image, standard: Standard) -> tuple[Image.Image, bytes, str]:
    image = ImageOps.exif_transpose(image)
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    image = _to_rgb(image)
    if max(image.size) > standard.max_side:
        image.thumbnail((standard.max_side, standard.max_side), Image.Resampling.LANCZOS)
    save_format = _SAVE_FORMATS[standard.format]
    buf = io.BytesIO()
    options: dict[str, object] = {}
    if save_format in ("JPEG", "WEBP"):
        options["quality"] = standard.quality
    image.save(buf, save_format, **options)
    return image, buf.getvalue(), EXTENSIONS[save_format]


def _thumbnails(image: Image.Image, sizes: tuple[int, ...]) -> tuple[dict[int, bytes], Image.Image]:
    """Thumbnail JPEGs, and the largest thumbnail as a small image to hash."""
    thumbs: dict[int, bytes] = {}
    source = _to_rgb(image)
    largest: Image.Image | None = None
    for size in sorted(sizes, reverse=True):
        thumb = source.copy()
        # reducing_gap: a fast integer reduce() first, then a short resample.
        thumb.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        buf = io.BytesIO()
        thumb.save(buf, "JPEG", quality=80)
        thumbs[size] = buf.getvalue()
        largest = largest or thumb
        source = thumb  # the next, smaller size starts from this one
    return thumbs, largest or source


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda v: v / 256).convert("L")
    return image.convert("RGB")


# JPEG markers that carry metadata rather than pixels: APP1..APP15 (EXIF,
# XMP, ICC in APP2, Photoshop IPTC...) and COM. APP0 (JFIF) stays; APP14
# (Adobe) stays because it tells decoders how to read the colour transform.
_DROPPED_MARKERS = {*range(0xE1, 0xEE), 0xEF, 0xFE}


def strip_jpeg_metadata(body: bytes) -> bytes:
    """Drop metadata segments of a JPEG without touching its compressed data."""
    out = bytearray(body[:2])
    pos = 2
    while pos + 4 <= len(body):
        if body[pos] != 0xFF:
            break
        marker = body[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: the rest is image data
            break
        length = int.from_bytes(body[pos + 2 : pos + 4], "big")
        segment_end = pos + 2 + length
        if marker not in _DROPPED_MARKERS:
            out += body[pos:segment_end]
        pos = segment_end
    out += body[pos:]
    return bytes(out)
