"""Block pages of each source, as the sites serve them, against ``detect_block``."""

from __future__ import annotations

import gzip
import sys
import zlib
from datetime import UTC, datetime
from email.utils import format_datetime

import brotli
import pytest

from phx_scraper.middlewares.blocks import (
    SCAN_BYTES,
    body_head,
    detect_block,
    is_ratelimit_url,
    parse_retry_after,
)

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

ZILLOW_PAGE = "https://www.zillow.com/homedetails/4560-E-Sunrise-Dr-Phoenix-AZ-85044/8142157_zpid/"
REDFIN_API = (
    "https://www.redfin.com/stingray/api/home/details/aboveTheFold?propertyId=1&listingId=2"
)
HTML = {"Content-Type": "text/html; charset=utf-8"}

PX_CAPTCHA_PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Access to this page has been denied</title>
<link href="https://fonts.googleapis.com/css?family=Open+Sans:300,400" rel="stylesheet">
</head>
<body>
<section class="container">
  <div class="page-title-wrapper">
    <h1 class="page-title">Please verify you're a human to continue.</h1>
  </div>
  <div id="px-captcha"></div>
  <p>Press &amp; Hold to confirm you are a human (and not a bot).</p>
</section>
<script>
window._pxAppId = 'PXHYx10rg3';
window._pxJsClientSrc = '/HYx10rg3/init.js';
window._pxHostUrl = '/HYx10rg3/xhr';
window._pxreCaptchaTheme = 'light';
</script>
<script src="https://captcha.px-cdn.net/PXHYx10rg3/captcha.js?a=c&m=0&u=7c2a&v=&g=b"></script>
</body>
</html>
"""

# The same wall served with a 200 and without the title (seen on search pages).
PX_PRESS_AND_HOLD = b"""<html><head><title>zillow.com</title></head><body>
<div class="px-block"><p>Press and hold the button to prove you are human.</p>
<div id="px-captcha-wrapper"></div></div></body></html>"""

PX_SCRIPT_ONLY = (
    b'<html><head><title>Zillow</title></head><body><script src="//captcha.px-cdn.net/'
    b'PXHYx10rg3/captcha.js?a=c&u=1"></script></body></html>'
)

PX_JSON_BLOCK = (
    b'{"appId":"PXHYx10rg3","jsClientSrc":"/HYx10rg3/init.js","firstPartyEnabled":true,'
    b'"vid":"","uuid":"7c2a6b8e-0a1f-11ef-8f4d-4b5a6c7d8e9f","hostUrl":"/HYx10rg3/xhr",'
    b'"blockScript":"/HYx10rg3/captcha/captcha.js?a=c&u=7c2a6b8e&v=&m=0"}'
)

# A normal detail page: the PerimeterX sensor is on every page (_pxAppId).
ZILLOW_NORMAL = b"""<!DOCTYPE html><html><head>
<title>4560 E Sunrise Dr, Phoenix, AZ 85044 | MLS #6690123 | Zillow</title>
<script>window._pxAppId = 'PXHYx10rg3'; window._pxJsClientSrc = '/HYx10rg3/init.js';</script>
<script src="/HYx10rg3/init.js" async></script>
</head><body>
<script id="__NEXT_DATA__" type="application/json">{"props":{"pageProps":{"componentProps":
{"gdpClientCache":"{\\"Property:8142157\\":{\\"property\\":{\\"zpid\\":8142157}}}"}}}}</script>
</body></html>"""

# A listing whose description, far down a large page, tells buyers to "press and hold".
ZILLOW_LONG_DESCRIPTION = (
    ZILLOW_NORMAL.replace(b"</body>", b"<!--" + b"x" * 100_000 + b"-->\n</body>")
    + b'<script>{"description":"Press and hold the gate remote for 3 seconds."}</script>'
)

AWS_WAF_CHALLENGE = b"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title></title>
<style>body{font-family:Arial,Helvetica,sans-serif}</style></head>
<body>
<div id="challenge-container"></div>
<script type="text/javascript">
window.awsWafCookieDomainList = [];
window.gokuProps = {"key":"AQIDAHjcYu/GjX+QlghicBgQ/7bFaQZ+m5FKCMDnO+vTbNg96AH",
"iv":"CgAHMDqk","context":"r5E3"};
</script>
<script src="https://ab12cd34ef56.edge.sdk.awswaf.com/ab12cd34ef56/0f1e2d3c4b5a/challenge.js"></script>
<noscript><h1>JavaScript is disabled</h1></noscript>
</body></html>"""

ARE_YOU_A_ROBOT = b"""<!DOCTYPE html><html><head><title>Are You a Robot?</title></head>
<body><h1>Are You a Robot?</h1><p>We've detected unusual activity from your network.</p>
</body></html>"""

STINGRAY_OK = b'{}&&{"version":534,"errorMessage":"Success","resultCode":0,"payload":{}}'

MLS_WAF = b"""<html><head><title>403 Forbidden</title></head><body>
<h1>Access Denied</h1><p>Your request was blocked by the web application firewall.</p>
</body></html>"""


BLOCK_CASES = [
    # (id, source, status, headers, body, url, kind)
    ("zillow-403-captcha", "zillow", 403, HTML, PX_CAPTCHA_PAGE, ZILLOW_PAGE, "perimeterx"),
    ("zillow-200-captcha", "zillow", 200, HTML, PX_CAPTCHA_PAGE, ZILLOW_PAGE, "perimeterx"),
    ("zillow-200-press-hold", "zillow", 200, HTML, PX_PRESS_AND_HOLD, ZILLOW_PAGE, "perimeterx"),
    ("zillow-200-px-script", "zillow", 200, {}, PX_SCRIPT_ONLY, ZILLOW_PAGE, "perimeterx"),
    (
        "zillow-403-json-xhr",
        "zillow",
        403,
        {"Content-Type": "application/json"},
        PX_JSON_BLOCK,
        "https://www.zillowstatic.com/autocomplete/v3/suggestions?q=4560",
        "perimeterx",
    ),
    ("zillow-403-empty", "zillow", 403, {}, b"", ZILLOW_PAGE, "perimeterx"),
    ("zillow-normal-with-pxappid", "zillow", 200, HTML, ZILLOW_NORMAL, ZILLOW_PAGE, None),
    ("zillow-words-deep-in-page", "zillow", 200, HTML, ZILLOW_LONG_DESCRIPTION, ZILLOW_PAGE, None),
    (
        "zillow-photo",
        "zillow",
        200,
        {"Content-Type": "image/jpeg"},
        b"\xff\xd8\xff\xe0px-captcha",
        "https://photos.zillowstatic.com/fp/0123456789abcdef0123456789abcdef-cc_ft_1536.jpg",
        None,
    ),
    ("zillow-404", "zillow", 404, HTML, b"<html>Not found</html>", ZILLOW_PAGE, None),
    ("redfin-202-waf", "redfin", 202, HTML, AWS_WAF_CHALLENGE, REDFIN_API, "aws_waf"),
    ("redfin-202-no-challenge", "redfin", 202, {}, b"", REDFIN_API, None),
    (
        "redfin-302-ratelimited-host",
        "redfin",
        302,
        {"Location": "https://ratelimited.redfin.com/"},
        b"",
        REDFIN_API,
        "ratelimited",
    ),
    (
        "redfin-302-replica-path",
        "redfin",
        302,
        {"location": "/ratelimited/"},
        b"",
        "http://127.0.0.1:8001/stingray/do/location-autocomplete?location=x",
        "ratelimited",
    ),
    (
        "redfin-302-ordinary",
        "redfin",
        302,
        {"Location": "/AZ/Phoenix/4560-E-Sunrise-Dr-85044/home/1"},
        b"",
        "https://www.redfin.com/home/1",
        None,
    ),
    (
        "redfin-429-robot",
        "redfin",
        429,
        HTML,
        ARE_YOU_A_ROBOT,
        "https://ratelimited.redfin.com/",
        "ratelimited",
    ),
    (
        "redfin-robot-page-200",
        "redfin",
        200,
        HTML,
        ARE_YOU_A_ROBOT,
        "http://127.0.0.1:8001/ratelimited/",
        "ratelimited",
    ),
    (
        "redfin-403-non-browser",
        "redfin",
        403,
        HTML,
        b"<h1>403 Forbidden</h1>",
        REDFIN_API,
        "waf_403",
    ),
    ("redfin-200-json", "redfin", 200, {}, STINGRAY_OK, REDFIN_API, None),
    ("redfin-404-photo", "redfin", 404, {}, b"", "https://ssl.cdn-redfin.com/photo/86/x.jpg", None),
    (
        "mls-403-waf",
        "phoenix_mls",
        403,
        HTML,
        MLS_WAF,
        "https://phoenixmlssearch.com/simple-search/",
        "waf_403",
    ),
    ("mls-200", "phoenix_mls", 200, HTML, b"<html>0 matches found</html>", "https://x/", None),
    (
        "assessor-401",
        "maricopa",
        401,
        {"Content-Type": "application/json"},
        b'{"message":"Unauthorized"}',
        "https://mcassessor.maricopa.gov/parcel/12345678",
        "unauthorized",
    ),
    ("assessor-403", "maricopa", 403, {}, b"", "https://mcassessor.maricopa.gov/x", "unauthorized"),
    ("assessor-404", "maricopa", 404, {}, b"", "https://mcassessor.maricopa.gov/x", None),
    (
        "any-429",
        "maricopa",
        429,
        {"Retry-After": "60"},
        b"",
        "https://gis.example/x",
        "ratelimited",
    ),
    ("unknown-source-403", "", 403, {}, b"", "https://example.com/", None),
]


@pytest.mark.parametrize(
    ("source", "status", "headers", "body", "url", "kind"),
    [pytest.param(*case[1:], id=case[0]) for case in BLOCK_CASES],
)
def test_detect_block(
    source: str, status: int, headers: dict[str, str], body: bytes, url: str, kind: str | None
) -> None:
    assert detect_block(source, status, headers, body, url) == kind


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        pytest.param(403, ZILLOW_NORMAL, None, id="challenge-passed"),
        pytest.param(403, PX_CAPTCHA_PAGE, "perimeterx", id="still-captcha"),
        pytest.param(200, PX_CAPTCHA_PAGE, "perimeterx", id="captcha-200"),
        pytest.param(200, ZILLOW_NORMAL, None, id="normal"),
    ],
)
def test_rendered_zillow_page_is_judged_by_its_body(
    status: int, body: bytes, kind: str | None
) -> None:
    """scrapy-playwright reports the first navigation's status with the final page's body."""
    assert detect_block("zillow", status, HTML, body, ZILLOW_PAGE, rendered=True) == kind


def _deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


ENCODINGS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstd.compress,
}


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        *[
            pytest.param(name, encode(PX_PRESS_AND_HOLD), id=name)
            for name, encode in ENCODINGS.items()
        ],
        pytest.param("deflate", _deflate_raw(PX_PRESS_AND_HOLD), id="raw-deflate"),
        pytest.param("gzip, br", brotli.compress(gzip.compress(PX_PRESS_AND_HOLD)), id="chain"),
        pytest.param("GZIP", gzip.compress(PX_PRESS_AND_HOLD), id="case"),
    ],
)
def test_compressed_block_pages_are_read(encoding: str, body: bytes) -> None:
    headers = {**HTML, "Content-Encoding": encoding}
    assert detect_block("zillow", 200, headers, body, ZILLOW_PAGE) == "perimeterx"


def test_compressed_waf_challenge_is_read() -> None:
    headers = {"Content-Encoding": "gzip"}
    body = gzip.compress(AWS_WAF_CHALLENGE)
    assert detect_block("redfin", 202, headers, body, REDFIN_API) == "aws_waf"


def test_body_head_is_bounded_and_undecodable_bodies_are_empty() -> None:
    bomb = gzip.compress(b"\0" * 5_000_000)
    assert len(body_head(bomb, "gzip")) == SCAN_BYTES
    assert body_head(b"not gzip at all", "gzip") == b""
    assert body_head(b"plain", "identity") == b"plain"
    assert body_head(b"plain", "compress") == b"plain"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://ratelimited.redfin.com/", True),
        ("https://ratelimited.redfin.com", True),
        ("http://127.0.0.1:8001/ratelimited/", True),
        ("http://127.0.0.1:8001/ratelimited", True),
        ("https://www.redfin.com/ratelimited-homes/", False),
        ("https://www.redfin.com/", False),
    ],
)
def test_is_ratelimit_url(url: str, expected: bool) -> None:
    assert is_ratelimit_url(url) is expected


NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (b"0", 0.0),
        (" 30 ", 30.0),
        ("Sun, 01 Jun 2025 12:05:00 GMT", 300.0),
        (format_datetime(datetime(2025, 6, 1, 13, 0, tzinfo=UTC), usegmt=True), 3600.0),
        ("Sun, 01 Jun 2025 12:05:00 -0000", 300.0),
        ("Sun, 01 Jun 2025 11:00:00 GMT", 0.0),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | bytes | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected
