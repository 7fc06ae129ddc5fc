"""store/imaging.py: real-world image shapes through validation and standardization.

Every source picture is built here with Pillow from one upright scene with
landmarks (white top-left corner, black top-right corner, pure red block on
the left, black block at the bottom centre that the alpha cases make
transparent), so orientation, first frame, colour handling and alpha
flattening are all checked by looking at pixels. Every metadata block carries
``SECRET``; it must never reach the stored bytes or the thumbnails.
"""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import imagehash
import pytest
from PIL import ExifTags, Image, ImageCms, ImageFile, ImageFilter, ImageOps, ImageStat
from PIL.PngImagePlugin import PngInfo

from phx_scraper.store.imaging import (
    ImageRejected,
    ProcessedImage,
    Standard,
    process,
    sniff,
    strip_jpeg_metadata,
)

W, H = 640, 480
SECRET = b"PHX-SECRET 33.4484N 112.0740W"
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF'
    b' xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description'
    b' xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:exif="http://ns.adobe.com/exif/1.0/"'
    b' exif:GPSLatitude="33,26.9N" xmp:Label="' + SECRET + b'"/></rdf:RDF></x:xmpmeta>'
)
# What a camera stores for an EXIF orientation, given the upright picture
# (EXIF 2.3 tag 0x0112: 6 means "rotate 90° clockwise to view").
STORED_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}
# Colorants of sRGB (D50).
SRGB_RED = (0.4361, 0.2225, 0.0139)
SRGB_GREEN = (0.3851, 0.7169, 0.0971)
SRGB_BLUE = (0.1431, 0.0606, 0.7141)


# -- building sources ----------------------------------------------------------


def scene(size: tuple[int, int] = (W, H)) -> Image.Image:
    """A photo-like upright picture: gradients, soft noise and four landmarks."""
    width, height = size
    ramp = Image.linear_gradient("L").point(lambda v: 40 + v * 160 // 255)
    red = ramp.transpose(Image.Transpose.ROTATE_90).resize(size)
    green = ramp.resize(size)
    blue = Image.effect_noise(size, 50).filter(ImageFilter.GaussianBlur(1))
    image = Image.merge("RGB", (red, green, blue))
    block = min(size) // 5
    image.paste((255, 255, 255), (0, 0, block, block))
    image.paste((0, 0, 0), (width - block, 0, width, block))
    image.paste((255, 0, 0), (0, height // 2 - block // 2, block, height // 2 + block // 2))
    image.paste((0, 0, 0), hole(size))
    return image


def hole(size: tuple[int, int]) -> tuple[int, int, int, int]:
    width, height = size
    block = min(size) // 5
    return (width // 2 - block // 2, height - block, width // 2 + block // 2, height)


def with_hole(image: Image.Image) -> Image.Image:
    """RGBA scene whose bottom-centre block is transparent black."""
    rgba = image.convert("RGBA")
    rgba.paste((0, 0, 0, 0), hole(image.size))
    return rgba


def encode(image: Image.Image, fmt: str = "JPEG", **options: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def exif(orientation: int | None = None) -> bytes:
    tags = Image.Exif()
    tags[ExifTags.Base.Make] = "PhoneCo"
    tags[ExifTags.Base.ImageDescription] = SECRET.decode()
    if orientation is not None:
        tags[ExifTags.Base.Orientation] = orientation
    tags[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (33.0, 26.0, 54.0),
        ExifTags.GPS.GPSLongitudeRef: "W",
        ExifTags.GPS.GPSLongitude: (112.0, 4.0, 26.0),
        ExifTags.GPS.GPSMapDatum: SECRET.decode(),
    }
    return tags.tobytes()


def jpeg_meta(orientation: int | None = None, icc: bytes = SRGB_ICC) -> dict[str, Any]:
    """Everything a phone or an editor leaves in a JPEG."""
    return {"exif": exif(orientation), "xmp": XMP, "icc_profile": icc, "comment": SECRET}


def matrix_icc(
    name: bytes, colorants: tuple[tuple[float, float, float], ...], curve: list[int]
) -> bytes:
    """A valid ICC v2 RGB matrix/TRC display profile."""

    def s15(*values: float) -> bytes:
        return b"".join(round(v * 65536).to_bytes(4, "big", signed=True) for v in values)

    def xyz(*values: float) -> bytes:
        return b"XYZ \0\0\0\0" + s15(*values)

    trc = b"curv\0\0\0\0" + len(curve).to_bytes(4, "big")
    trc += b"".join(v.to_bytes(2, "big") for v in curve)
    desc = b"desc\0\0\0\0" + (len(name) + 1).to_bytes(4, "big") + name + bytes(80)
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(*colorants[0])),
        (b"gXYZ", xyz(*colorants[1])),
        (b"bXYZ", xyz(*colorants[2])),
        (b"rTRC", trc),
        (b"gTRC", trc),
        (b"bTRC", trc),
    ]
    table, data = b"", b""
    offset = 128 + 4 + 12 * len(tags)
    for signature, body in tags:
        body += bytes(-len(body) % 4)
        table += signature + (offset + len(data)).to_bytes(4, "big") + len(body).to_bytes(4, "big")
        data += body
    header = (
        (offset + len(data)).to_bytes(4, "big")
        + bytes(4)
        + b"\x02\x10\0\0mntrRGB XYZ "
        + bytes(12)
        + b"acsp"
        + bytes(28)
        + s15(0.9642, 1.0, 0.8249)
        + bytes(48)
    )
    return header + len(tags).to_bytes(4, "big") + table + data


def srgb_level(x: float) -> float:
    return x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4


# Red and green swapped: this profile's red is sRGB green.
SWAPPED = matrix_icc(b"swapped primaries", (SRGB_GREEN, SRGB_RED, SRGB_BLUE), [0x0233])
# sRGB as most cameras and editors embed it: a 1024-point curve, not lcms's own.
SAMPLED_SRGB = matrix_icc(
    b"sRGB IEC61966-2.1",
    (SRGB_RED, SRGB_GREEN, SRGB_BLUE),
    [round(65535 * srgb_level(i / 1023)) for i in range(1024)],
)


def png_bomb(side: int) -> bytes:
    """A small valid PNG whose IHDR (with a correct CRC) claims side x side pixels."""
    small = encode(scene((64, 64)), "PNG")
    ihdr = b"IHDR" + side.to_bytes(4, "big") * 2 + small[24:29]
    return small[:12] + ihdr + zlib.crc32(ihdr).to_bytes(4, "big") + small[33:]


def gif_bomb(side: int) -> bytes:
    """A complete GIF whose screen and only frame claim side x side pixels."""
    size = side.to_bytes(2, "little") * 2
    screen = b"GIF89a" + size + b"\x80\0\0" + b"\0\0\0\xff\xff\xff"  # with 2 colours
    frame = b"," + bytes(4) + size + b"\0" + b"\x02\x02\x44\x01\0"  # descriptor, LZW data
    return screen + frame + b";"


def jpeg_bomb(side: int) -> bytes:
    """A small JPEG whose SOF0 claims side x side pixels."""
    small = encode(scene((64, 64)))
    sof = small.index(b"\xff\xc0")
    return small[: sof + 5] + side.to_bytes(2, "big") * 2 + small[sof + 9 :]


def animation(fmt: str) -> bytes:
    """Three frames; only the first one is the upright scene."""
    first = scene()
    rest = [first.transpose(Image.Transpose.ROTATE_180), ImageOps.invert(first)]
    return encode(first, fmt, save_all=True, append_images=rest, duration=100, loop=0)


def half(body: bytes) -> bytes:
    return body[: len(body) // 2]


def corrupt_png() -> bytes:
    body = bytearray(encode(scene(), "PNG"))
    start = body.index(b"IDAT") + 4000
    body[start : start + 2000] = bytes(range(250)) * 8
    return bytes(body)


# -- the table -----------------------------------------------------------------


class Source(NamedTuple):
    body: bytes
    #: For JPEGs that must be kept losslessly: the exact bytes to store.
    kept: bytes | None = None


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[], Source]
    reason: str | None = None
    standard: Standard = field(default_factory=Standard)
    #: Displayed (upright) size of the source.
    upright: tuple[int, int] = (W, H)
    mode: str = "RGB"
    #: Colour of the left block after storing: red, green, or None for grayscale.
    left: str | None = "red"
    #: The bottom-centre block was transparent and must be flattened onto white.
    transparent: bool = False
    #: The stored image and thumbnails carry the source's ICC profile.
    icc: bytes | None = None


def plain(image: Image.Image, **options: Any) -> Callable[[], Source]:
    return lambda: Source(encode(image, **options), kept=encode(image, **options))


def kept_without(meta: dict[str, Any], image: Image.Image, **options: Any) -> Source:
    return Source(encode(image, **options, **meta), kept=encode(image, **options))


def rotated(orientation: int, **options: Any) -> Callable[[], Source]:
    stored = scene().transpose(STORED_AS[orientation])
    return lambda: Source(encode(stored, **options, **jpeg_meta(orientation)))


def mpo() -> Source:
    # The second picture (a depth map, a gain map) has its own EXIF with GPS.
    first, second = scene(), scene((320, 240))
    body = encode(first, "MPO", save_all=True, append_images=[second], exif=exif())
    assert SECRET in body[body.index(b"\xff\xd8\xff", 2) :]
    return Source(body, kept=encode(first))


def trailer() -> Source:
    # Motion photos and some phones append data (a video, a vendor block) after EOI.
    image = scene()
    appended = b"\0\0\0\x18ftypmp42" + SECRET + encode(scene((64, 64)), exif=exif())
    return Source(encode(image, exif=exif()) + appended, kept=encode(image))


def source(body: bytes) -> Callable[[], Source]:
    return lambda: Source(body)


PICTURE = scene()
GRAY = PICTURE.convert("L")
PALETTE = PICTURE.quantize(255)
PALETTE.putpalette([*(PALETTE.getpalette() or []), 0, 0, 0])  # index 255: black, made transparent
PALETTE.paste(255, hole(PALETTE.size))
ALPHA = with_hole(PICTURE)
PNG_META = PngInfo()
PNG_META.add_itxt("XML:com.adobe.xmp", XMP.decode())
PNG_META.add_text("Comment", SECRET.decode())
I16 = GRAY.point(lambda v: v * 257, "I").convert("I;16")
BADGE = Image.new("P", (91, 31))
ROTATED_SMALL = scene((400, 250)).transpose(STORED_AS[6])

CASES = [
    # rejections
    Case("zero-bytes", source(b""), reason="empty"),
    Case("html", source(b"<!DOCTYPE html><body>Not found</body>"), reason="not_an_image"),
    Case("text-error", source(b'{"error": "rate limited"}'), reason="not_an_image"),
    Case(
        "truncated-progressive",
        source(half(encode(PICTURE, progressive=True))),
        reason="truncated",
    ),
    Case("truncated-baseline", source(half(encode(PICTURE))), reason="truncated"),
    Case("jpeg-without-eoi", source(encode(PICTURE)[:-2]), reason="truncated"),
    Case("truncated-png", source(half(encode(PICTURE, "PNG"))), reason="truncated"),
    Case("truncated-webp", source(half(encode(PICTURE, "WEBP"))), reason="truncated"),
    Case("truncated-gif", source(half(encode(PICTURE, "GIF"))), reason="truncated"),
    Case("corrupt-jpeg", source(b"\xff\xd8\xff\xe0" + b"\0" * 64), reason="corrupt"),
    Case("corrupt-png-data", source(corrupt_png()), reason="corrupt"),
    Case("badge-91x31", source(encode(BADGE, "PNG")), reason="too_small"),
    Case(
        "rotated-too-small",
        lambda: Source(encode(scene((400, 250)), exif=exif(6))),
        reason="too_small",
        standard=Standard(min_width=300, min_height=200),
    ),
    Case("png-ihdr-bomb", source(png_bomb(20000)), reason="too_many_pixels"),
    Case("png-over-max-pixels", source(png_bomb(9000)), reason="too_many_pixels"),
    Case("gif-header-bomb", source(gif_bomb(30000)), reason="too_many_pixels"),
    Case("gif-over-max-pixels", source(gif_bomb(9000)), reason="too_many_pixels"),
    Case("jpeg-sof-bomb", source(jpeg_bomb(60000)), reason="too_many_pixels"),
    Case(
        "over-configured-pixels",
        source(encode(PICTURE)),
        reason="too_many_pixels",
        standard=Standard(max_pixels=200_000),
    ),
    # JPEGs kept losslessly: the stored bytes are the source minus metadata
    Case("baseline-jpeg", plain(PICTURE, quality=85)),
    Case("jpeg-with-all-metadata", lambda: kept_without(jpeg_meta(), PICTURE, quality=92)),
    Case("jpeg-orientation-1", lambda: kept_without(jpeg_meta(1), PICTURE)),
    Case(
        "jpeg-keep-icc",
        lambda: kept_without(
            {k: v for k, v in jpeg_meta().items() if k != "icc_profile"},
            PICTURE,
            icc_profile=SRGB_ICC,
        ),
        standard=Standard(keep_icc=True),
        icc=SRGB_ICC,
    ),
    Case(
        "progressive-jpeg",
        lambda: kept_without(jpeg_meta(), PICTURE, progressive=True),
    ),
    Case(
        "restart-markers",
        lambda: kept_without(jpeg_meta(), PICTURE, restart_marker_rows=1),
    ),
    Case("grayscale-jpeg", lambda: kept_without(jpeg_meta(icc=b""), GRAY), mode="L", left=None),
    Case("mpo-second-picture-dropped", mpo),
    Case("data-after-eoi-dropped", trailer),
    Case(
        "srgb-under-another-profile",
        lambda: kept_without({"icc_profile": SAMPLED_SRGB, "comment": SECRET}, PICTURE),
    ),
    Case(
        "foreign-profile-kept-when-asked",
        lambda: kept_without({"exif": exif()}, PICTURE, icc_profile=SWAPPED),
        standard=Standard(keep_icc=True),
        icc=SWAPPED,
    ),
    # re-encoded
    Case("orientation-3", rotated(3)),
    Case("orientation-6", rotated(6)),
    Case("orientation-8", rotated(8)),
    Case("orientation-2-mirrored", rotated(2)),
    Case("orientation-6-progressive", rotated(6, progressive=True)),
    Case("orientation-6-keep-icc", rotated(6), standard=Standard(keep_icc=True), icc=SRGB_ICC),
    Case("orientation-6-to-png", rotated(6), standard=Standard(format="png")),
    Case(
        "orientation-6-to-png-keep-icc",
        rotated(6),
        standard=Standard(format="png", keep_icc=True),
        icc=SRGB_ICC,
    ),
    Case("orientation-8-to-webp", rotated(8), standard=Standard(format="webp", quality=80)),
    Case(
        "rotated-upright-size-checked",
        lambda: Source(encode(ROTATED_SMALL, exif=exif(6))),
        standard=Standard(min_width=300, min_height=200),
        upright=(400, 250),
    ),
    Case("capped", source(encode(PICTURE, **jpeg_meta())), standard=Standard(max_side=512)),
    Case("capped-rotated", rotated(6), standard=Standard(max_side=400)),
    Case("never-upscaled", plain(scene((450, 400))), upright=(450, 400)),
    Case(
        "cmyk-jpeg-adobe-capped",
        source(encode(PICTURE.convert("CMYK"), **jpeg_meta(icc=b""))),
        standard=Standard(max_side=512),
    ),
    Case("foreign-profile-converted", source(encode(PICTURE, icc_profile=SWAPPED)), left="green"),
    Case("png-16-bit", source(encode(I16, "PNG")), left=None),
    Case("png-grayscale", source(encode(GRAY, "PNG", exif=exif())), left=None),
    Case(
        "png-palette-transparency",
        source(encode(PALETTE, "PNG", transparency=255)),
        transparent=True,
    ),
    Case(
        "png-rgba-with-metadata",
        source(encode(ALPHA, "PNG", exif=exif(), icc_profile=SRGB_ICC, pnginfo=PNG_META)),
        transparent=True,
    ),
    Case(
        "png-rgba-to-png",
        source(encode(ALPHA, "PNG", exif=exif(), icc_profile=SRGB_ICC, pnginfo=PNG_META)),
        transparent=True,
        standard=Standard(format="png"),
    ),
    Case("png-rotated", source(encode(scene().transpose(STORED_AS[8]), "PNG", exif=exif(8)))),
    Case("webp-lossy", source(encode(PICTURE, "WEBP", quality=80, exif=exif(), xmp=XMP))),
    Case(
        "webp-alpha",
        source(encode(ALPHA, "WEBP", icc_profile=SRGB_ICC, exif=exif())),
        transparent=True,
    ),
    Case(
        "webp-alpha-to-webp",
        source(encode(ALPHA, "WEBP", lossless=True, xmp=XMP)),
        transparent=True,
        standard=Standard(format="webp"),
    ),
    Case("gif-animated", source(animation("GIF"))),
    Case("webp-animated", source(animation("WEBP"))),
]


# -- checks --------------------------------------------------------------------


def luminance(image: Image.Image, box: tuple[float, float, float, float]) -> float:
    return float(ImageStat.Stat(image.convert("L").crop(box)).mean[0])


def colour(image: Image.Image, box: tuple[float, float, float, float]) -> list[float]:
    return list(ImageStat.Stat(image.convert("RGB").crop(box)).mean)


def assert_scene(image: Image.Image, case: Case) -> None:
    """The landmarks are where the upright first frame has them."""
    width, height = image.size
    b = min(image.size) / 5
    inner = (0.25 * b, 0.75 * b)
    top_left = luminance(image, (inner[0], inner[0], inner[1], inner[1]))
    top_right = luminance(image, (width - inner[1], inner[0], width - inner[0], inner[1]))
    bottom_left = luminance(image, (inner[0], height - inner[1], inner[1], height - inner[0]))
    bottom_right = luminance(
        image, (width - inner[1], height - inner[1], width - inner[0], height - inner[0])
    )
    assert top_left > 225 and top_right < 30, (top_left, top_right)
    assert 30 < bottom_left < 225 and 30 < bottom_right < 225, (bottom_left, bottom_right)
    bottom = luminance(image, (width / 2 - inner[0], height - inner[1], width / 2, height - b / 4))
    assert (bottom > 225) if case.transparent else (bottom < 30), bottom
    if case.left is not None:
        left = colour(image, (inner[0], height / 2 - b / 4, inner[1], height / 2 + b / 4))
        strong, weak = (0, 1) if case.left == "red" else (1, 0)
        assert left[strong] > 200 and left[weak] < 60 and left[2] < 60, left


def assert_no_metadata(data: bytes, icc: bytes | None) -> None:
    image = Image.open(io.BytesIO(data))
    assert not image.getexif()
    assert not image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    leaked = {"exif", "xmp", "XML:com.adobe.xmp", "comment", "Comment"} & set(image.info)
    assert not leaked
    assert image.info.get("icc_profile") == icc
    for marker in (SECRET, b"Exif\0\0", b"http://ns.adobe.com/xap", b"PhoneCo", b"MPF\0"):
        assert marker not in data
    if icc is None:
        for marker in (b"ICC_PROFILE", b"iCCP", b"ICCP"):
            assert marker not in data


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_real_world_shapes(case: Case) -> None:
    built = case.build()
    if case.reason is not None:
        with pytest.raises(ImageRejected) as info:
            process(built.body, case.standard)
        assert info.value.reason == case.reason
        return
    result = process(built.body, case.standard)
    stored = decode(result.data)
    assert (stored.width, stored.height) == (result.width, result.height)
    # Output format by setting; an L-mode image only where a grayscale JPEG is kept as is.
    target = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}[case.standard.format]
    assert stored.format == target and result.ext == {"JPEG": "jpg"}.get(target, target.lower())
    assert stored.mode == case.mode
    assert getattr(stored, "n_frames", 1) == 1
    assert_no_metadata(result.data, case.icc)
    # Lossless exactly when expected: the source's compressed data, untouched.
    if built.kept is not None:
        assert result.data == built.kept
        assert decode(result.data).tobytes() == decode(built.body).tobytes()
    elif sniff(built.body) == "JPEG":
        assert result.data != strip_jpeg_metadata(built.body)
    # Upright size, capped, never upscaled.
    longest = min(case.standard.max_side, max(case.upright))
    assert max(stored.size) == longest
    assert abs(stored.width / stored.height - case.upright[0] / case.upright[1]) < 0.01
    assert_scene(stored, case)
    assert_thumbnails(result, case)
    assert re.fullmatch("[0-9a-f]{16}", result.phash)
    assert re.fullmatch("[0-9a-f]{16}", result.dhash)


def assert_thumbnails(result: ProcessedImage, case: Case) -> None:
    assert set(result.thumbs) == set(case.standard.thumb_sizes)
    for size, data in result.thumbs.items():
        thumb = decode(data)
        assert thumb.format == "JPEG" and thumb.mode == "RGB"
        assert max(thumb.size) == min(size, max(result.width, result.height))
        assert_no_metadata(data, case.icc)


# -- focused contracts ---------------------------------------------------------


BOMBS = [png_bomb(20000), png_bomb(9000), gif_bomb(30000), gif_bomb(9000), jpeg_bomb(60000)]


@pytest.mark.parametrize("body", BOMBS, ids=["png", "png-9000", "gif", "gif-9000", "jpeg"])
def test_bombs_are_rejected_before_any_pixel_is_decoded(
    body: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_decoding(*args: object) -> None:
        raise AssertionError("a decoder was created for a bomb")

    monkeypatch.setattr(Image, "_getdecoder", no_decoding)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageRejected) as info:
        process(body, Standard())
    assert info.value.reason == "too_many_pixels"


@pytest.mark.parametrize(
    ("body", "standard"),
    [
        (encode(PICTURE, **jpeg_meta()), Standard()),
        (encode(scene().transpose(STORED_AS[6]), exif=exif(6)), Standard(max_side=300)),
        (encode(PICTURE.convert("CMYK")), Standard(format="png")),
        (encode(PICTURE, icc_profile=SWAPPED), Standard()),
        (encode(ALPHA, "PNG"), Standard(thumb_sizes=(512, 128, 64))),
        (animation("GIF"), Standard()),
    ],
    ids=["jpeg-kept", "jpeg-rotated-capped", "cmyk-to-png", "foreign-profile", "png", "gif"],
)
def test_one_decode_per_image(
    body: bytes, standard: Standard, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[str] = []
    getdecoder = Image._getdecoder

    def counting(mode: str, decoder_name: str, *args: Any) -> Any:
        created.append(decoder_name)
        return getdecoder(mode, decoder_name, *args)

    monkeypatch.setattr(Image, "_getdecoder", counting)
    process(body, standard)
    assert len(created) == 1, created


def test_thumbnails_per_size_never_upscaled() -> None:
    body = encode(scene((900, 600)))
    result = process(body, Standard(max_side=400, thumb_sizes=(1024, 256, 64)))
    assert (result.width, result.height) == (400, 267)
    sizes = {size: decode(data).size for size, data in result.thumbs.items()}
    assert sizes == {1024: (400, 267), 256: (256, 171), 64: (64, 43)}


def test_hashes_agree_between_kept_and_reencoded_versions() -> None:
    picture = scene()
    kept = process(encode(picture), Standard())
    assert kept.data == encode(picture)
    variants = [
        process(encode(picture.transpose(STORED_AS[6]), exif=exif(6)), Standard()),
        process(encode(picture), Standard(max_side=320)),
        process(encode(picture), Standard(format="webp", quality=60)),
        process(encode(picture, "PNG"), Standard()),
        process(encode(picture.convert("CMYK")), Standard()),
    ]
    for variant in variants:
        assert variant.data != kept.data
        assert imagehash.hex_to_hash(variant.phash) - imagehash.hex_to_hash(kept.phash) <= 6
        assert imagehash.hex_to_hash(variant.dhash) - imagehash.hex_to_hash(kept.dhash) <= 6
    other = process(encode(ImageOps.mirror(picture)), Standard())
    assert imagehash.hex_to_hash(other.phash) - imagehash.hex_to_hash(kept.phash) > 10


def segments(body: bytes) -> list[bytes]:
    """Marker and identifier of each segment before the first scan."""
    found, pos = [], 2
    while body[pos + 1] != 0xDA:
        length = int.from_bytes(body[pos + 2 : pos + 4], "big")
        found.append(body[pos + 1 : pos + 2] + body[pos + 4 : pos + 4 + min(length - 2, 5)])
        pos += 2 + length
    return found


def test_strip_keeps_pixels_adobe_and_asked_for_icc_only() -> None:
    body = encode(PICTURE.convert("CMYK"), **jpeg_meta(icc=SRGB_ICC)) + b"trailing"
    assert b"\xff\xee" + b"\0\x0eAdobe" in body
    stripped = strip_jpeg_metadata(body)
    metadata = {b"\xe1", b"\xe2", b"\xed", b"\xfe"}
    assert not [s for s in segments(stripped) if s[:1] in metadata]
    assert b"\xeeAdobe" in segments(stripped)
    assert stripped.endswith(b"\xff\xd9")
    with_icc = strip_jpeg_metadata(body, keep_icc=True)
    assert [s for s in segments(with_icc) if s[:1] in metadata] == [b"\xe2ICC_P"]
    assert decode(with_icc).info["icc_profile"] == SRGB_ICC
    assert decode(stripped).tobytes() == decode(body).tobytes()


@pytest.mark.parametrize(
    "body",
    [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0\x00\x01", b"\xff\xd8" + b"\x12" * 40],
    ids=["not-jpeg", "bad-length", "no-marker"],
)
def test_strip_refuses_what_it_cannot_walk(body: bytes) -> None:
    with pytest.raises(ValueError):
        strip_jpeg_metadata(body)


def test_unknown_output_format_is_refused() -> None:
    with pytest.raises(ValueError, match="format"):
        Standard(format="tiff")


def test_malformed_exif_is_ignored_not_fatal() -> None:
    body = encode(PICTURE, exif=b"Exif\0\0garbage that is not TIFF")
    result = process(body, Standard())
    assert result.data == encode(PICTURE)
