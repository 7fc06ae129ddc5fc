"""The slice of ArcGIS REST the Maricopa replica speaks: query ``where`` clauses,
Web Mercator conversions and ``export`` parameter checks (pure, no Twisted).

``where`` is parsed like the server does: AND / OR / NOT, parentheses,
``=``, ``<>``, ``<``, ``>``, ``LIKE`` (``%`` and ``_``), ``IN (...)``,
``IS [NOT] NULL``, ``UPPER()`` / ``LOWER()``; string comparisons ignore case
(the county's SQL Server collation does).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

Row = dict[str, Any]
Predicate = Callable[[Row], bool]
_R = 6378137.0
MERCATOR_WKIDS = (102100, 3857, 102113, 900913)
MAX_IMAGE_SIDE = 4096


class ArcGISError(ValueError):
    """Rendered as ``{"error": {"code": 400, ...}}`` (with HTTP 200, as ArcGIS does)."""

    def __init__(self, detail: str, code: int = 400) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": "Unable to complete operation.",
                "details": [self.detail],
            }
        }


def to_mercator(lng: float, lat: float) -> tuple[float, float]:
    x = math.radians(lng) * _R
    y = math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)) * _R
    return x, y


def to_lnglat(x: float, y: float) -> tuple[float, float]:
    return math.degrees(x / _R), math.degrees(2 * math.atan(math.exp(y / _R)) - math.pi / 2)


# --- where clauses ---
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op><>|!=|>=|<=|=|<|>|\(|\)|,)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)
_KEYWORDS = {"AND", "OR", "NOT", "LIKE", "IN", "IS", "NULL", "UPPER", "LOWER"}


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ArcGISError("'where' parameter is invalid")
        pos = m.end()
        kind = m.lastgroup or ""
        value = m[kind]
        if kind == "word" and value.upper() in _KEYWORDS:
            kind, value = "kw", value.upper()
        tokens.append((kind, value))
    return tokens


class _Parser:
    def __init__(self, text: str, fields: set[str]) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0
        self.fields = {f.upper(): f for f in fields}

    def parse(self) -> Predicate:
        if not self.tokens:
            raise ArcGISError("'where' parameter is invalid")
        pred = self._or()
        if self.pos != len(self.tokens):
            raise ArcGISError("'where' parameter is invalid")
        return pred

    def _peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def _take(self, kind: str, value: str | None = None) -> str:
        tok = self._peek()
        if tok[0] != kind or (value is not None and tok[1] != value):
            raise ArcGISError("'where' parameter is invalid")
        self.pos += 1
        return tok[1]

    def _accept(self, kind: str, value: str) -> bool:
        if self._peek() == (kind, value):
            self.pos += 1
            return True
        return False

    def _or(self) -> Predicate:
        parts = [self._and()]
        while self._accept("kw", "OR"):
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else lambda row: any(p(row) for p in parts)

    def _and(self) -> Predicate:
        parts = [self._not()]
        while self._accept("kw", "AND"):
            parts.append(self._not())
        return parts[0] if len(parts) == 1 else lambda row: all(p(row) for p in parts)

    def _not(self) -> Predicate:
        if self._accept("kw", "NOT"):
            inner = self._not()
            return lambda row: not inner(row)
        if self._peek() == ("op", "("):
            save = self.pos
            self.pos += 1
            try:
                inner = self._or()
                self._take("op", ")")
                return inner
            except ArcGISError:
                self.pos = save  # "(" started an operand, not a group
        return self._comparison()

    def _operand(self) -> Callable[[Row], Any]:
        kind, value = self._peek()
        self.pos += 1
        if kind == "str":
            text = value[1:-1].replace("''", "'")
            return lambda row: text
        if kind == "num":
            number = float(value)
            return lambda row: number
        if kind == "kw" and value in ("UPPER", "LOWER"):
            self._take("op", "(")
            inner = self._operand()
            self._take("op", ")")
            fn = str.upper if value == "UPPER" else str.lower
            return lambda row: fn(str(inner(row))) if inner(row) is not None else None
        if kind == "word":
            field = self.fields.get(value.upper())
            if field is None:
                raise ArcGISError(f"Invalid field: {value}")
            return lambda row: row.get(field)
        if kind == "op" and value == "(":
            inner = self._operand()
            self._take("op", ")")
            return inner
        raise ArcGISError("'where' parameter is invalid")

    def _comparison(self) -> Predicate:
        left = self._operand()
        negate = self._accept("kw", "NOT")
        kind, value = self._peek()
        self.pos += 1
        if (kind, value) == ("kw", "LIKE"):
            pattern = self._operand()

            def pred(row: Row) -> bool:
                return _like(left(row), pattern(row))

        elif (kind, value) == ("kw", "IN"):
            self._take("op", "(")
            options = [self._operand()]
            while self._accept("op", ","):
                options.append(self._operand())
            self._take("op", ")")

            def pred(row: Row) -> bool:
                return any(_compare(left(row), "=", o(row)) for o in options)

        elif (kind, value) == ("kw", "IS"):
            is_not = self._accept("kw", "NOT")
            self._take("kw", "NULL")

            def pred(row: Row) -> bool:
                return (left(row) is None) != is_not

        elif kind == "op" and value in _OPS:
            right = self._operand()

            def pred(row: Row) -> bool:
                return _compare(left(row), value, right(row))

        else:
            raise ArcGISError("'where' parameter is invalid")
        return (lambda row: not pred(row)) if negate else pred


def _like(value: Any, pattern: Any) -> bool:
    if value is None or pattern is None:
        return False
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in str(pattern))
    return re.fullmatch(regex, str(value), re.IGNORECASE | re.DOTALL) is not None


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}


def _compare(left: Any, op: str, right: Any) -> bool:
    if left is None or right is None:
        return False
    if isinstance(left, str) != isinstance(right, str):
        try:
            left, right = float(left), float(right)
        except ValueError:
            left, right = str(left), str(right)
    if isinstance(left, str):
        left, right = left.upper(), str(right).upper()
    try:
        return _OPS[op](left, right)
    except TypeError:
        return False


def where(text: str, fields: set[str]) -> Predicate:
    """Compile an ArcGIS ``where`` clause against rows with these fields."""
    if text.strip() in ("", "1=1"):
        return lambda row: True
    return _Parser(text, fields).parse()


# --- export ---
def export_params(
    query: dict[str, str],
) -> tuple[tuple[float, float, float, float], tuple[int, int], str]:
    """Validate an ``export`` request: (bbox in Web Mercator metres, size, format)."""
    try:
        bbox = tuple(float(v) for v in query.get("bbox", "").split(","))
    except ValueError:
        raise ArcGISError("Invalid bbox") from None
    if len(bbox) != 4 or not (bbox[0] < bbox[2] and bbox[1] < bbox[3]):
        raise ArcGISError("Invalid bbox")
    sr_text = query.get("bboxSR", "102100")
    sr = wkid(sr_text)
    if sr == 4326:
        (x0, y0), (x1, y1) = to_mercator(bbox[0], bbox[1]), to_mercator(bbox[2], bbox[3])
        bbox = (x0, y0, x1, y1)
    elif sr not in MERCATOR_WKIDS:
        raise ArcGISError(f"Invalid bboxSR: {sr_text}")
    try:
        width, height = (int(v) for v in query.get("size", "400,400").split(","))
    except ValueError:
        raise ArcGISError("Invalid size") from None
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        raise ArcGISError(f"Invalid size: image side must be 1..{MAX_IMAGE_SIDE}")
    fmt = query.get("format", "png").lower()
    if fmt not in ("jpg", "jpeg", "png", "png8", "png24", "png32"):
        raise ArcGISError(f"Invalid format: {fmt}")
    x0, y0, x1, y1 = bbox
    return (x0, y0, x1, y1), (width, height), fmt


def wkid(text: str) -> int:
    """A spatial reference given as a number or as JSON, e.g. ``{"wkid": 102100}``."""
    text = text.strip()
    if text.startswith("{"):
        m = re.search(r'"(?:latestWkid|wkid)"\s*:\s*(\d+)', text)
        text = m[1] if m else ""
    if not text.isdigit():
        raise ArcGISError(f"Invalid spatial reference: {text}")
    return int(text)
