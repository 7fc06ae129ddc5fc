from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from phx_scraper.addresses import (
    Address,
    AddressError,
    AddressInputError,
    canonicalize,
    from_parts,
    load_csv,
    load_from_args,
    property_hash,
)

SUNRISE = "4560 E SUNRISE DR, PHOENIX, AZ 85044"
SUNRISE_410 = "4560 E SUNRISE DR UNIT 410, PHOENIX, AZ 85044"
FIRST_ST_410 = "1234 N 1ST ST UNIT 410, PHOENIX, AZ 85004"
NEED = 'need "address", or "street", "city", "state" and "zip"'


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        # abbreviations, directions, case, punctuation, whitespace
        ("4560 East Sunrise Drive, Phoenix, Arizona 85044", SUNRISE),
        ("4560 E Sunrise Dr, Phoenix, AZ 85044", SUNRISE),
        ("4560 e sunrise dr,   phoenix ,  az   85044", SUNRISE),
        ("4560 E. Sunrise Dr., Phoenix, AZ, 85044", SUNRISE),
        ("4560 E SUNRISE DR,PHOENIX,AZ 85044", SUNRISE),
        ("  4560 E Sunrise Dr,\tPhoenix,\u00a0AZ\n85044 ", SUNRISE),
        ("4560 E Sunrise Dr, Phoenix AZ 85044, USA", SUNRISE),
        ("4560 E Sunrise Dr, Phoenix, AZ 85044, United States", SUNRISE),
        ("1234 North 1st Street, Phoenix, AZ 85004", "1234 N 1ST ST, PHOENIX, AZ 85004"),
        ("1234 N First Street, Phoenix, AZ 85004", "1234 N 1ST ST, PHOENIX, AZ 85004"),
        ("1234 N 1 St, Phoenix, AZ 85004", "1234 N 1ST ST, PHOENIX, AZ 85004"),
        ("123 W Paradise Lane, Phoenix, AZ 85023", "123 W PARADISE LN, PHOENIX, AZ 85023"),
        ("4560 Sunrise Dr East, Phoenix, AZ 85044", "4560 SUNRISE DR E, PHOENIX, AZ 85044"),
        # ZIP+4 trimmed, ZIP optional, state taken from an Arizona ZIP
        ("4560 E Sunrise Dr, Phoenix, AZ 85044-1234", SUNRISE),
        ("4560 E Sunrise Dr, Phoenix, AZ 850441234", SUNRISE),
        ("4560 E Sunrise Dr, Phoenix, AZ", "4560 E SUNRISE DR, PHOENIX, AZ"),
        ("4560 E Sunrise Dr, Phoenix 85044", SUNRISE),
        # units in every form
        ("1234 N 1st St #410, Phoenix, AZ 85004", FIRST_ST_410),
        ("1234 N 1st St # 410, Phoenix, AZ 85004", FIRST_ST_410),
        ("1234 N 1st St, #410, Phoenix, AZ 85004", FIRST_ST_410),
        ("1234 N 1st St Unit 410, Phoenix, AZ 85004", FIRST_ST_410),
        ("1234 N 1st St unit #410, Phoenix, AZ 85004", FIRST_ST_410),
        ("1234 N 1st St Apt 410, Phoenix, AZ 85004", FIRST_ST_410),
        ("1234 N 1st St Apt. 410, Phoenix, AZ 85004", FIRST_ST_410),
        ("1234 N 1st St Suite 410, Phoenix, AZ 85004", FIRST_ST_410),
        ("1234 N 1st St STE 410, Phoenix, AZ 85004", FIRST_ST_410),
        ("1234 N 1st St, Apt 410, Phoenix, AZ 85004", FIRST_ST_410),
        ("1234 N 1st St Lot 410, Phoenix, AZ 85004", FIRST_ST_410),
        ("1234 N 1ST ST 410, PHOENIX, AZ 85004", FIRST_ST_410),
        ("1234 N 1ST ST 410 PHOENIX AZ 85004", FIRST_ST_410),
        ("4560 E SUNRISE DR 410, PHOENIX, AZ 85044", SUNRISE_410),
        ("4560 E Sunrise Drive 410, Phoenix, AZ 85044", SUNRISE_410),
        ("4560 E SUNRISE DR 410, PHOENIX 85044", SUNRISE_410),
        ("1234 N 1st St Apt 3B, Phoenix, AZ 85004", "1234 N 1ST ST UNIT 3B, PHOENIX, AZ 85004"),
        ("1234 N 1st St #A-3, Phoenix, AZ 85004", "1234 N 1ST ST UNIT A-3, PHOENIX, AZ 85004"),
        (
            "4560 E Sunrise Dr Bldg 2 Unit 5, Phoenix, AZ 85044",
            "4560 E SUNRISE DR BLDG 2 UNIT 5, PHOENIX, AZ 85044",
        ),
        # a number that names the road is not a unit
        ("123 W US Highway 60, Gold Canyon, AZ 85118", "123 W US HWY 60, GOLD CANYON, AZ 85118"),
        ("123 County Road 12, Phoenix, AZ 85001", "123 COUNTY RD 12, PHOENIX, AZ 85001"),
        # cities
        ("4560 E Sunrise Dr, St Johns, AZ 85936", "4560 E SUNRISE DR, SAINT JOHNS, AZ 85936"),
        (
            "1 E Washington St, sun city west, AZ 85375",
            "1 E WASHINGTON ST, SUN CITY WEST, AZ 85375",
        ),
        ("123 Main St, Portland, OR 97212", "123 MAIN ST, PORTLAND, OR 97212"),
    ],
)
def test_canonicalize(text: str, canonical: str) -> None:
    assert canonicalize(text).canonical == canonical


@pytest.mark.parametrize(
    "renderings",
    [
        pytest.param(
            [
                "4560 E Sunrise Dr, Phoenix, AZ 85044",
                "4560 E Sunrise Dr" + ", " + "Phoenix, AZ 85044",
                "4560 E SUNRISE DR" + ", " + "PHOENIX" + " " + "85044",
                "4560 East Sunrise Drive, PHOENIX, AZ 85044-1234",
            ],
            id="house",
        ),
        pytest.param(
            [
                "4560 E Sunrise Dr UNIT 410, Phoenix, AZ 85044",
                "4560 E Sunrise Dr #410" + ", " + "Phoenix, AZ 85044",
                "4560 E SUNRISE DR 410" + ", " + "PHOENIX" + " " + "85044",
                "4560 East Sunrise Drive Unit #410, PHOENIX, AZ 85044-1234",
            ],
            id="condo",
        ),
        pytest.param(
            [
                "5219 W El Caminito Dr, Glendale, AZ 85302",
                "5219 W El Caminito Dr" + ", " + "Glendale, AZ 85302",
                "5219 W EL CAMINITO DR" + ", " + "GLENDALE" + " " + "85302",
                "5219 W EL CAMINITO Drive, Glendale, AZ 85302",
            ],
            id="mls",
        ),
    ],
)
def test_each_source_gives_the_same_property(renderings: list[str]) -> None:
    """Zillow, Redfin (name + subName), Maricopa (street + city + zip) and the MLS."""
    assert len({canonicalize(text).property_hash for text in renderings}) == 1


@pytest.mark.parametrize(
    ("parts", "canonical"),
    [
        (("4560 E Sunrise Dr", "Phoenix", "AZ", "85044", None), SUNRISE),
        (("4560 E SUNRISE DR 410", "PHOENIX", "", "85044", None), SUNRISE_410),
        (("4560 E Sunrise Dr", "Phoenix", "AZ", "85044", "410"), SUNRISE_410),
        (("4560 E Sunrise Dr", "Phoenix", "AZ", "85044", "#410"), SUNRISE_410),
        (("4560 E Sunrise Dr", "Phoenix", "AZ", "85044", "Unit 410"), SUNRISE_410),
        (("4560 E Sunrise Dr", "Phoenix", "Arizona", "85044-1234", "apt 410"), SUNRISE_410),
        ((" 4560 E Sunrise Dr ", " phoenix ", " az ", "", " "), "4560 E SUNRISE DR, PHOENIX, AZ"),
    ],
)
def test_from_parts(parts: tuple[str, str, str, str, str | None], canonical: str) -> None:
    assert from_parts(*parts).canonical == canonical


def test_address_fields() -> None:
    address = canonicalize("1234 North 1st Street #410, Phoenix, AZ 85004-2345")
    assert address.raw == "1234 North 1st Street #410, Phoenix, AZ 85004-2345"
    assert (address.street, address.unit) == ("1234 N 1ST ST", "UNIT 410")
    assert (address.city, address.state, address.zip) == ("PHOENIX", "AZ", "85004")
    assert address.canonical == FIRST_ST_410
    assert address.property_hash == hashlib.sha256(FIRST_ST_410.encode()).hexdigest()[:8]
    assert address.property_hash == property_hash(FIRST_ST_410)
    assert address.house_number == "1234"
    assert address.street_line == "1234 N 1ST ST UNIT 410"
    assert address.one_line() == "1234 N 1st St Unit 410, Phoenix, AZ 85004"
    assert canonicalize(SUNRISE).unit is None
    assert canonicalize("4560 E Sunrise Dr, Phoenix, AZ").zip == ""


def test_equal_addresses_ignore_how_they_were_written() -> None:
    one, other = canonicalize(SUNRISE), canonicalize("4560 East Sunrise Drive, Phoenix, AZ 85044")
    assert one.raw != other.raw
    assert one == other
    assert len({one, other}) == 1
    assert isinstance(one, Address)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("12 Nowhere", 'cannot parse address "12 Nowhere" (no city)'),
        ("hello world", 'cannot parse address "hello world"'),
        ("", 'cannot parse address ""'),
        ("Main St, Phoenix, AZ 85004", 'cannot parse address "Main St, Phoenix, AZ 85004"'),
        (
            "4560 E Sunrise Dr, Phoenix",
            'cannot parse address "4560 E Sunrise Dr, Phoenix" (no state)',
        ),
        (
            "4560 E Sunrise Dr, Phoenix, AZ 8504",
            'cannot parse address "4560 E Sunrise Dr, Phoenix, AZ 8504" (bad ZIP code "8504")',
        ),
        (
            "4560 E Sunrise Dr, Phoenix, XX 85044",
            'cannot parse address "4560 E Sunrise Dr, Phoenix, XX 85044" (unknown state "XX")',
        ),
        (
            "4560 E Sunrise Dr, Phoenix, Maricopa County, AZ 85044",
            'cannot parse address "4560 E Sunrise Dr, Phoenix, Maricopa County, AZ 85044"'
            ' (unclear city "PHOENIX, MARICOPA COUNTY")',
        ),
        (
            "4560 E Sunrise Dr Unit, Phoenix, AZ 85044",
            'cannot parse address "4560 E Sunrise Dr Unit, Phoenix, AZ 85044"',
        ),
    ],
)
def test_canonicalize_rejects(text: str, message: str) -> None:
    with pytest.raises(AddressError) as caught:
        canonicalize(text)
    assert str(caught.value) == message


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in tmp_path so messages name "homes.csv" exactly as a user would type it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("content", "canonicals", "warnings"),
    [
        pytest.param(
            "address\n4560 E Sunrise Dr, Phoenix, AZ 85044\n",
            [SUNRISE],
            [],
            id="address column",
        ),
        pytest.param(
            "\ufeff Address \r\n4560 E Sunrise Dr, Phoenix, AZ 85044\r\n",
            [SUNRISE],
            [],
            id="BOM, CRLF, header case and spaces",
        ),
        pytest.param(
            " Street ,CITY,State,Zip,unit\n"
            "4560 E Sunrise Dr,Phoenix,AZ,85044,\n"
            "4560 E Sunrise Dr,Phoenix,AZ,85044-1234,#410\n"
            "1234 N 1st St,phoenix,az,85004,410\n",
            [SUNRISE, SUNRISE_410, FIRST_ST_410],
            [],
            id="street city state zip unit columns",
        ),
        pytest.param(
            "street,city,state,zip\n4560 E SUNRISE DR 410,PHOENIX,AZ,85044\n",
            [SUNRISE_410],
            [],
            id="street city state zip columns, unit after the street",
        ),
        pytest.param(
            "address\n4560 E Sunrise Dr, Phoenix, AZ 85044\n\n,\n"
            "1234 N 1st St #410, Phoenix, AZ 85004\n",
            [SUNRISE, FIRST_ST_410],
            ["homes.csv:3: blank row, skipped", "homes.csv:4: blank row, skipped"],
            id="blank rows",
        ),
        pytest.param(
            'notes,Address\ngate code 12,"4560 E Sunrise Dr, Phoenix, AZ 85044"\n',
            [SUNRISE],
            [],
            id="quoted address beside other columns",
        ),
        pytest.param(
            'address,notes\n,call first\n"4560 E Sunrise Dr, Phoenix, AZ 85044",\n',
            [SUNRISE],
            ["homes.csv:2: no address, skipped"],
            id="row without an address",
        ),
        pytest.param(
            'address\n4560 E Sunrise Dr, Phoenix, AZ 85044\n"123 Main St,\nPortland, OR 97212"\n',
            [SUNRISE, "123 MAIN ST, PORTLAND, OR 97212"],
            ['homes.csv:3: not in Arizona (state OR): "123 MAIN ST, PORTLAND, OR 97212"; kept'],
            id="non-Arizona kept",
        ),
        pytest.param(
            "address\n"
            "4560 E Sunrise Dr, Phoenix, AZ 85044\n"
            '"1234 N 1st St #410,\nPhoenix, AZ 85004"\n'
            "4560 EAST SUNRISE DRIVE, phoenix, az 85044-1234\n"
            "1234 N 1ST ST UNIT 410, PHOENIX, AZ 85004\n",
            [SUNRISE, FIRST_ST_410],
            [
                f'homes.csv:5: duplicate of row 2 after canonicalization ("{SUNRISE}");'
                " keeping row 2",
                f'homes.csv:6: duplicate of row 3 after canonicalization ("{FIRST_ST_410}");'
                " keeping row 3",
            ],
            id="duplicates, rows counted as file lines",
        ),
    ],
)
def test_load_csv(in_tmp: Path, content: str, canonicals: list[str], warnings: list[str]) -> None:
    (in_tmp / "homes.csv").write_bytes(content.encode("utf-8"))
    batch = load_csv("homes.csv")
    assert [address.canonical for address in batch.addresses] == canonicals
    assert batch.warnings == warnings
    assert batch.source == "homes.csv"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "homes.csv: no such file", id="missing file"),
        pytest.param(b"", f"homes.csv: file is empty; {NEED}", id="empty file"),
        pytest.param(b" \n\n", f"homes.csv: file is empty; {NEED}", id="blank file"),
        pytest.param(
            b"address\n", "homes.csv: no addresses below the header row", id="header only"
        ),
        pytest.param(
            b"address\n\n\n",
            "homes.csv: no addresses below the header row",
            id="header and blank rows",
        ),
        pytest.param(
            b"Street,Town,Zip\n4560 E Sunrise Dr,Phoenix,85044\n",
            f'homes.csv:1: missing columns: {NEED}; found "Street", "Town", "Zip"',
            id="missing columns",
        ),
        pytest.param(
            b"4560 E Sunrise Dr, Phoenix, AZ 85044\n",
            f"homes.csv:1: missing columns: {NEED};"
            ' found "4560 E Sunrise Dr", "Phoenix", "AZ 85044"',
            id="no header row",
        ),
        pytest.param(
            b"address\n4560 E Sunrise Dr, Ph\xe9nix, AZ 85044\n",
            "homes.csv:2: not UTF-8 (byte 0xe9); save the file as UTF-8",
            id="not UTF-8",
        ),
        pytest.param(
            b"address\n"
            b"4560 E Sunrise Dr, Phoenix, AZ 85044\n"
            b"12 Nowhere\n"
            b"\n"
            b"4560 E Sunrise Dr, Phoenix\n",
            'homes.csv:3: cannot parse address "12 Nowhere" (no city)\n'
            'homes.csv:5: cannot parse address "4560 E Sunrise Dr, Phoenix" (no state)',
            id="every unparseable row listed",
        ),
        pytest.param(
            b"street,city,state,zip\nSunrise Dr,Phoenix,AZ,85044\n",
            'homes.csv:2: cannot parse address "Sunrise Dr, Phoenix, AZ 85044"',
            id="unparseable parts",
        ),
    ],
)
def test_load_csv_rejects(in_tmp: Path, content: bytes | None, message: str) -> None:
    if content is not None:
        (in_tmp / "homes.csv").write_bytes(content)
    with pytest.raises(AddressInputError) as caught:
        load_csv("homes.csv")
    assert str(caught.value) == message


def test_load_csv_names_a_directory(in_tmp: Path) -> None:
    (in_tmp / "homes.csv").mkdir()
    with pytest.raises(AddressInputError, match=r"^homes\.csv: cannot read file \(.+\)$"):
        load_csv(Path("homes.csv"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param(
            {"addresses": "homes.csv", "address": SUNRISE},
            'give either -a addresses=FILE.csv or -a address="...", not both',
            id="both",
        ),
        pytest.param(
            {},
            'no address given: use -a addresses=FILE.csv or -a address="4560 E Sunrise Dr,'
            ' Phoenix, AZ 85044"',
            id="neither",
        ),
        pytest.param(
            {"addresses": "", "address": ""},
            'no address given: use -a addresses=FILE.csv or -a address="4560 E Sunrise Dr,'
            ' Phoenix, AZ 85044"',
            id="both empty",
        ),
        pytest.param(
            {"address": "12 Nowhere"},
            '-a address: cannot parse address "12 Nowhere" (no city)',
            id="unparseable",
        ),
        pytest.param({"addresses": "nope.csv"}, "nope.csv: no such file", id="missing file"),
    ],
)
def test_load_from_args_rejects(in_tmp: Path, kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(AddressInputError) as caught:
        load_from_args(**kwargs)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("address", "canonical", "warnings"),
    [
        (" 4560 E Sunrise Dr, Phoenix, AZ 85044 ", SUNRISE, []),
        (
            "123 Main St, Portland, OR 97212",
            "123 MAIN ST, PORTLAND, OR 97212",
            ['-a address: not in Arizona (state OR): "123 MAIN ST, PORTLAND, OR 97212"; kept'],
        ),
    ],
)
def test_load_from_args_address(address: str, canonical: str, warnings: list[str]) -> None:
    batch = load_from_args(address=address)
    assert [a.canonical for a in batch.addresses] == [canonical]
    assert batch.warnings == warnings
    assert batch.source == "-a address"


def test_load_from_args_file(in_tmp: Path) -> None:
    (in_tmp / "homes.csv").write_text("address\n4560 E Sunrise Dr, Phoenix, AZ 85044\n")
    batch = load_from_args(addresses="homes.csv")
    assert [a.canonical for a in batch.addresses] == [SUNRISE]
    assert batch.source == "homes.csv"
