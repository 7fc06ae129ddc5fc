"""What a block looks like at each source (``/work/shared/sources.md``), as pure functions.

A block is an answer that refuses us, whatever its status: spiders must never
read it as "no photos", and the circuit breaker counts it. The kinds:

``perimeterx``
    Zillow (PerimeterX / HUMAN): any 403, or a 200 carrying the captcha page
    (its title, ``px-captcha``, "Press & Hold", ``captcha.px-cdn.net``).
    ``_pxAppId`` alone is not a marker: normal pages carry the sensor too.
``aws_waf``
    Redfin: a 202 whose small body is the AWS WAF challenge
    (``awsWafCookieDomainList``, ``gokuProps``, ``challenge.js``).
``ratelimited``
    Redfin: a 302 to ``https://ratelimited.redfin.com/`` (the replica redirects
    to ``/ratelimited/`` on the same host), or that page itself. Any source: a 429.
``waf_403``
    Redfin (non-browser clients) and Phoenix MLS (flexmls WAF): a 403.
``unauthorized``
    Maricopa Assessor API: 401 or 403 (missing or rejected token).

Bodies may still carry their ``Content-Encoding`` (the breaker sits above
HttpCompressionMiddleware to see redirects): only the first ``SCAN_BYTES`` are
decoded, which is all the markers need and bounds the work on any body.
"""

from __future__ import annotations

import re
import sys
import zlib
from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import brotli
from scrapy.exceptions import IgnoreRequest

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

#: Block pages are small; markers are searched in the head of the body only,
#: which keeps a listing description that says "press and hold" from counting
#: and keeps detection cheap on megabyte pages and photos.
SCAN_BYTES = 64 * 1024

_PX_TITLE = re.compile(rb"<title>\s*access to this page has been denied", re.IGNORECASE)
_PX_MARKERS = (
    b"px-captcha",
    b"press & hold",
    b"press &amp; hold",
    b"press and hold",
    b"captcha.px-cdn.net",
)
_AWS_WAF_MARKERS = (b"awswafcookiedomainlist", b"gokuprops", b"challenge.js")

RATELIMIT_HOST = "ratelimited.redfin.com"
RATELIMIT_PATH = "/ratelimited"


class BlockedResponse(IgnoreRequest):
    """A response that was a block page: the request's errback receives this.

    Media requests end as failures carrying it, so the images pipeline can
    report the photo as blocked rather than missing.
    """

    def __init__(self, source: str, kind: str, status: int, url: str = "") -> None:
        super().__init__(source, kind, status, url)
        self.source = source
        self.kind = kind
        self.status = status
        self.url = url

    def __str__(self) -> str:
        return f"{self.source} blocked us ({self.kind}, HTTP {self.status}) at {self.url}"


def is_ratelimit_url(url: str) -> bool:
    """Redfin's rate-limit page: its own host on the live site, a path in the replica."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    return parts.hostname == RATELIMIT_HOST or path == RATELIMIT_PATH


def _gunzip(data: bytes) -> bytes:
    return zlib.decompressobj(wbits=zlib.MAX_WBITS | 16).decompress(data, SCAN_BYTES)


def _inflate(data: bytes) -> bytes:
    try:
        return zlib.decompressobj().decompress(data, SCAN_BYTES)
    except zlib.error:  # raw deflate, as some servers send it
        return zlib.decompressobj(wbits=-zlib.MAX_WBITS).decompress(data, SCAN_BYTES)


def _unbrotli(data: bytes) -> bytes:
    return bytes(brotli.Decompressor().process(data, output_buffer_limit=SCAN_BYTES))


def _unzstd(data: bytes) -> bytes:
    return bytes(zstd.ZstdDecompressor().decompress(data, max_length=SCAN_BYTES))


_DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": _gunzip,
    "x-gzip": _gunzip,
    "deflate": _inflate,
    "br": _unbrotli,
    "zstd": _unzstd,
}


def body_head(body: bytes, content_encoding: str = "") -> bytes:
    """The first ``SCAN_BYTES`` of the body as a browser reads it; ``b""`` if undecodable."""
    head = body
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    for coding in reversed(codings):
        decode = _DECODERS.get(coding)
        if decode is None:
            continue  # identity, or a coding we cannot read: judge the bytes as they are
        try:
            head = decode(head)
        except (zlib.error, brotli.error, zstd.ZstdError, EOFError, ValueError):
            return b""
    return head[:SCAN_BYTES]


def _has_marker(head: bytes, markers: tuple[bytes, ...]) -> bool:
    lowered = head.lower()
    return any(marker in lowered for marker in markers)


def _is_image(headers: Mapping[str, str]) -> bool:
    return headers.get("content-type", "").strip().lower().startswith("image/")


def detect_block(
    source: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    url: str,
    *,
    rendered: bool = False,
) -> str | None:
    """The kind of block this response is, or ``None`` for an ordinary answer.

    ``headers`` are matched case-insensitively; ``body`` is as received, its
    ``Content-Encoding`` is undone here. ``rendered``:
    the body is the page a browser shows after its scripts ran
    (scrapy-playwright) while ``status`` is that of the first navigation, so
    a Zillow 403 whose challenge the browser passed is judged by its body.
    """
    headers = {key.lower(): value for key, value in headers.items()}
    if status == 429:
        return "ratelimited"
    if source == "zillow":
        if status == 403 and not rendered:
            return "perimeterx"
        if (status == 200 or rendered) and not _is_image(headers):
            head = body_head(body, headers.get("content-encoding", ""))
            if _PX_TITLE.search(head) or _has_marker(head, _PX_MARKERS):
                return "perimeterx"
        return None
    if source == "redfin":
        if status == 202:
            head = body_head(body, headers.get("content-encoding", ""))
            if _has_marker(head, _AWS_WAF_MARKERS):
                return "aws_waf"
        if status in (301, 302, 303, 307, 308):
            location = headers.get("location", "")
            if location and is_ratelimit_url(urljoin(url, location)):
                return "ratelimited"
        if is_ratelimit_url(url):
            return "ratelimited"
        if status == 403:
            return "waf_403"
        return None
    if source == "phoenix_mls":
        return "waf_403" if status == 403 else None
    if source == "maricopa":
        return "unauthorized" if status in (401, 403) else None
    return None


def parse_retry_after(value: str | bytes | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or HTTP-date).

    ``None`` when absent or unreadable; a date in the past gives ``0.0``.
    """
    if value is None:
        return None
    text = (value.decode("latin-1") if isinstance(value, bytes) else value).strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": RFC 9110 dates are GMT anyway
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
