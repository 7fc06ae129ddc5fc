"""How the replica sites match a typed address against their homes (pure).

Loose on purpose, like the real search boxes: case, punctuation, long or short
street types and unit designators ("Unit", "Apt", "#") do not matter; a ZIP,
when given, must agree; a unit, when given, must agree (the building without
a unit is a weaker candidate). The last word typed may be a prefix, so
as-you-type suggestions work.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from phx_scraper.sandbox.model import DIRECTIONS, SUFFIX_LONG, Property

EXACT, PARTIAL = 2, 1
_SUFFIXES = {s.upper() for s in SUFFIX_LONG}
_ABBREV = {
    **{long.upper(): short.upper() for short, long in SUFFIX_LONG.items()},
    "AV": "AVE",
    "NORTH": "N",
    "SOUTH": "S",
    "EAST": "E",
    "WEST": "W",
    "ARIZONA": "AZ",
    "APT": "UNIT",
    "APARTMENT": "UNIT",
    "STE": "UNIT",
    "SUITE": "UNIT",
    "#": "UNIT",
}


def tokens(text: str) -> list[str]:
    text = re.sub(r"[^A-Z0-9#]+", " ", text.upper().replace("#", " # "))
    return [_ABBREV.get(t, t) for t in text.split()]


@dataclass(frozen=True)
class Query:
    tokens: tuple[str, ...]
    number: str | None
    direction: str | None
    unit: str | None
    zip: str | None


def parse(text: str) -> Query:
    toks = tokens(text)
    if len(toks) >= 2 and re.fullmatch(r"\d{5}", toks[-2]) and re.fullmatch(r"\d{4}", toks[-1]):
        toks = toks[:-1]  # ZIP+4
    zip_code = toks[-1] if len(toks) > 1 and re.fullmatch(r"\d{5}", toks[-1]) else None
    number = toks[0] if toks and toks[0].isdigit() else None
    direction = toks[1] if len(toks) > 1 and toks[1] in DIRECTIONS else None
    unit = None
    for i in range(1, len(toks)):
        if toks[i - 1] == "UNIT":
            unit = toks[i]
            break
        # The assessor writes units bare after the street type: "... DR 4010".
        if toks[i - 1] in _SUFFIXES and toks[i].isdigit() and toks[i] != zip_code:
            unit = toks[i]
            break
    return Query(tuple(toks), number, direction, unit, zip_code)


def score(query: Query, prop: Property) -> int:
    """EXACT, PARTIAL (building vs unit) or 0."""
    if query.number is None or query.number != prop.number:
        return 0
    if query.direction and prop.predir and query.direction != prop.predir:
        return 0
    if query.zip and query.zip != prop.zip:
        return 0
    words = set(query.tokens)
    last = query.tokens[-1] if query.tokens else ""
    for word in tokens(prop.name):
        if word not in words and not (len(last) >= 2 and word.startswith(last)):
            return 0
    if prop.unit:
        if query.unit is None:
            return PARTIAL
        return EXACT if query.unit.lstrip("0") == prop.unit.lstrip("0") else 0
    return PARTIAL if query.unit else EXACT


def search(text: str, homes: Iterable[Property]) -> list[tuple[int, Property]]:
    """Matching homes, best first."""
    query = parse(text)
    found = [(score(query, prop), prop) for prop in homes]
    return sorted(((s, p) for s, p in found if s), key=lambda sp: (-sp[0], sp[1].key))


def best(text: str, homes: Iterable[Property]) -> list[Property]:
    """The homes of the best tier (several when the address is ambiguous)."""
    found = search(text, homes)
    return [p for s, p in found if s == found[0][0]] if found else []


def cities_in(text: str, cities: Iterable[str]) -> list[str]:
    joined = " " + " ".join(tokens(text)) + " "
    return [c for c in cities if f" {c.upper()} " in joined]
