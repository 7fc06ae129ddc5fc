"""CDN path conventions and variant sizes of the four sources (pure functions).

Shared by the replica sites (which serve these paths) and by ``dataset`` (which
tells tests which path a spider must choose), so both always agree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    """How a variant is cut from the original picture.

    ``fit``: scaled to fit inside ``width`` x ``height``, aspect kept (never
    enlarged). ``fill``: centre-cropped to that aspect, then scaled to exactly
    ``width`` x ``height``.
    """

    mode: str
    width: int
    height: int

    def size(self, native: tuple[int, int]) -> tuple[int, int]:
        if self.mode == "fill":
            return self.width, self.height
        return fit(native, (self.width, self.height))


def fit(native: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    width, height = native
    scale = min(box[0] / width, box[1] / height, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


# --- Zillow: photos.zillowstatic.com/fp/<32 hex>-<variant>.<jpg|webp> ---
ZILLOW_VARIANTS: dict[str, Variant] = {
    **{f"cc_ft_{w}": Variant("fill", w, w * 2 // 3) for w in range(192, 1537, 192)},
    "uncropped_scaled_within_1344_1008": Variant("fit", 1344, 1008),
    "uncropped_scaled_within_1536_1152": Variant("fit", 1536, 1152),
    "d_d": Variant("fit", 800, 600),
    "o_a": Variant("fit", 1024, 768),
    "p_a": Variant("fill", 128, 96),
    "p_b": Variant("fill", 192, 144),
    "p_c": Variant("fill", 316, 234),
    "p_d": Variant("fill", 384, 288),
    "p_e": Variant("fill", 596, 446),
    "p_f": Variant("fill", 768, 576),
    "p_g": Variant("fill", 960, 720),
    "p_h": Variant("fill", 1152, 864),
}
ZILLOW_BEST = "uncropped_scaled_within_1536_1152"
ZILLOW_FALLBACK = "cc_ft_1536"


def zillow_photo_path(photo_id: str, variant: str, ext: str = "jpg") -> str:
    return f"/fp/{photo_id}-{variant}.{ext}"


# --- Redfin: ssl.cdn-redfin.com/photo/<ds>/<folder>/<last 3 of MLS#>/<prefix><file> ---
REDFIN_DATA_SOURCE = 86
REDFIN_FOLDERS: dict[str, tuple[str, Variant | None]] = {
    # None: the full-screen size stated by the API (see dataset.redfin_size).
    "bigphoto": ("", None),
    "mbphotov3": ("genMid.", Variant("fill", 1080, 771)),
    "mbpaddedwide": ("genMid.", Variant("fit", 1080, 771)),
    "islphoto": ("genIslnoResize.", Variant("fit", 1024, 768)),
    "bcsphoto": ("genBcs.", Variant("fill", 480, 360)),
}
REDFIN_FULL = Variant("fit", 1536, 1152)


def redfin_file_name(mls: str, index: int, version: int) -> str:
    # The first photo has no index part: <MLS#>_0.jpg, then <MLS#>_<i>_<version>.jpg.
    return f"{mls}_0.jpg" if index == 0 else f"{mls}_{index}_{version}.jpg"


def redfin_photo_path(mls: str, index: int, version: int, folder: str = "bigphoto") -> str:
    prefix = REDFIN_FOLDERS[folder][0]
    name = redfin_file_name(mls, index, version)
    return f"/photo/{REDFIN_DATA_SOURCE}/{folder}/{mls[-3:]}/{prefix}{name}"


# --- Phoenix MLS (Spark platform): cdn.photos.sparkplatform.com/az/<id>-<size>.jpg ---
MLS_SIZES: dict[str, Variant | None] = {
    "t": Variant("fit", 160, 120),
    "m": Variant("fit", 640, 480),
    "l": Variant("fit", 1024, 768),
    "o": None,  # the original upload
}
MLS_RESIZE_MAX = 4096


def mls_photo_path(spark_id: str, size: str = "o") -> str:
    return f"/az/{spark_id}-{size}.jpg"


def mls_resize_path(spark_id: str, width: int, height: int) -> str:
    return f"/az/{width}x{height}/true/{spark_id}-o.jpg"
