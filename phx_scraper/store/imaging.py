"""Validate and standardize one downloaded image (runs in a worker thread).

One decode serves every check, the thumbnails and the perceptual hashes
(computed on the largest thumbnail: the same hash, a fraction of the work).
A JPEG stored as downloaded is decoded at a reduced scale (``draft``): just
the pixels the thumbnails need, while its compressed data is still read to
the end, so a truncated or corrupt body is caught as by a full decode.
The pixel count is checked from the header before that decode, so a
decompression bomb costs no memory. Rejections carry a short reason that ends
up in the manifest and in the stats (``phx/image/rejected/<reason>``).

What is stored:

* A JPEG that is upright, within ``max_side``, YCbCr or grayscale and in sRGB
  (no ICC profile, or one that renders as sRGB) is kept byte for byte minus its
  metadata segments and anything after its end of image: no generation loss,
  and the same photo served by two sites with different EXIF gets one md5. It
  keeps its own colour model, so a grayscale JPEG stays grayscale.
* Everything else is re-encoded as ``format``, always RGB: the first frame,
  flattened onto white, converted to sRGB through its ICC profile, capped to
  ``max_side`` (never upscaled) and turned upright by its EXIF orientation.

Neither path keeps EXIF, GPS, XMP, IPTC or comments: listing photos must not
carry the photographer's location into the store. The ICC profile goes too,
unless ``keep_icc``: then an RGB profile is kept and the pixels are left in it.
"""

from __future__ import annotations

import functools
import io
import re
from dataclasses import dataclass

from PIL import ExifTags, Image, ImageChops, ImageCms

from phx_scraper.store.files import EXTENSIONS, md5_hex

# Magic bytes decide what a body is, never its Content-Type header.
_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)

_SAVE_FORMATS = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG", "webp": "WEBP"}

# What the viewer does for each EXIF orientation (1 and unknown values: nothing).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = {5, 6, 7, 8}

_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
# Every 17th level of each channel: enough to tell a profile apart from sRGB.
_PROBES = {
    "RGB": Image.frombytes(
        "RGB", (4096, 1), bytes(v for i in range(4096) for v in (i >> 8, i >> 4 & 15, i & 15))
    ).point(lambda v: v * 17),
    "L": Image.frombytes("L", (256, 1), bytes(range(256))),
}


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
    #: Keep the source's ICC profile instead of converting the pixels to sRGB.
    keep_icc: bool = False

    def __post_init__(self) -> None:
        if self.format not in _SAVE_FORMATS:
            raise ValueError(f"format must be one of {', '.join(_SAVE_FORMATS)}: {self.format!r}")


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
    image = _open(body, fmt, standard)
    if fmt != "JPEG":
        _load(image, body, fmt)  # a PNG's EXIF may follow its pixels: decode them first
    orientation = _orientation(image)
    width, height = image.size
    if orientation in _SWAPS_SIDES:
        width, height = height, width
    if width < standard.min_width or height < standard.min_height:
        raise ImageRejected("too_small", f"{width}x{height}")
    icc = image.info.get("icc_profile") or None
    data = _kept_losslessly(body, fmt, image, orientation, icc, standard)
    if data is not None:
        # Stored as downloaded: its pixels are only needed for the thumbnails and
        # hashes, so the decoder scales the DCT down (draft). The entropy-coded
        # data is still decoded in full: truncation and corruption show the same.
        ext = "jpg"
        icc = icc if standard.keep_icc else None
        image.draft(image.mode, (_smallest_needed(standard),) * 2)
        _load(image, body, fmt)
    else:
        _load(image, body, fmt)
        image, data, ext, icc = _reencode(image, orientation, icc, standard)
        width, height = image.size
    thumbs, small = _thumbnails(image, standard.thumb_sizes, icc)
    from phx_scraper.store.perceptual import perceptual_hashes  # numpy loads here, once

    phash, dhash = perceptual_hashes(small)
    return ProcessedImage(
        data=data,
        ext=ext,
        width=width,
        height=height,
        source_md5=md5_hex(body),
        phash=phash,
        dhash=dhash,
        thumbs=thumbs,
    )


def _open(body: bytes, fmt: str, standard: Standard) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(body), formats=[fmt])
    except Image.DecompressionBombError as exc:  # Pillow's own guard: 2 x MAX_IMAGE_PIXELS
        raise ImageRejected("too_many_pixels", str(exc)) from exc
    except Exception as exc:
        raise ImageRejected(_failure(body, fmt, exc), str(exc)) from exc
    width, height = image.size
    # Decided from the header, before any pixel is decoded: memory stays bounded.
    if width * height > standard.max_pixels:
        raise ImageRejected("too_many_pixels", f"{width}x{height}")
    return image


def _load(image: Image.Image, body: bytes, fmt: str) -> None:
    """Decode the first frame, all of its data: verify() would miss bad pixel data."""
    try:
        image.load()
    except Exception as exc:
        raise ImageRejected(_failure(body, fmt, exc), str(exc)) from exc


def _smallest_needed(standard: Standard) -> int:
    """The smallest square the decoded pixels must cover: the largest thumbnail,
    and enough for the perceptual hashes."""
    return max((*standard.thumb_sizes, 64))


def _failure(body: bytes, fmt: str, exc: Exception) -> str:
    """``truncated`` when the body ends before the image does, else ``corrupt``."""
    if "truncated" in str(exc).lower():
        return "truncated"
    # Pillow cannot tell a short WebP from a broken one; its RIFF header can.
    if fmt == "WEBP" and int.from_bytes(body[4:8], "little") + 8 > len(body):
        return "truncated"
    return "corrupt"


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # unreadable EXIF: displayed as stored, so treated as upright
        return 1


def _kept_losslessly(
    body: bytes,
    fmt: str,
    image: Image.Image,
    orientation: int,
    icc: bytes | None,
    standard: Standard,
) -> bytes | None:
    """A JPEG that needs no pixel change, minus its metadata; None if it needs one."""
    if not (
        fmt == "JPEG"
        and _SAVE_FORMATS[standard.format] == "JPEG"
        and image.mode in ("RGB", "L")
        and orientation not in _UPRIGHT
        and max(image.size) <= standard.max_side
        and (icc is None or standard.keep_icc or _renders_as_srgb(icc, image.mode))
    ):
        return None
    try:
        return strip_jpeg_metadata(body, keep_icc=standard.keep_icc)
    except ValueError:  # decodable, but not walkable segment by segment: re-encode
        return None


def _reencode(
    image: Image.Image, orientation: int, icc: bytes | None, standard: Standard
) -> tuple[Image.Image, bytes, str, bytes | None]:
    """The stored picture, its bytes and extension, and the ICC profile it keeps."""
    if image.mode not in ("RGB", "L", "CMYK") or "transparency" in image.info:
        image = _to_rgb(image)
    if max(image.size) > standard.max_side:
        image.thumbnail((standard.max_side, standard.max_side), Image.Resampling.LANCZOS)
    image, icc = _to_srgb(image, icc, standard.keep_icc)
    if orientation in _UPRIGHT:
        image = image.transpose(_UPRIGHT[orientation])
    save_format = _SAVE_FORMATS[standard.format]
    options: dict[str, object] = {}
    if save_format in ("JPEG", "WEBP"):
        options["quality"] = standard.quality
    data = _encode(image, save_format, icc, **options)
    return image, data, EXTENSIONS[save_format], icc


def _to_srgb(
    image: Image.Image, icc: bytes | None, keep_icc: bool
) -> tuple[Image.Image, bytes | None]:
    """RGB pixels from RGB, L or CMYK ones, and the ICC profile they are in if kept."""
    if icc is None:
        return _to_rgb(image), None
    profile = _profile(icc)
    if keep_icc and image.mode == "RGB" and profile and profile.profile.xcolor_space == "RGB ":
        return image, icc
    if profile and not _renders_as_srgb(icc, image.mode):
        try:
            return _in_srgb(image, profile), None
        except ImageCms.PyCMSError:
            pass  # a profile that does not fit the pixels is ignored, as browsers do
    return _to_rgb(image), None


def _profile(icc: bytes) -> ImageCms.ImageCmsProfile | None:
    try:
        return ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (OSError, ImageCms.PyCMSError):
        return None


@functools.lru_cache(maxsize=32)
def _renders_as_srgb(icc: bytes, mode: str) -> bool:
    """Whether pixels in ``mode`` tagged with ``icc`` look the same untagged.

    Sites re-save sRGB under many profiles (IEC 61966-2.1, compact, v4...);
    converting through each on a probe tells them apart from wide-gamut ones.
    A profile that cannot be read, or does not fit the pixels, is ignored by
    browsers, so it renders as sRGB too.
    """
    profile = _profile(icc)
    if mode not in _PROBES or profile is None:
        return mode != "CMYK"
    probe = _PROBES[mode]
    try:
        seen = _in_srgb(probe, profile)
    except ImageCms.PyCMSError:
        return True
    off = ImageChops.difference(seen, probe.convert("RGB")).point(lambda v: 255 if v > 3 else 0)
    return off.getbbox() is None  # no level of any channel moved by more than 3


def _in_srgb(image: Image.Image, profile: ImageCms.ImageCmsProfile) -> Image.Image:
    converted = ImageCms.profileToProfile(image, profile, _SRGB, outputMode="RGB")
    assert converted is not None  # None only when converting in place
    return converted


def _thumbnails(
    image: Image.Image, sizes: tuple[int, ...], icc: bytes | None
) -> tuple[dict[int, bytes], Image.Image]:
    """Thumbnail JPEGs, and the largest thumbnail as a small image to hash.

    Consumes ``image``: it may be shrunk in place."""
    thumbs: dict[int, bytes] = {}
    source = _to_rgb(image)
    largest: Image.Image | None = None
    for n, size in enumerate(sorted(sizes, reverse=True)):
        # The decoded image is not needed after this: the first thumbnail may
        # shrink it in place (no full-size copy); the smaller ones start from it.
        thumb = source if n == 0 else source.copy()
        # reducing_gap: a fast integer reduce() first, then a short resample.
        thumb.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        thumbs[size] = _encode(thumb, "JPEG", icc, quality=80)
        largest = largest or thumb
        source = thumb
    return thumbs, largest or source


def _encode(image: Image.Image, save_format: str, icc: bytes | None, **options: object) -> bytes:
    # Pillow copies some metadata from ``info`` into what it saves (JPEG
    # comments, PNG ICC profiles): only what is passed here may be written.
    image.info = {}
    if icc:
        options["icc_profile"] = icc
    buf = io.BytesIO()
    image.save(buf, save_format, **options)
    return buf.getvalue()


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB" and "transparency" not in image.info:
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
# XMP, ICC and MPF in APP2, Photoshop IPTC...) and COM. APP0 (JFIF) stays, and
# so does APP14 (Adobe): it tells decoders how to read the colour transform.
_METADATA_MARKERS = {*range(0xE1, 0xF0), 0xFE}
# In entropy-coded data 0xFF is followed by a stuffed 0x00 or a restart
# marker; anything else (fill bytes aside) is the next segment.
_SEGMENT_AFTER_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def strip_jpeg_metadata(body: bytes, *, keep_icc: bool = False) -> bytes:
    """Drop a JPEG's metadata segments without touching its compressed data.

    Everything after the end of image goes too: the second picture of an MPO
    (with its own EXIF), a motion photo's video, vendor trailers. Raises
    ValueError for a body it cannot walk segment by segment.
    """
    if not body.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG")
    out = bytearray(b"\xff\xd8")
    pos = 2
    while True:
        while body[pos : pos + 2] == b"\xff\xff":  # fill bytes
            pos += 1
        if body[pos : pos + 1] != b"\xff" or pos + 2 > len(body):
            raise ValueError(f"no segment at byte {pos}")
        marker = body[pos + 1]
        if marker == 0xD9:
            return bytes(out + b"\xff\xd9")
        length = int.from_bytes(body[pos + 2 : pos + 4], "big")
        end = pos + 2 + length
        if length < 2 or end > len(body):
            raise ValueError(f"bad segment length at byte {pos}")
        if marker == 0xDA:
            found = _SEGMENT_AFTER_SCAN.search(body, end)
            if found is None:
                raise ValueError("no end of image")
            end = found.start()
        if _keeps_segment(marker, body[pos + 4 : pos + 16], keep_icc):
            out += body[pos:end]
        pos = end


def _keeps_segment(marker: int, head: bytes, keep_icc: bool) -> bool:
    if marker == 0xEE:
        return head.startswith(b"Adobe")
    if marker == 0xE2 and keep_icc:
        return head.startswith(b"ICC_PROFILE\0")
    return marker not in _METADATA_MARKERS
