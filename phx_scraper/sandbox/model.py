"""Data model of the replica: homes, pictures and what each source lists (pure data).

A *picture* is one photograph of a home. Each source shows some of a home's
pictures in its own gallery, under its own photo ids and URL scheme; the same
picture on two sources is "the same photo" (sometimes even the same bytes).
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from functools import cached_property

from phx_scraper.sandbox import paths

SUFFIX_LONG = {
    "Dr": "Drive",
    "St": "Street",
    "Ave": "Avenue",
    "Rd": "Road",
    "Ln": "Lane",
    "Way": "Way",
    "Pl": "Place",
    "Blvd": "Boulevard",
    "Pkwy": "Parkway",
    "Ct": "Court",
    "Cir": "Circle",
    "Trl": "Trail",
}
DIRECTIONS = ("N", "S", "E", "W")
PHOTO_FAULTS = ("truncated", "html_as_jpeg", "empty", "bomb", "too_small")


def stable_int(text: str) -> int:
    return zlib.crc32(text.encode())


@dataclass(frozen=True)
class Picture:
    """One photograph; ``width`` x ``height`` is the camera original (MLS ``-o``)."""

    id: str
    scene: str
    caption: str
    width: int
    height: int
    # EXIF carried by the original upload only: "", "rotated", "gps", "rotated+gps".
    exif: str = ""

    @cached_property
    def seed(self) -> int:
        return stable_int(self.id)

    @property
    def native(self) -> tuple[int, int]:
        return self.width, self.height

    @cached_property
    def zillow_id(self) -> str:
        return hashlib.md5(f"zillow:{self.id}".encode()).hexdigest()

    @cached_property
    def spark_id(self) -> str:
        # Spark ids read like a timestamp with microseconds, padded to 26 digits.
        n = int(hashlib.md5(f"spark:{self.id}".encode()).hexdigest(), 16)
        month, day, hour = n % 12 + 1, n // 12 % 28 + 1, n // 400 % 24
        minute, second, micro = n // 10_000 % 60, n // 600_000 % 60, n // 36_000_000 % 1_000_000
        return f"2025{month:02d}{day:02d}{hour:02d}{minute:02d}{second:02d}{micro:06d}000000"


@dataclass(frozen=True)
class Gallery:
    """A listing's photos on one source, in gallery order."""

    pictures: tuple[Picture, ...] = ()
    # (position, fault) for photos the CDN serves broken (see PHOTO_FAULTS).
    faults: tuple[tuple[int, str], ...] = ()

    def fault(self, position: int) -> str | None:
        return dict(self.faults).get(position)

    def __len__(self) -> int:
        return len(self.pictures)


@dataclass(frozen=True)
class ZillowHome:
    zpid: int
    gallery: Gallery
    mls: str | None = None
    status: str = "FOR_SALE"
    # Where the page keeps its cache: "component" (props.pageProps.componentProps.
    # gdpClientCache), "page" (props.pageProps.gdpClientCache) or "apollo"
    # (hdpApolloPreloadedData / apiCache).
    layout: str = "component"
    # The exact address gets ``results: []`` from autocomplete (use ``_rb``).
    autocomplete_empty: bool = False
    # Gallery positions without an uncropped_scaled_within_1536_1152 variant.
    lacks_uncropped: frozenset[int] = frozenset()


@dataclass(frozen=True)
class RedfinListing:
    listing_id: int
    mls: str
    gallery: Gallery
    status: str = "Active"
    list_date: str = "2025-09-01"
    # (position, version) where the file name carries a version other than 0.
    versions: tuple[tuple[int, int], ...] = ()
    # Full-screen files are the very bytes of Zillow's chosen variant.
    bytes_from_zillow: bool = False

    def version(self, position: int) -> int:
        return dict(self.versions).get(position, 0)


@dataclass(frozen=True)
class RedfinHome:
    property_id: int
    current: RedfinListing | None  # None: off market (no mediaBrowserInfo)
    earlier: tuple[RedfinListing, ...] = ()
    # aboveTheFold API: "ok", "refused_403" (HTTP 403) or "refused_code" (resultCode != 0).
    api: str = "ok"
    # How the HTML page embeds the aboveTheFold body: "text" ({}&& string) or "body".
    embedded: str = "text"
    row_id: bool = True  # autocomplete row carries "id"
    exact_match: bool = True  # autocomplete payload carries "exactMatch"


@dataclass(frozen=True)
class Parcel:
    apn: str  # 123-45-678
    owner: str
    property_type: str
    lot_size: int
    livable_space: int
    year_built: int
    pool: bool
    garages: int
    full_cash_values: tuple[tuple[int, int], ...]  # (tax year, value), oldest first
    map_ids: tuple[str, ...]
    # Search response layout: "real" (RealPropertyResults) or "total" (TOTAL/Results).
    layout: str = "real"
    mcr: str = ""


@dataclass(frozen=True)
class MlsListing:
    mls: str
    status: str  # Active | Pending | Closed
    gallery: Gallery
    price: int
    modal_size: str = "l"  # the size the photo modal shows: "l" or "m"


@dataclass(frozen=True)
class Property:
    key: str
    number: str
    predir: str
    name: str
    suffix: str
    city: str
    zip: str
    lat: float
    lng: float
    unit: str | None = None
    unit_csv: str = "Unit"  # how the user's CSV writes the unit: "Unit", "#", "Apt"
    beds: int = 3
    full_baths: int = 2
    sqft: int = 1800
    year_built: int = 1995
    garages: int = 2
    pool: bool = False
    sewer: str = "Sewer - Public"
    hoa_incl: str = "No Fees"
    price: int = 450_000
    zillow: ZillowHome | None = None
    redfin: RedfinHome | None = None
    parcel: Parcel | None = None
    mls: tuple[MlsListing, ...] = ()
    lot_sqft: int = 7000

    # --- the address as each party writes it ---
    @property
    def street(self) -> str:
        return " ".join(p for p in (self.number, self.predir, self.name, self.suffix) if p)

    @property
    def address(self) -> str:
        """One line, as a user types it into the CSV."""
        unit = ""
        if self.unit:
            unit = f" #{self.unit}" if self.unit_csv == "#" else f" {self.unit_csv} {self.unit}"
        return f"{self.street}{unit}, {self.city}, AZ {self.zip}"

    @property
    def zillow_street(self) -> str:
        return self.street + (f" APT {self.unit}" if self.unit else "")

    @property
    def zillow_address(self) -> str:
        return f"{self.zillow_street}, {self.city}, AZ {self.zip}"

    @property
    def zillow_slug(self) -> str:
        return f"{self.zillow_street} {self.city} AZ {self.zip}".replace(" ", "-")

    @property
    def redfin_name(self) -> str:
        return self.street + (f" #{self.unit}" if self.unit else "")

    @property
    def redfin_subname(self) -> str:
        return f"{self.city}, AZ {self.zip}"

    @property
    def redfin_url(self) -> str:
        assert self.redfin is not None
        city = self.city.replace(" ", "-")
        unit = f"/unit-{self.unit}" if self.unit else ""
        street = self.street.replace(" ", "-")
        return f"/AZ/{city}/{street}-{self.zip}{unit}/home/{self.redfin.property_id}"

    @property
    def maricopa_situs(self) -> str:
        return self.street.upper() + (f" {self.unit}" if self.unit else "")

    @property
    def mls_address(self) -> str:
        parts = [self.number, self.predir, self.name.upper(), SUFFIX_LONG.get(self.suffix, "")]
        street = " ".join(p for p in parts if p)
        unit = f" Unit {self.unit}" if self.unit else ""
        return f"{street}{unit}, {self.city}, AZ {self.zip}"

    def mls_path(self, mls: str) -> str:
        slug = self.mls_address.replace(",", "").replace("#", "").replace(" ", "-")
        return f"/mls/{slug}-mls_{mls}/"

    # --- listings ---
    @property
    def mls_current(self) -> MlsListing | None:
        """The listing a user should pick: the newest one still on the market."""
        live = [m for m in self.mls if m.status != "Closed"]
        return max(live, key=lambda m: int(m.mls)) if live else None

    def redfin_full_size(self, listing: RedfinListing, picture: Picture) -> tuple[int, int]:
        """Size of the Redfin full-screen file (what aboveTheFold states)."""
        if self.redfin_shares_zillow_bytes(listing, picture):
            return zillow_chosen_variant(self, picture)[1]
        return paths.REDFIN_FULL.size(picture.native)

    def redfin_shares_zillow_bytes(self, listing: RedfinListing, picture: Picture) -> bool:
        return (
            listing.bytes_from_zillow
            and self.zillow is not None
            and picture in self.zillow.gallery.pictures
        )


def zillow_chosen_variant(prop: Property, picture: Picture) -> tuple[str, tuple[int, int]]:
    """The variant a spider must choose on Zillow, and its size."""
    assert prop.zillow is not None
    position = prop.zillow.gallery.pictures.index(picture)
    name = paths.ZILLOW_FALLBACK if position in prop.zillow.lacks_uncropped else paths.ZILLOW_BEST
    return name, paths.ZILLOW_VARIANTS[name].size(picture.native)
