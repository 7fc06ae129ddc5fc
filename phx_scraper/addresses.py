"""Turn user input into validated, canonical addresses before any request is sent.

Canonical form: ``"<STREET>[ <UNIT>], <CITY>, <ST>[ <ZIP5>]"``, upper case, USPS Publication 28
abbreviations, e.g. ``"1234 N 1ST ST UNIT 410, PHOENIX, AZ 85004"``. usaddress-scourgify does the
normalizing; this module fixes what it leaves inconsistent, so that the same property written the
way Zillow, Redfin, the Assessor or the MLS write it gets one canonical form and one
``property_hash``:

- every unit designator (``#``, UNIT, APT, STE, LOT, ...) becomes ``UNIT``: sources disagree on
  the designator for the same door, and only the identifier tells doors apart;
- a bare number after the street suffix ("4560 E SUNRISE DR 410", as the Assessor writes it) is a
  unit;
- spelled ordinals become numbers ("N FIRST ST" -> "N 1ST ST"); city abbreviations are expanded
  ("ST JOHNS" -> "SAINT JOHNS"); ZIP+4 is cut to 5 digits.

The ZIP is optional: ``zip == ""`` when the input has none, and the canonical form then ends at the
state. That is a different hash from the same address with its ZIP, so input files should give it.
A missing state is taken as AZ when the ZIP is Arizona's (85xxx, 86xxx).

In a CSV, unparseable rows are fatal and all reported at once, since the user must fix the file;
blank rows, non-Arizona rows and duplicates are warnings for the caller to log.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from scourgify import normalize_address_record
from scourgify.address_constants import (
    DIRECTIONAL_REPLACEMENTS,
    OCCUPANCY_TYPE_ABBREVIATIONS,
    STATE_ABBREVIATIONS,
    STREET_TYPE_ABBREVIATIONS,
)
from scourgify.exceptions import AddressNormalizationError
from scourgify.normalize import get_ordinal_indicator, normalize_city

_DIRECTIONS = frozenset(DIRECTIONAL_REPLACEMENTS.values())
_STATES = frozenset(STATE_ABBREVIATIONS.values())
_STREET_TYPES = frozenset(STREET_TYPE_ABBREVIATIONS) | frozenset(STREET_TYPE_ABBREVIATIONS.values())
_UNIT_DESIGNATORS = frozenset(OCCUPANCY_TYPE_ABBREVIATIONS) | frozenset(
    OCCUPANCY_TYPE_ABBREVIATIONS.values()
)
# In "US HWY 60", "COUNTY RD 12" or "STATE RTE 87" the trailing number names the road.
_ROUTE_WORDS = frozenset({"HWY", "HIGHWAY", "RTE", "ROUTE", "US", "STATE", "COUNTY", "INTERSTATE"})
# Phoenix numbers its streets (N 1ST ST, W 7TH AVE); people spell out the low ones.
_ORDINAL_WORDS = {
    word: f"{n}{get_ordinal_indicator(n).upper()}"
    for n, word in enumerate(
        ("FIRST", "SECOND", "THIRD", "FOURTH", "FIFTH", "SIXTH", "SEVENTH", "EIGHTH", "NINTH"),
        start=1,
    )
}
_ZIP = re.compile(r"(\d{5})(?:-?\d{4})?")
_ARIZONA_ZIP = re.compile(r"8[56]\d{3}")
_PART_COLUMNS = ("street", "city", "state", "zip")
_NEEDED_COLUMNS = 'need "address", or "street", "city", "state" and "zip"'


class AddressError(ValueError):
    """One address cannot be parsed: ``cannot parse address "<text>"[ (<reason>)]``."""

    def __init__(self, text: str, reason: str | None = None) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f'cannot parse address "{text}"' + (f" ({reason})" if reason else ""))


class AddressInputError(Exception):
    """The input as a whole is unusable; ``str()`` holds every problem, one per line."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


@dataclass(frozen=True)
class Address:
    """A canonical address; equal addresses are the same property however they were written."""

    raw: str = field(compare=False)
    street: str
    unit: str | None
    city: str
    state: str
    zip: str
    canonical: str
    property_hash: str

    @property
    def house_number(self) -> str:
        return self.street.split()[0]

    @property
    def street_line(self) -> str:
        return f"{self.street} {self.unit}" if self.unit else self.street

    def one_line(self) -> str:
        """For people: "4560 E Sunrise Dr Unit 410, Phoenix, AZ 85044"."""
        words = (w if w in _DIRECTIONS else w.capitalize() for w in self.street_line.split())
        return f"{' '.join(words)}, {self.city.title()}, {self.state} {self.zip}".rstrip()


@dataclass
class AddressBatch:
    addresses: list[Address]
    warnings: list[str]
    source: str  # the file path, or "-a address"


def property_hash(canonical: str) -> str:
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:8]


@lru_cache(maxsize=65536)
def canonicalize(text: str) -> Address:
    """Canonicalize a one-line address from the user or from any source; raises AddressError."""
    line1, line2, city, state, zip_code = _scourgify(text)
    words = line1.split()
    if (
        not line2
        and len(words) >= 4
        and words[-1].isdigit()
        and words[-2] in _STREET_TYPES
        and not {words[-2], words[-3]} & _ROUTE_WORDS
    ):
        # usaddress reads "SUNRISE DR 410," as a street named 410; saying UNIT makes it a unit.
        rest = ", ".join(p for p in (city, f"{state} {zip_code}".strip()) if p)
        line1, line2, city, state, zip_code = _scourgify(
            f"{' '.join(words[:-1])} UNIT {words[-1]}, {rest}"
        )
    if not line1[:1].isdigit():
        raise AddressError(text, "no house number")
    if not city:
        raise AddressError(text, "no city")
    if "," in city:
        # scourgify keeps commas inside a place name: "REAR, PHOENIX", "PHOENIX, MARICOPA COUNTY".
        raise AddressError(text, f'unclear city "{city}"')
    if zip_code:
        match = _ZIP.fullmatch(zip_code)
        if not match:
            raise AddressError(text, f'bad ZIP code "{zip_code}"')
        zip_code = match[1]
    if not state:
        if not _ARIZONA_ZIP.fullmatch(zip_code):
            raise AddressError(text, "no state")
        state = "AZ"
    if state not in _STATES:
        raise AddressError(text, f'unknown state "{state}"')
    number, *rest_words = line1.split()
    street = " ".join([number, *(_ORDINAL_WORDS.get(w, w) for w in rest_words)])
    unit = _canonical_unit(line2) if line2 else None
    city = normalize_city(city)
    canonical = f"{street} {unit}" if unit else street
    canonical = f"{canonical}, {city}, {state} {zip_code}".rstrip()
    return Address(text, street, unit, city, state, zip_code, canonical, property_hash(canonical))


def from_parts(street: str, city: str, state: str, zip: str, unit: str | None = None) -> Address:
    """Canonicalize an address given as fields (CSV columns, the Assessor's records).

    The fields are joined into one line, which becomes the address's ``raw``.
    """
    unit = (unit or "").strip()
    if unit and not unit.startswith("#") and unit.split()[0].upper() not in _UNIT_DESIGNATORS:
        # A bare "410" appended to the street could be read as part of the street name.
        unit = f"UNIT {unit}"
    parts = (f"{street.strip()} {unit}".strip(), city.strip(), f"{state.strip()} {zip.strip()}")
    return canonicalize(", ".join(p.strip() for p in parts if p.strip()))


def load_csv(path: str | Path) -> AddressBatch:
    """Read a CSV with an "address" column, or "street", "city", "state", "zip" (and "unit").

    Raises AddressInputError for a file that cannot be used; the batch's warnings are for the
    caller to log.
    """
    source = str(path)
    text = _read_text(Path(path), source)
    if not text.strip():
        raise AddressInputError(f"{source}: file is empty; {_NEEDED_COLUMNS}")
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    columns = {name.strip().lower(): i for i, name in enumerate(header)}
    if "address" in columns:
        fields: tuple[str, ...] = ("address",)
    elif all(name in columns for name in _PART_COLUMNS):
        fields = (*_PART_COLUMNS, "unit")
    else:
        found = ", ".join(f'"{name.strip()}"' for name in header if name.strip()) or "none"
        raise AddressInputError(f"{source}:1: missing columns: {_NEEDED_COLUMNS}; found {found}")

    batch = AddressBatch([], [], source)
    errors: list[str] = []
    first_row: dict[str, int] = {}
    last_line = reader.line_num
    try:
        for cells in reader:
            # A quoted field may span lines: the row is named by the line it starts on.
            row, last_line = last_line + 1, reader.line_num
            if len(header) == 1:
                # A lone address column is often written with its commas unquoted.
                values = {fields[0]: ", ".join(c.strip() for c in cells if c.strip())}
            else:
                cells += [""] * (len(header) - len(cells))
                values = {name: cells[columns[name]].strip() for name in fields if name in columns}
            if not any(values.values()):
                blank = "blank row" if not "".join(cells).strip() else "no address"
                batch.warnings.append(f"{source}:{row}: {blank}, skipped")
                continue
            try:
                address = (
                    canonicalize(values["address"]) if "address" in values else from_parts(**values)
                )
            except AddressError as exc:
                errors.append(f"{source}:{row}: {exc}")
                continue
            first = first_row.setdefault(address.canonical, row)
            if first != row:
                batch.warnings.append(
                    f"{source}:{row}: duplicate of row {first} after canonicalization"
                    f' ("{address.canonical}"); keeping row {first}'
                )
                continue
            if address.state != "AZ":
                batch.warnings.append(_not_in_arizona(f"{source}:{row}", address))
            batch.addresses.append(address)
    except csv.Error as exc:
        raise AddressInputError(f"{source}:{reader.line_num}: not valid CSV ({exc})") from exc
    if errors:
        raise AddressInputError(*errors)
    if not batch.addresses:
        raise AddressInputError(f"{source}: no addresses below the header row")
    return batch


def load_from_args(addresses: str | None = None, address: str | None = None) -> AddressBatch:
    """Spider arguments: ``-a addresses=FILE.csv`` or ``-a address="..."``, exactly one.

    An empty value counts as not given.
    """
    if addresses and address:
        raise AddressInputError('give either -a addresses=FILE.csv or -a address="...", not both')
    if addresses:
        return load_csv(addresses)
    if not address:
        raise AddressInputError(
            "no address given: use -a addresses=FILE.csv"
            ' or -a address="4560 E Sunrise Dr, Phoenix, AZ 85044"'
        )
    try:
        parsed = canonicalize(address.strip())
    except AddressError as exc:
        raise AddressInputError(f"-a address: {exc}") from exc
    warnings = [_not_in_arizona("-a address", parsed)] if parsed.state != "AZ" else []
    return AddressBatch([parsed], warnings, "-a address")


def _scourgify(text: str) -> tuple[str, str, str, str, str]:
    """scourgify's (line1, line2, city, state, zip), with "" for what the text lacks."""
    try:
        # scourgify deletes control characters before splitting words: "AZ\n85044" -> "AZ85044".
        record = normalize_address_record(" ".join(text.split()))
    except AddressNormalizationError as exc:
        raise AddressError(text) from exc
    keys = ("address_line_1", "address_line_2", "city", "state", "postal_code")
    line1, line2, city, state, zip_code = (record[key] or "" for key in keys)
    return line1, line2, city, state, zip_code


def _canonical_unit(line2: str) -> str:
    words = line2.replace("#", " # ").split()
    ids = [w for w in words if w not in _UNIT_DESIGNATORS]
    if len(ids) == 1:
        return f"UNIT {ids[0]}"
    # "BLDG 2 UNIT 5" or a bare "REAR": nothing to collapse, only "#" to spell out.
    return " ".join("UNIT" if w == "#" else w for w in words)


def _read_text(path: Path, source: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise AddressInputError(f"{source}: no such file") from exc
    except OSError as exc:
        raise AddressInputError(f"{source}: cannot read file ({exc.strerror})") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise AddressInputError(
            f"{source}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from exc


def _not_in_arizona(where: str, address: Address) -> str:
    return f'{where}: not in Arizona (state {address.state}): "{address.canonical}"; kept'
