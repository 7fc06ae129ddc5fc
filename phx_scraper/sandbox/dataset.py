"""The replica's homes and what a correct spider must extract from each source.

Pure data, importable by tests (no Twisted). Public API:

- ``SOURCES``, ``PROPERTIES`` (what users ask for; ``demo_addresses.csv`` lists
  their ``address``), ``DECOYS`` (homes that only exist to be confused with them),
  ``property_by_key(key)``;
- ``expected_source_id(source, key)``, ``expected_status(source, key)``,
  ``expected_photos(source, key)`` -> ``list[ExpectedPhoto]``,
  ``expected_facts(source, key)``, ``shared_pictures()``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

from phx_scraper.sandbox import paths
from phx_scraper.sandbox.model import (
    DIRECTIONS,
    PHOTO_FAULTS,
    SUFFIX_LONG,
    Gallery,
    MlsListing,
    Parcel,
    Picture,
    Property,
    RedfinHome,
    RedfinListing,
    ZillowHome,
    stable_int,
    zillow_chosen_variant,
)

SOURCES = ("zillow", "redfin", "maricopa", "phoenix_mls")
CSV_PATH = Path(__file__).with_name("demo_addresses.csv")

_SCENES = (
    ("exterior", "Front of home"),
    ("interior", "Living room"),
    ("kitchen", "Kitchen"),
    ("interior", ""),
    ("bath", "Primary bathroom"),
    ("exterior", "Backyard"),
    ("pool", "Pool"),
    ("interior", "Primary bedroom"),
    ("kitchen", ""),
    ("exterior", ""),
    ("interior", "Dining area"),
    ("bath", ""),
)
_SHAPES = {"4:3": (1600, 1200), "3:2": (1800, 1200), "large": (3000, 2000)}


def _pictures(
    tag: str,
    count: int,
    shape: str = "4:3",
    portrait: tuple[int, ...] = (),
    exif: dict[int, str] | None = None,
) -> tuple[Picture, ...]:
    pictures = []
    for i in range(count):
        scene, caption = _SCENES[(i + stable_int(tag)) % len(_SCENES)] if i else _SCENES[0]
        width, height = _SHAPES[shape]
        if i in portrait:
            width, height = height, width
        pictures.append(
            Picture(f"{tag}/{i:02d}", scene, caption, width, height, (exif or {}).get(i, ""))
        )
    return tuple(pictures)


# --- compact per-source specs, turned into model objects by _home() ---
@dataclass
class _Z:
    n: int | None = None  # photos shown (default: all of the home's pictures)
    zpid: int | None = None
    layout: str = "component"
    status: str = "FOR_SALE"
    autocomplete_empty: bool = False
    lacks_uncropped: tuple[int, ...] = ()
    faults: dict[int, str] = field(default_factory=dict)


@dataclass
class _R:
    n: int | None = None
    off_market: bool = False
    api: str = "ok"
    embedded: str = "text"
    row_id: bool = True
    exact_match: bool = True
    bytes_from_zillow: bool = False
    faults: dict[int, str] = field(default_factory=dict)
    versions: dict[int, int] = field(default_factory=dict)
    earlier: tuple[tuple[str, str, int], ...] = ()  # (MLS#, list date, old-picture set)


@dataclass
class _M:
    mls: str
    status: str = "Active"
    n: int | None = None
    old: int | None = None  # index of an old picture set (earlier listing)
    modal_size: str = "l"
    faults: dict[int, str] = field(default_factory=dict)


@dataclass
class _A:
    apn: str
    layout: str = "real"
    second_map: bool = False
    property_type: str = ""


_OWNERS = (
    "GARCIA MARIA L",
    "NGUYEN DAVID/LINH",
    "SMITH JOHN R & KAREN T",
    "DESERT PALMS HOLDINGS LLC",
    "MARTINEZ FAMILY TRUST",
    "JOHNSON ROBERT",
    "PATEL ANIL & PRIYA",
    "OPENDOOR PROPERTY J LLC",
    "WILLIAMS LIVING TRUST",
    "KIM SOO-JIN",
)


def _home(
    key: str,
    street: str,
    city: str,
    zip_code: str,
    lat: float,
    lng: float,
    *,
    n: int,
    shape: str = "4:3",
    portrait: tuple[int, ...] = (),
    exif: dict[int, str] | None = None,
    old_sets: tuple[int, ...] = (),
    unit: str | None = None,
    unit_csv: str = "Unit",
    z: _Z | None = None,
    r: _R | None = None,
    a: _A | None = None,
    m: tuple[_M, ...] = (),
    **facts: int | bool | str,
) -> Property:
    words = street.split()
    number, rest = words[0], words[1:]
    predir = rest.pop(0) if rest[0] in DIRECTIONS else ""
    suffix = rest.pop() if rest[-1] in SUFFIX_LONG else ""
    pictures = _pictures(key, n, shape, portrait, exif)
    old = [_pictures(f"{key}-old{i}", size) for i, size in enumerate(old_sets)]
    mls_by_number = {spec.mls: spec for spec in m}

    zillow = None
    if z is not None:
        zillow = ZillowHome(
            zpid=z.zpid or 7_000_000 + stable_int("zpid" + key) % 90_000_000,
            gallery=Gallery(pictures[: z.n], tuple(sorted(z.faults.items()))),
            mls=_current_mls(m),
            status=z.status,
            layout=z.layout,
            autocomplete_empty=z.autocomplete_empty,
            lacks_uncropped=frozenset(z.lacks_uncropped),
        )
    redfin = None
    if r is not None:
        current = None
        if not r.off_market:
            mls = _current_mls(m) or str(6_000_000 + stable_int("mls" + key) % 999_999)
            current = RedfinListing(
                listing_id=_listing_id(mls),
                mls=mls,
                gallery=Gallery(pictures[: r.n], tuple(sorted(r.faults.items()))),
                versions=tuple(sorted(r.versions.items())),
                bytes_from_zillow=r.bytes_from_zillow,
            )
        earlier = tuple(
            RedfinListing(_listing_id(mls), mls, Gallery(old[i]), status="Sold", list_date=date)
            for mls, date, i in r.earlier
        )
        redfin = RedfinHome(
            property_id=20_000_000 + stable_int("rf" + key) % 80_000_000,
            current=current,
            earlier=earlier,
            api=r.api,
            embedded=r.embedded,
            row_id=r.row_id,
            exact_match=r.exact_match,
        )
    price = int(facts.get("price", 450_000))
    prop = Property(
        key=key,
        number=number,
        predir=predir,
        name=" ".join(rest),
        suffix=suffix,
        city=city,
        zip=zip_code,
        lat=lat,
        lng=lng,
        unit=unit,
        unit_csv=unit_csv,
        zillow=zillow,
        redfin=redfin,
        mls=tuple(
            MlsListing(
                spec.mls,
                spec.status,
                Gallery(
                    (old[spec.old] if spec.old is not None else pictures)[: spec.n],
                    tuple(sorted(spec.faults.items())),
                ),
                price=price - 15_000 * (spec.status == "Closed"),
                modal_size=spec.modal_size,
            )
            for spec in mls_by_number.values()
        ),
        **facts,  # type: ignore[arg-type]
    )
    if a is None:
        return prop
    return _with_parcel(prop, a)


def _current_mls(specs: tuple[_M, ...]) -> str | None:
    """The MLS# the portals show: the newest live listing, else the newest sale."""
    live = [spec.mls for spec in specs if spec.status != "Closed"]
    return max(live or [spec.mls for spec in specs] or [""], key=lambda s: int(s or 0)) or None


def _listing_id(mls: str) -> int:
    return 170_000_000 + stable_int("listing" + mls) % 9_000_000


def _with_parcel(prop: Property, a: _A) -> Property:
    book_map = a.apn.rsplit("-", 1)[0]
    base = round(prop.price * 0.82, -2)
    values = tuple((year, int(base * 0.94 ** (2026 - year))) for year in range(2022, 2027))
    parcel = Parcel(
        apn=a.apn,
        owner=_OWNERS[stable_int(prop.key) % len(_OWNERS)],
        property_type=a.property_type
        or ("Condominium" if prop.unit else "Single Family Residence"),
        lot_size=prop.lot_sqft,
        livable_space=prop.sqft,
        year_built=prop.year_built,
        pool=prop.pool,
        garages=prop.garages,
        full_cash_values=values,
        map_ids=(book_map, f"{book_map}A") if a.second_map else (book_map,),
        layout=a.layout,
        mcr=f"{400 + stable_int(prop.key) % 900}-{stable_int(prop.zip) % 50:02d}",
    )
    return replace(prop, parcel=parcel)


# fmt: off
PROPERTIES: tuple[Property, ...] = (
    _home(
        "sunrise", "4560 E Sunrise Dr", "Phoenix", "85044", 33.32617, -111.98153, n=24,
        beds=4, sqft=2145, lot_sqft=7405, year_built=1989, pool=True, price=612_500,
        hoa_incl="Common Area Maint",
        z=_Z(zpid=8142157), r=_R(bytes_from_zillow=True),
        a=_A("301-62-418"), m=(_M("6937912"),),
    ),
    _home(
        "caminito", "5219 W El Caminito Dr", "Glendale", "85302", 33.54861, -112.17183,
        n=43, shape="3:2", beds=3, sqft=1614, lot_sqft=8102, year_built=1978,
        price=389_000, garages=2,
        z=_Z(n=25, layout="page"), r=_R(n=25, api="refused_403", embedded="text"),
        a=_A("148-21-117", layout="total", second_map=True), m=(_M("6931955"),),
    ),
    _home(
        "rancho_vista", "7141 E Rancho Vista Dr", "Scottsdale", "85251", 33.49352, -111.92703,
        n=15, unit="4010", unit_csv="Unit", beds=2, sqft=1232, lot_sqft=1290,
        year_built=2008, garages=1, price=529_900,
        hoa_incl="Common Area Maint; Pool; Water; Trash",
        z=_Z(), r=_R(versions={3: 1, 7: 2}),
        a=_A("173-41-560", layout="total"), m=(_M("6954410", "Pending", modal_size="m"),),
    ),
    _home(
        "third_st", "455 N 3rd St", "Phoenix", "85004", 33.45301, -112.06902, n=12,
        unit="221", unit_csv="#", beds=1, full_baths=1, sqft=905, lot_sqft=905,
        year_built=2009, garages=1, price=349_000, hoa_incl="Common Area Maint; Electric",
        z=_Z(), r=_R(api="refused_code", embedded="body"),
        a=_A("111-43-128"), m=(_M("6960221"),),
    ),
    _home(
        "broadway", "1420 W Broadway Rd", "Tempe", "85282", 33.40702, -111.96104, n=10,
        sqft=1420, lot_sqft=6512, year_built=1972, price=415_000,
        z=_Z(), r=_R(exact_match=False), a=_A("124-52-077"), m=(_M("6949876"),),
    ),
    _home(
        "ivanhoe", "1867 W Ivanhoe St", "Chandler", "85224", 33.32114, -111.87151, n=14,
        old_sets=(8,), beds=4, sqft=1980, lot_sqft=7210, year_built=1994, pool=True,
        price=498_000,
        z=_Z(), r=_R(earlier=(("6512345", "2023-03-10", 0),)),
        a=_A("302-15-093"),
        m=(_M("6512345", "Closed", old=0), _M("6789012")),
    ),
    _home(
        "elgin", "1214 E Elgin St", "Gilbert", "85295", 33.30803, -111.77001, n=9,
        old_sets=(6, 5), beds=5, full_baths=3, sqft=2870, lot_sqft=6900, year_built=2005,
        garages=3, price=645_000, hoa_incl="Common Area Maint",
        z=_Z(), r=_R(earlier=(("6301122", "2021-05-02", 0), ("6611447", "2024-01-19", 1))),
        a=_A("304-43-612", layout="total"),
        m=(_M("6611447", "Closed", old=1), _M("6301122", "Closed", old=0), _M("6912034")),
    ),
    _home(
        "no_photos", "2931 N 68th St", "Scottsdale", "85251", 33.48152, -111.93604, n=0,
        beds=3, sqft=1510, lot_sqft=9800, year_built=1961, price=720_000,
        z=_Z(status="OTHER"), r=_R(off_market=True), a=_A("173-19-044"),
        m=(_M("6921587"),),
    ),
    _home(
        "flagstaff", "100 N Humphreys St", "Flagstaff", "86001", 35.19903, -111.65104, n=0,
    ),
    _home(
        "lamar", "8250 W Lamar Rd", "Glendale", "85303", 33.52402, -112.23903, n=8,
        sqft=1650, lot_sqft=7020, year_built=1999, price=399_900,
        z=_Z(layout="page", autocomplete_empty=True), r=_R(row_id=False),
        a=_A("102-37-208"),
    ),
    _home(
        "arcadia_44th", "3125 N 44th St", "Phoenix", "85018", 33.48302, -111.98704, n=11,
        beds=4, full_baths=3, sqft=2600, lot_sqft=11200, year_built=1956, pool=True,
        price=1_150_000,
        z=_Z(layout="apollo"), r=_R(), a=_A("127-31-035"), m=(_M("6940011"),),
    ),
    _home(
        "pinnacle", "27440 N 96th Pl", "Scottsdale", "85262", 33.73301, -111.87402, n=60,
        beds=5, full_baths=4, sqft=4850, lot_sqft=43560, year_built=2016, pool=True,
        garages=4, price=1_850_000, sewer="Septic", hoa_incl="Common Area Maint; Street Maint",
        z=_Z(layout="page"), r=_R(bytes_from_zillow=True), a=_A("216-71-309"),
    ),
    _home(
        "laguna_azul", "752 W Laguna Azul Ave", "Mesa", "85210", 33.39051, -111.84802, n=9,
        sqft=1320, lot_sqft=6100, year_built=1984, price=359_000,
        z=_Z(faults={3: "truncated"}), r=_R(), a=_A("134-37-129", layout="total"),
        m=(_M("6925512"),),
    ),
    _home(
        "apache", "2146 E Apache Blvd", "Tempe", "85281", 33.41463, -111.90102, n=6,
        unit="3", unit_csv="Apt", beds=2, full_baths=1, sqft=870, lot_sqft=870,
        year_built=1983, garages=0, price=239_000, hoa_incl="Common Area Maint; Water",
        z=_Z(), r=_R(api="refused_code", embedded="body"), a=_A("132-27-074"),
        m=(_M("6933303"),),
    ),
    _home(
        "kerry", "9823 W Kerry Ln", "Peoria", "85382", 33.65802, -112.27001, n=10,
        shape="large", exif={0: "rotated+gps", 4: "rotated"}, beds=4, sqft=2210,
        lot_sqft=8250, year_built=2001, pool=True, price=579_000,
        a=_A("200-55-412"), m=(_M("6958823", modal_size="m"),),
    ),
    _home(
        "glenrosa", "2316 W Glenrosa Ave", "Phoenix", "85015", 33.50303, -112.10702, n=7,
        beds=2, full_baths=1, sqft=1080, lot_sqft=6600, year_built=1951, price=305_000,
        r=_R(row_id=False, exact_match=False), a=_A("155-10-143"),
    ),
    _home(
        "rose", "3044 W Rose Ln", "Phoenix", "85017", 33.52104, -112.12701, n=5,
        sqft=1260, lot_sqft=7500, year_built=1959, price=329_000,
        z=_Z(layout="page"), a=_A("154-20-118", layout="total"),
    ),
    _home(
        "cortez", "5527 W Cortez St", "Glendale", "85304", 33.60403, -112.18102, n=7,
        sqft=1490, lot_sqft=7300, year_built=1987, price=372_000,
        z=_Z(layout="page"), r=_R(), a=_A("200-20-415"), m=(_M("6402217", "Closed"),),
    ),
    _home(
        "kent", "4311 W Kent Dr", "Chandler", "85226", 33.30204, -111.91203, n=12,
        exif={1: "rotated", 2: "rotated", 3: "gps"}, beds=4, sqft=2390, lot_sqft=8700,
        year_built=1997, pool=True, price=585_000, hoa_incl="Common Area Maint",
        z=_Z(), r=_R(faults={5: "html_as_jpeg"}), a=_A("301-83-240", layout="total"),
        m=(_M("6947788"),),
    ),
    _home(
        "page_ave", "2974 E Page Ave", "Gilbert", "85234", 33.36502, -111.73503, n=10,
        sqft=1750, lot_sqft=7150, year_built=1996, price=455_000,
        z=_Z(faults={2: "bomb"}), r=_R(faults={4: "too_small"}), a=_A("304-12-318"),
        m=(_M("6951234", faults={6: "empty"}),),
    ),
    _home(
        "turney", "8432 E Turney Ave", "Scottsdale", "85251", 33.49703, -111.89604, n=9,
        portrait=(2, 6), beds=3, sqft=1580, lot_sqft=8900, year_built=1965, price=689_000,
        z=_Z(lacks_uncropped=(1, 4, 7)), r=_R(), a=_A("173-14-231", layout="total"),
        m=(_M("6944321"),),
    ),
    _home(
        "calle_redonda", "4802 E Calle Redonda", "Phoenix", "85018", 33.50204, -111.97802,
        n=16, beds=4, full_baths=3, sqft=3120, lot_sqft=17400, year_built=1962, pool=True,
        price=1_495_000,
        z=_Z(layout="page"), r=_R(exact_match=False), a=_A("170-28-052", second_map=True),
        m=(_M("6938844"),),
    ),
    _home(
        "n57th", "6225 N 57th Dr", "Glendale", "85301", 33.53003, -112.18604, n=6,
        sqft=1360, lot_sqft=7800, year_built=1974, price=335_000,
        z=_Z(), r=_R(api="refused_403", embedded="text"), a=_A("144-09-387", layout="total"),
        m=(_M("6950066", faults={4: "truncated"}),),
    ),
    _home(
        "fremont", "1811 E Fremont Dr", "Tempe", "85282", 33.39204, -111.90903, n=8,
        shape="3:2", sqft=1700, lot_sqft=8400, year_built=1969, price=489_000,
        z=_Z(layout="apollo"), r=_R(), a=_A("133-38-170"),
        m=(_M("6929911", "Pending", modal_size="m"),),
    ),
    _home(
        "fountain", "4417 E Fountain St", "Mesa", "85205", 33.42204, -111.73404, n=7,
        sqft=1550, lot_sqft=7700, year_built=1979, price=379_000,
        z=_Z(), r=_R(), a=_A("141-51-062", layout="total"),
    ),
    _home(
        "villa_rita", "8521 W Villa Rita Dr", "Peoria", "85382", 33.65204, -112.24502, n=10,
        shape="large", sqft=1890, lot_sqft=7900, year_built=1992, price=469_000,
        z=_Z(layout="page"), r=_R(), a=_A("200-47-255"), m=(_M("6957721"),),
    ),
    _home(
        "maryland", "1702 E Maryland Ave", "Phoenix", "85016", 33.52802, -112.04603, n=13,
        beds=3, sqft=1940, lot_sqft=9100, year_built=1958, pool=True, price=835_000,
        z=_Z(layout="page"), r=_R(bytes_from_zillow=True), a=_A("163-25-019", layout="total"),
        m=(_M("6946602"),),
    ),
    _home(
        "monterey", "6902 E Monterey Way", "Scottsdale", "85251", 33.49904, -111.93203, n=4,
        sqft=1380, lot_sqft=8800, year_built=1960, price=615_000,
        z=_Z(), r=_R(), a=_A("173-22-118"), m=(_M("6953344"),),
    ),
)

DECOYS: tuple[Property, ...] = (
    # The whole building around third_st's unit: a second candidate for the address.
    _home(
        "third_st_building", "455 N 3rd St", "Phoenix", "85004", 33.45301, -112.06902, n=5,
        sqft=96_000, lot_sqft=41_800, year_built=2009, price=0,
        z=_Z(status="OTHER"), r=_R(), a=_A("111-43-100", property_type="Condominium Common Area"),
    ),
    # Same street number and name as "broadway", other city and ZIP.
    _home(
        "broadway_mesa", "1420 W Broadway Rd", "Mesa", "85202", 33.40753, -111.86204, n=8,
        sqft=1290, lot_sqft=6300, year_built=1970, price=345_000,
        z=_Z(), r=_R(), a=_A("134-24-051"), m=(_M("6950123"),),
    ),
)
# fmt: on

# Condo units of the 455 N 3rd St building (parcels only): a search for the
# building fills more than one page of 25 results.
_UNITS = [f"{f}{u:02d}" for f in (1, 2, 3) for u in range(1, 13)] + ["214", "216", "218"]


def _filler_units() -> tuple[Property, ...]:
    # Parcel numbers follow unit order; third_st (unit 221) holds 111-43-128.
    ordered = sorted({*_UNITS, "221"})
    assert ordered.index("221") == 27
    units = []
    for unit in (u for u in ordered if u != "221"):
        apn_tail = 101 + ordered.index(unit)
        units.append(
            _home(
                f"third_st_{unit}",
                "455 N 3rd St",
                "Phoenix",
                "85004",
                33.45301,
                -112.06902,
                n=0,
                unit=unit,
                sqft=880 + stable_int(unit) % 400,
                lot_sqft=900,
                year_built=2009,
                price=330_000,
                a=_A(f"111-43-{apn_tail:03d}"),
            )
        )
    return tuple(units)


PARCEL_ONLY: tuple[Property, ...] = _filler_units()
ALL_HOMES: tuple[Property, ...] = PROPERTIES + DECOYS + PARCEL_ONLY
_BY_KEY = {p.key: p for p in ALL_HOMES}


def property_by_key(key: str) -> Property:
    return _BY_KEY[key]


@cache
def neighbours(key: str) -> tuple[Property, ...]:
    """Other homes whose pictures a home's Zillow page shows in its carousels."""
    with_photos = [p for p in PROPERTIES + DECOYS if p.zillow and p.zillow.gallery.pictures]
    start = stable_int(key)
    picked = [with_photos[(start + k) % len(with_photos)] for k in (1, 2, 3, 5)]
    return tuple(p for p in picked if p.key != key)


# --- expectations ---
@dataclass(frozen=True)
class ExpectedPhoto:
    photo_id: str
    path: str  # URL path (+ query) of the variant to choose; "" for Maricopa aerials
    position: int
    caption: str
    listing_id: str | None
    fault: str | None


def expected_source_id(source: str, key: str) -> str | None:
    prop = property_by_key(key)
    if source == "zillow":
        return str(prop.zillow.zpid) if prop.zillow else None
    if source == "redfin":
        return str(prop.redfin.property_id) if prop.redfin else None
    if source == "maricopa":
        return prop.parcel.apn if prop.parcel else None
    if source == "phoenix_mls":
        current = prop.mls_current
        return current.mls if current else None
    raise KeyError(source)


def expected_status(source: str, key: str) -> str:
    if expected_source_id(source, key) is None:
        return "no_match"
    return "ok" if expected_photos(source, key) else "no_photos"


def expected_photos(source: str, key: str) -> list[ExpectedPhoto]:
    prop = property_by_key(key)
    if source == "zillow":
        return list(_zillow_photos(prop))
    if source == "redfin":
        return list(_redfin_photos(prop))
    if source == "maricopa":
        return [ExpectedPhoto("aerial", "", 0, "", None, None)] if prop.parcel else []
    if source == "phoenix_mls":
        return list(_mls_photos(prop))
    raise KeyError(source)


def _zillow_photos(prop: Property) -> Iterator[ExpectedPhoto]:
    if prop.zillow is None:
        return
    gallery = prop.zillow.gallery
    for position, picture in enumerate(gallery.pictures):
        variant, _ = zillow_chosen_variant(prop, picture)
        path = paths.zillow_photo_path(picture.zillow_id, variant)
        yield ExpectedPhoto(
            picture.zillow_id, path, position, picture.caption, None, gallery.fault(position)
        )


def _redfin_photos(prop: Property) -> Iterator[ExpectedPhoto]:
    if prop.redfin is None:
        return
    listings = [prop.redfin.current] if prop.redfin.current else []
    for listing in listings + list(prop.redfin.earlier):
        for position, picture in enumerate(listing.gallery.pictures):
            version = listing.version(position)
            yield ExpectedPhoto(
                f"{listing.mls}_{position}",
                paths.redfin_photo_path(listing.mls, position, version),
                position,
                picture.caption,
                str(listing.listing_id),
                listing.gallery.fault(position),
            )


def _mls_photos(prop: Property) -> Iterator[ExpectedPhoto]:
    listing = prop.mls_current
    if listing is None:
        return
    for position, picture in enumerate(listing.gallery.pictures):
        yield ExpectedPhoto(
            picture.spark_id,
            paths.mls_photo_path(picture.spark_id),
            position,
            picture.caption,
            listing.mls,
            listing.gallery.fault(position),
        )


def expected_facts(source: str, key: str) -> dict[str, object]:
    prop = property_by_key(key)
    if source == "maricopa" and prop.parcel:
        parcel = prop.parcel
        year, value = parcel.full_cash_values[-1]
        return {
            "apn": parcel.apn,
            "lot_size": parcel.lot_size,
            "livable_space": parcel.livable_space,
            "year_built": parcel.year_built,
            "pool": parcel.pool,
            "garages": parcel.garages,
            "valuation_year": year,
            "full_cash_value": value,
            "map_ids": list(parcel.map_ids),
        }
    if source == "phoenix_mls" and prop.mls_current:
        return {
            "beds": prop.beds,
            "full_baths": prop.full_baths,
            "approx_sqft": prop.sqft,
            "lot_sqft": prop.lot_sqft,
            "garage_spaces": prop.garages,
            "sewer": prop.sewer,
            "year_built": prop.year_built,
            "association_fee_incl": prop.hoa_incl,
        }
    return {}


@dataclass(frozen=True)
class SharedPicture:
    """One photograph that appears more than once across sources.

    ``photos``: every ``(source, photo_id)`` showing it. ``identical``: those
    whose chosen files are byte-for-byte the same (empty if all differ).
    """

    picture_id: str
    key: str
    photos: tuple[tuple[str, str], ...]
    identical: tuple[tuple[str, str], ...]


@cache
def shared_pictures() -> tuple[SharedPicture, ...]:
    uses: dict[str, list[tuple[str, str]]] = {}
    identical: dict[str, list[tuple[str, str]]] = {}
    owner: dict[str, str] = {}
    for prop in PROPERTIES:
        for source in ("zillow", "redfin", "phoenix_mls"):
            for photo in expected_photos(source, prop.key):
                picture = _picture_of(source, prop, photo)
                uses.setdefault(picture.id, []).append((source, photo.photo_id))
                owner[picture.id] = prop.key
                if source == "redfin" and _redfin_is_zillow_copy(prop, photo.photo_id):
                    z_id = picture.zillow_id
                    identical[picture.id] = [("zillow", z_id), (source, photo.photo_id)]
    return tuple(
        SharedPicture(pid, owner[pid], tuple(found), tuple(identical.get(pid, ())))
        for pid, found in uses.items()
        if len(found) > 1
    )


def _picture_of(source: str, prop: Property, photo: ExpectedPhoto) -> Picture:
    if source == "zillow":
        assert prop.zillow is not None
        return prop.zillow.gallery.pictures[photo.position]
    if source == "redfin":
        assert prop.redfin is not None
        listings = [prop.redfin.current, *prop.redfin.earlier]
        listing = next(x for x in listings if x and str(x.listing_id) == photo.listing_id)
        return listing.gallery.pictures[photo.position]
    current = prop.mls_current
    assert current is not None
    return current.gallery.pictures[photo.position]


def _redfin_is_zillow_copy(prop: Property, photo_id: str) -> bool:
    listing = prop.redfin.current if prop.redfin else None
    if listing is None or not photo_id.startswith(listing.mls + "_"):
        return False
    picture = listing.gallery.pictures[int(photo_id.rsplit("_", 1)[1])]
    return prop.redfin_shares_zillow_bytes(listing, picture)


def write_csv(path: Path = CSV_PATH) -> None:
    """Regenerate ``demo_addresses.csv`` (kept in the package, checked by tests)."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["address"])
        writer.writerows([p.address] for p in PROPERTIES)


def _check() -> None:
    """Distinct pictures never share a photo id (the CDNs look pictures up by id)."""
    owners: dict[str, str] = {}
    for prop in ALL_HOMES:
        galleries = [m.gallery for m in prop.mls] + ([prop.zillow.gallery] if prop.zillow else [])
        if prop.redfin:
            galleries += [x.gallery for x in (prop.redfin.current, *prop.redfin.earlier) if x]
        for gallery in galleries:
            assert all(fault in PHOTO_FAULTS for _, fault in gallery.faults), prop.key
            for pic in gallery.pictures:
                for photo_id in (pic.spark_id, pic.zillow_id):
                    assert owners.setdefault(photo_id, pic.id) == pic.id, photo_id
    assert len(_BY_KEY) == len(ALL_HOMES)


_check()
