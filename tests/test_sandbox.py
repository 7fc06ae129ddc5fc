"""The replica serves what sources.md describes, parsed the way the real pages are.

One sandbox subprocess for the module; runtime faults are set through the
control endpoint and cleared after each test. Plain urllib + parsel only,
except the browser test (real Chromium through Playwright).
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from parsel import Selector
from PIL import Image

from phx_scraper.browser import CHROMIUM_ARGS
from phx_scraper.sandbox import challenge, dataset, paths
from phx_scraper.sandbox.model import PHOTO_FAULTS
from phx_scraper.sandbox.process import Sandbox

BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/142.0 Safari/537.36"
)
ABOVE = "/stingray/api/home/details/aboveTheFold"
GIS = "/arcgis/rest/services/MaricopaDynamicQueryService/MapServer/3"
AERIALS = "/arcgis/rest/services/Aerials/MapServer"
CHROMIUM = Path("/usr/bin/chromium")


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def fetch(url: str, headers: dict[str, str] | None = None, ua: str = BROWSER_UA) -> Resp:
    request = urllib.request.Request(url, headers={"User-Agent": ua, **(headers or {})})
    try:
        with _OPENER.open(request, timeout=20) as response:
            return Resp(
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                response.read(),
            )
    except urllib.error.HTTPError as exc:
        return Resp(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())


def image_of(body: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(body))
    image.load()
    return image


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as running:
        yield running


@pytest.fixture(autouse=True)
def _no_faults_left(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sandbox" in request.fixturenames:
        sb = request.getfixturevalue("sandbox")
        if sb.running:
            sb.clear_faults()


# --- dataset -----------------------------------------------------------------
def test_csv_lists_every_property_address() -> None:
    with dataset.CSV_PATH.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["address"] for r in rows] == [p.address for p in dataset.PROPERTIES]


def test_dataset_covers_the_hard_cases() -> None:
    props = dataset.PROPERTIES
    assert len(props) >= 25
    assert len({p.city for p in props}) >= 8
    assert dataset.property_by_key("sunrise").address == "4560 E Sunrise Dr, Phoenix, AZ 85044"
    assert dataset.expected_source_id("zillow", "sunrise") == "8142157"
    statuses = {(s, dataset.expected_status(s, p.key)) for p in props for s in dataset.SOURCES}
    for source in dataset.SOURCES:
        assert (source, "no_match") in statuses
    assert {
        ("zillow", "no_photos"),
        ("redfin", "no_photos"),
        ("phoenix_mls", "no_photos"),
    } <= statuses
    assert all(dataset.expected_status(s, "flagstaff") == "no_match" for s in dataset.SOURCES)
    faults = {
        e.fault for p in props for s in dataset.SOURCES for e in dataset.expected_photos(s, p.key)
    }
    assert {"truncated", "html_as_jpeg", "empty", "bomb", "too_small"} <= faults
    assert max(len(dataset.expected_photos("zillow", p.key)) for p in props) >= 60
    assert any(len(p.mls) > 1 for p in props)  # relisted
    assert {p.unit_csv for p in props if p.unit} == {"Unit", "#", "Apt"}
    shared = dataset.shared_pictures()
    assert any(s.identical for s in shared)
    assert any(not s.identical and len(s.photos) >= 3 for s in shared)


# --- Zillow --------------------------------------------------------------------
def zillow_cache(page: str) -> dict[str, Any]:
    """The gdpClientCache / apiCache, from any of the three layouts (a JSON string)."""
    sel = Selector(page)
    raw = sel.css("script#__NEXT_DATA__::text").get()
    if raw:
        props = json.loads(raw)["props"]["pageProps"]
        cache = props.get("componentProps", {}).get("gdpClientCache") or props.get("gdpClientCache")
    else:
        cache = json.loads(sel.css("script#hdpApolloPreloadedData::text").get() or "{}")["apiCache"]
    assert isinstance(cache, str), "the cache is double-encoded"
    parsed: dict[str, Any] = json.loads(cache)
    return parsed


def zillow_chosen(cache: dict[str, Any], zpid: int) -> list[str]:
    """Per gallery position: uncropped_scaled_within_1536_1152, else the widest JPEG."""
    homes = [
        v["property"]
        for v in cache.values()
        if isinstance(v, dict)
        and isinstance(v.get("property"), dict)
        and v["property"].get("zpid") == zpid
    ]
    widths: dict[int, dict[str, int]] = {}
    for home in homes:
        for name in (
            "photos",
            "responsivePhotos",
            "responsivePhotosOriginalRatio",
            "originalPhotos",
        ):
            for i, photo in enumerate(home.get(name) or []):
                for src in photo["mixedSources"]["jpeg"]:
                    widths.setdefault(i, {})[src["url"]] = src["width"]
    chosen = []
    for i in sorted(widths):
        urls = widths[i]
        best = [u for u in urls if "-uncropped_scaled_within_1536_1152." in u]
        chosen.append(best[0] if best else max(urls, key=urls.__getitem__))
    return [urlsplit(u).path for u in chosen]


def test_zillow_autocomplete(sandbox: Sandbox) -> None:
    base = sandbox.settings()["PHX_ZILLOW_AUTOCOMPLETE_URL"]

    def ask(q: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = fetch(f"{base}?q={quote(q)}&resultCount=6").json()["results"]
        return rows

    rows = ask("4560 E Sunrise Dr, Phoenix, AZ 85044")
    assert rows[0]["resultType"] == "Address" and rows[0]["metaData"]["zpid"] == 8142157
    assert all("zpid" not in r["metaData"] for r in rows if r["resultType"] == "Region")
    assert ask(dataset.property_by_key("lamar").address) == []  # fall back to _rb
    assert {r["resultType"] for r in ask("100 N Humphreys St, Flagstaff, AZ 86001")} == {"Region"}
    units = ask("455 N 3rd St #221, Phoenix, AZ 85004")
    assert [r["metaData"].get("unitNumber") for r in units if r["resultType"] == "Address"] == [
        "221",
        None,
    ]


def test_zillow_rb_route(sandbox: Sandbox) -> None:
    base = sandbox.urls["zillow"]
    one = fetch(f"{base}/homes/4560-E-Sunrise-Dr-Phoenix-AZ-85044_rb/")
    assert one.status == 200 and "| MLS #6937912 | Zillow</title>" in one.text
    assert zillow_cache(one.text)
    several = Selector(fetch(f"{base}/homes/1420-W-Broadway-Rd_rb/").text)
    assert len(several.css("article[data-test=property-card]")) == 2
    none = fetch(f"{base}/homes/100-N-Humphreys-St-Flagstaff-AZ-86001_rb/")
    assert none.status == 200 and "No matching results" in none.text


def test_zillow_detail_pages_yield_expected_photos(sandbox: Sandbox) -> None:
    base = sandbox.urls["zillow"]
    layouts = set()
    for prop in dataset.PROPERTIES:
        if prop.zillow is None:
            continue
        layouts.add(prop.zillow.layout)
        short = fetch(f"{base}/homedetails/{prop.zillow.zpid}_zpid/")
        assert short.status == 301
        page = fetch(short.headers["location"])
        assert page.status == 200
        assert Selector(page.text).css("title::text").get("").endswith("| Zillow")
        expected = [e.path for e in dataset.expected_photos("zillow", prop.key)]
        assert zillow_chosen(zillow_cache(page.text), prop.zillow.zpid) == expected, prop.key
        assert "_pxAppId" in page.text and "px-captcha" not in page.text
    assert layouts == {"component", "page", "apollo"}


def test_zillow_page_carries_contamination(sandbox: Sandbox) -> None:
    prop = dataset.property_by_key("sunrise")
    assert prop.zillow is not None
    page = fetch(f"{sandbox.urls['zillow']}/homedetails/any-slug/{prop.zillow.zpid}_zpid/").text
    cache = zillow_cache(page)
    blob = json.dumps(cache)
    for marker in ("nearbyHomes", "miniCardPhotos", "comps", "similarHomes", "recommendedHomes"):
        assert marker in blob
    for marker in ("otherListings", "searchResults", "/h_n/", "/maps/api/staticmap"):
        assert marker in blob
    zpids = {v["property"]["zpid"] for v in cache.values() if "property" in v}
    assert len(zpids) == 2  # one entry is another home: must be ignored
    own = {e.photo_id for e in dataset.expected_photos("zillow", "sunrise")}
    on_cdn = set(re.findall(r"/fp/([0-9a-f]{32})-", blob + page))
    assert own < on_cdn and len(on_cdn - own) > 10
    badge = Selector(page).css("img.mls-logo::attr(src)").get()
    assert badge and image_of(fetch(badge).body).size == (91, 31)
    headshot = Selector(page).css("[data-testid^=attribution] img::attr(src)").get()
    assert headshot and "/h_n/" in headshot and fetch(headshot).status == 200


def test_zillow_cdn_serves_listed_variants_only(sandbox: Sandbox) -> None:
    base = sandbox.urls["zillow"]
    for photo in dataset.expected_photos("zillow", "turney"):
        body = fetch(base + photo.path).body
        image = image_of(body)
        if "uncropped" in photo.path:
            assert max(image.size) == 1536 or image.size[1] == 1152
        else:
            assert image.size == (1536, 1024)
            assert (
                fetch(
                    base + photo.path.replace("cc_ft_1536", "uncropped_scaled_within_1536_1152")
                ).status
                == 404
            )
    first = dataset.expected_photos("zillow", "sunrise")[0]
    assert 150_000 < len(fetch(base + first.path).body) < 350_000
    assert (
        fetch(base + first.path.replace("uncropped_scaled_within_1536_1152", "cc_ft_2048")).status
        == 404
    )
    webp = fetch(base + first.path.replace(".jpg", ".webp"))
    assert webp.headers["content-type"] == "image/webp" and image_of(webp.body).format == "WEBP"


def test_zillow_block_pages(sandbox: Sandbox) -> None:
    base = sandbox.urls["zillow"]
    detail = f"{base}/homedetails/x/8142157_zpid/"
    sandbox.set_fault("zillow", "block:1")
    blocked = fetch(detail)
    assert blocked.status == 403
    sel = Selector(blocked.text)
    assert sel.css("title::text").get() == "Access to this page has been denied"
    assert "Press & Hold" in sel.css("#px-captcha").xpath("string()").get("")
    assert re.search(r"captcha\.px-cdn\.net/PX\w+/captcha\.js", blocked.text)
    assert fetch(detail).status == 200  # only the first request
    sandbox.set_fault("zillow", "block200")
    soft = fetch(detail)
    assert soft.status == 200 and "px-captcha" in soft.text
    auto = fetch(f"{sandbox.settings()['PHX_ZILLOW_AUTOCOMPLETE_URL']}?q=4560")
    with pytest.raises(json.JSONDecodeError):
        auto.json()
    sandbox.set_fault("zillow", "require_browser")
    challenged = fetch(detail)
    assert challenged.status == 403 and "press & hold" in challenged.text.lower()
    assert "document.cookie" in challenged.text
    assert fetch(sandbox.settings()["PHX_ZILLOW_AUTOCOMPLETE_URL"] + "?q=4560").status == 200


# --- Redfin ----------------------------------------------------------------------
def stingray(resp: Resp) -> dict[str, Any]:
    assert resp.body.startswith(b"{}&&"), resp.body[:40]
    body: dict[str, Any] = json.loads(resp.body[4:])
    return body


def redfin_embedded_above(page: str) -> dict[str, Any]:
    m = re.search(r"root\.__reactServerState\.InitialContext = (\{.*?\});\n", page, re.S)
    assert m
    res = json.loads(m[1])["ReactServerAgent.cache"]["dataCache"][ABOVE]["res"]
    if "text" in res:
        assert res["text"].startswith("{}&&")
        body: dict[str, Any] = json.loads(res["text"][4:])
        return body
    body = res["body"]
    return body


def test_redfin_autocomplete(sandbox: Sandbox) -> None:
    base = sandbox.urls["redfin"]

    def ask(location: str) -> dict[str, Any]:
        query = f"location={quote(location)}&start=0&count=10&v=2"
        url = f"{base}/stingray/do/location-autocomplete?{query}"
        return stingray(fetch(url))

    sunrise = ask("4560 E Sunrise Dr, Phoenix, AZ 85044")
    assert sunrise["errorMessage"] == "Success" and sunrise["resultCode"] == 0
    row = sunrise["payload"]["exactMatch"]
    assert row["name"] == "4560 E Sunrise Dr" and row["subName"] == "Phoenix, AZ 85044"
    assert row["url"].endswith(f"/home/{dataset.expected_source_id('redfin', 'sunrise')}")
    assert [s["name"] for s in sunrise["payload"]["sections"]] == ["Addresses", "Places"]
    glenrosa = ask(dataset.property_by_key("glenrosa").address)["payload"]
    assert "exactMatch" not in glenrosa and "id" not in glenrosa["sections"][0]["rows"][0]
    unit = ask("455 N 3rd St #221")["payload"]["sections"][0]["rows"]
    assert unit[0]["url"].split("/home/")[0].endswith("/unit-221") and unit[0]["name"].endswith(
        "#221"
    )
    assert ask("ab")["resultCode"] != 0


def redfin_photos(base: str, prop: dataset.Property) -> list[tuple[str, str, int, str | None]]:
    """The spider's route: autocomplete, initialInfo, aboveTheFold (else the page), belowTheFold."""
    location = quote(prop.address)
    auto = stingray(
        fetch(f"{base}/stingray/do/location-autocomplete?location={location}&start=0&count=10&v=2")
    )
    rows = [r for s in auto["payload"]["sections"] if s["name"] == "Addresses" for r in s["rows"]]
    path = rows[0]["url"]
    info = stingray(fetch(f"{base}/stingray/api/home/details/initialInfo?path={quote(path)}"))[
        "payload"
    ]
    pid, listing = info["propertyId"], info.get("listingId")
    query = f"propertyId={pid}&listingId={listing or ''}&accessLevel=1"
    above_resp = fetch(f"{base}{ABOVE}?{query}")
    above: dict[str, Any] = {"resultCode": above_resp.status}
    if above_resp.status == 200:
        above = stingray(above_resp)
    if above["resultCode"] != 0:
        above = redfin_embedded_above(fetch(base + path).text)
    found = []
    current = above["payload"].get("mediaBrowserInfo", {}).get("photos", [])
    for i, photo in enumerate(current):
        found.append(
            (photo["photoUrls"]["fullScreenPhotoUrl"], photo["photoText"], i, str(listing))
        )
    below = stingray(fetch(f"{base}/stingray/api/home/details/belowTheFold?{query}"))["payload"]
    for entry in below["propertyHistoryInfo"]["mediaBrowserInfoBySourceId"].values():
        for i, photo in enumerate(entry["photos"]):
            found.append(
                (
                    photo["photoUrls"]["fullScreenPhotoUrl"],
                    photo["photoText"],
                    i,
                    str(entry["listingId"]),
                )
            )
    return [(urlsplit(u).path, c, i, lid) for u, c, i, lid in found]


def test_redfin_photos_match_expected(sandbox: Sandbox) -> None:
    base = sandbox.urls["redfin"]
    modes = set()
    for prop in dataset.PROPERTIES:
        if prop.redfin is None:
            continue
        modes.add((prop.redfin.api, prop.redfin.embedded))
        expected = [
            (e.path, e.caption, e.position, e.listing_id)
            for e in dataset.expected_photos("redfin", prop.key)
        ]
        assert redfin_photos(base, prop) == expected, prop.key
    assert {("refused_403", "text"), ("refused_code", "body")} <= modes


def test_redfin_page_embeds_both_forms_and_og_image(sandbox: Sandbox) -> None:
    base = sandbox.urls["redfin"]
    for key in ("caminito", "third_st"):
        prop = dataset.property_by_key(key)
        page = fetch(base + prop.redfin_url).text
        assert redfin_embedded_above(page)["payload"]["mediaBrowserInfo"]["photos"]
        og = Selector(page).css('meta[property="og:image"]::attr(content)').get()
        assert og and urlsplit(og).path == dataset.expected_photos("redfin", key)[0].path
    assert (
        '"res":{"text":"{}&&' in fetch(base + dataset.property_by_key("caminito").redfin_url).text
    )
    assert '"res":{"body":{' in fetch(base + dataset.property_by_key("third_st").redfin_url).text


def test_redfin_blocks(sandbox: Sandbox) -> None:
    base = sandbox.urls["redfin"]
    url = f"{base}/stingray/do/location-autocomplete?location=4560%20E%20Sunrise&v=2"
    assert fetch(url, ua="python-urllib/3.11").status == 403
    assert fetch(url, ua="Scrapy/2.19 (+https://scrapy.org)").status == 403
    sandbox.set_fault("redfin", "waf:1")
    waf = fetch(url)
    assert waf.status == 202 and len(waf.body) < 5000
    assert all(m in waf.text for m in ("awsWafCookieDomainList", "gokuProps", "challenge.js"))
    sandbox.set_fault("redfin", "ratelimit:1:7")
    moved = fetch(url)
    assert moved.status == 302 and urlsplit(moved.headers["location"]).path == "/ratelimited/"
    robot = fetch(moved.headers["location"])
    assert robot.status == 429 and robot.headers["retry-after"] == "7"
    assert "Are You a Robot?" in robot.text
    assert fetch(url).status == 200


def test_redfin_cdn_never_invents_sizes(sandbox: Sandbox) -> None:
    base = sandbox.urls["redfin"]
    photo = dataset.expected_photos("redfin", "ivanhoe")[1]
    assert re.fullmatch(r"/photo/86/bigphoto/012/6789012_1_0\.jpg", photo.path)
    assert image_of(fetch(base + photo.path).body).size == (1536, 1152)
    assert fetch(base + photo.path.replace("_1_0.jpg", "_1_1024.jpg")).status == 404
    assert fetch(base + photo.path.replace("_1_0.jpg", "_1_1.jpg")).status == 404
    mid = photo.path.replace("bigphoto", "mbphotov3").replace("/6789012", "/genMid.6789012")
    assert image_of(fetch(base + mid).body).size == (1080, 771)
    first = dataset.expected_photos("redfin", "ivanhoe")[0].path
    assert first.endswith("/6789012_0.jpg") and fetch(base + first).status == 200


def test_shared_pictures_bytes(sandbox: Sandbox) -> None:
    identical = [s for s in dataset.shared_pictures() if s.identical][:3]
    assert identical
    for shared in identical:
        digests = set()
        for source, photo_id in shared.identical:
            photo = next(
                e for e in dataset.expected_photos(source, shared.key) if e.photo_id == photo_id
            )
            digests.add(hashlib.md5(fetch(sandbox.urls[source] + photo.path).body).hexdigest())
        assert len(digests) == 1, shared
    reencoded = next(s for s in dataset.shared_pictures() if not s.identical and len(s.photos) == 3)
    sizes = set()
    for source, photo_id in reencoded.photos:
        photo = next(
            e for e in dataset.expected_photos(source, reencoded.key) if e.photo_id == photo_id
        )
        sizes.add((source, image_of(fetch(sandbox.urls[source] + photo.path).body).size))
    assert len({size for _, size in sizes}) >= 2  # MLS original vs 1536 copies


# --- Maricopa -------------------------------------------------------------------------
def test_maricopa_token_and_search_layouts(sandbox: Sandbox) -> None:
    base = sandbox.urls["maricopa"]
    auth = {"AUTHORIZATION": sandbox.token}
    url = f"{base}/search/property/?q={quote('4560 E Sunrise Dr')}"
    assert fetch(url).status == 401
    assert fetch(url, {"AUTHORIZATION": f"Bearer {sandbox.token}"}).status == 401
    real = fetch(url, auth).json()
    assert (
        real["TotalPropertyResults"] == 1 and real["RealPropertyResults"][0]["APN"] == "301-62-418"
    )
    total = fetch(f"{base}/search/property/?q={quote('5219 W El Caminito Dr')}", auth).json()
    assert total["TOTAL"] == 1 and total["Results"][0]["APN"] == "14821117"
    building = f"{base}/search/property/?q={quote('455 N 3rd St')}"
    page1, page2 = fetch(building, auth).json(), fetch(building + "&page=2", auth).json()
    assert page1["TotalPropertyResults"] == 41 and len(page1["RealPropertyResults"]) == 25
    assert "111-43-128" in {r["APN"] for r in page2["RealPropertyResults"]}
    log = sandbox.request_log
    assert log is not None and sandbox.token not in log.read_text()
    assert any(e["has_authorization"] for e in sandbox.requests("maricopa"))


def test_maricopa_parcels_match_expected_facts(sandbox: Sandbox) -> None:
    base = sandbox.urls["maricopa"]
    auth = {"AUTHORIZATION": sandbox.token}
    for prop in dataset.PROPERTIES:
        facts = dataset.expected_facts("maricopa", prop.key)
        if not facts:
            continue
        apn = str(facts["apn"])
        parcel = fetch(f"{base}/parcel/{apn.replace('-', '')}", auth).json()
        res = fetch(f"{base}/parcel/{apn}/residential-details", auth).json()
        vals = fetch(f"{base}/parcel/{apn}/valuations", auth).json()
        latest = max(vals, key=lambda v: int(v["TaxYear"]))
        got = {
            "apn": parcel["APN"],
            "lot_size": fetch(f"{base}/parcel/{apn}/propertyinfo", auth).json()["LotSize"],
            "livable_space": res["LivableSpace"],
            "year_built": res["ConstructionYear"],
            "pool": res["Pool"],
            "garages": res["NumberOfGarages"],
            "valuation_year": int(latest["TaxYear"]),
            "full_cash_value": int(latest["FullCashValue"]),
            "map_ids": fetch(f"{base}/mapid/parcel/{apn}", auth).json(),
        }
        assert got == facts, prop.key
        assert parcel["ResidentialPropertyData"] == res
    pdf = fetch(f"{base}/getmapid/301-62/")
    assert pdf.headers["content-type"] == "application/pdf" and pdf.body.startswith(b"%PDF-")


def test_maricopa_arcgis_query_and_export(sandbox: Sandbox) -> None:
    gis = sandbox.settings()["PHX_MARICOPA_GIS_URL"]
    where = quote("PHYSICAL_ADDRESS LIKE '4560 e sunrise%'")
    fields = "APN,PHYSICAL_ADDRESS,PHYSICAL_CITY,PHYSICAL_ZIP"
    body = fetch(f"{gis}/query?where={where}&outFields={fields}&returnGeometry=true&f=json").json()
    assert body["spatialReference"] == {"wkid": 102100, "latestWkid": 3857}
    (feature,) = body["features"]
    assert (
        feature["attributes"]["APN"] == "30162418"
        and feature["attributes"]["PHYSICAL_CITY"] == "PHOENIX"
    )
    ring = feature["geometry"]["rings"][0]
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    building = quote("PHYSICAL_ADDRESS LIKE '455 N 3RD ST%'")
    units = fetch(f"{gis}/query?where={building}&outFields=APN&f=json")
    assert len(units.json()["features"]) == 41
    assert "error" in fetch(f"{gis}/query?where={quote('NOPE = 1')}&f=json").json()
    aerial = sandbox.settings()["PHX_MARICOPA_AERIAL_URL"] + "/export"
    bbox = f"{min(xs) - 20},{min(ys) - 20},{max(xs) + 20},{max(ys) + 20}"
    image = fetch(f"{aerial}?bbox={bbox}&bboxSR=102100&size=800,600&format=jpg&f=image")
    assert image.headers["content-type"] == "image/jpeg" and image_of(image.body).size == (800, 600)
    assert (
        fetch(f"{aerial}?bbox={bbox}&bboxSR=102100&size=800,600&format=jpg&f=image").body
        == image.body
    )
    bad = fetch(f"{aerial}?bbox=1,2,3&size=800,600&f=image").json()
    assert bad["error"]["code"] == 400


# --- Phoenix MLS ------------------------------------------------------------------------
def test_mls_waf_blocks_plain_clients_but_not_cdn(sandbox: Sandbox) -> None:
    base = sandbox.urls["phoenix_mls"]
    prop = dataset.property_by_key("sunrise")
    for path in (
        "/simple-search/",
        prop.mls_path("6937912"),
        "/wp-admin/admin-ajax.php?action=fmc_search_suggest&q=4560",
    ):
        blocked = fetch(base + path)
        assert blocked.status == 403 and "Website Firewall" in blocked.text
    photo = dataset.expected_photos("phoenix_mls", "sunrise")[0]
    assert image_of(fetch(base + photo.path).body).size == (1600, 1200)
    kerry = dataset.expected_photos("phoenix_mls", "kerry")[0]
    original = image_of(fetch(base + kerry.path).body)
    assert original.getexif().get(0x0112) == 6 and original.size == (2000, 3000)  # stored sideways
    resized = image_of(fetch(base + paths.mls_resize_path(kerry.photo_id, 800, 600)).body)
    assert resized.size == (800, 533)


def test_mls_detail_page_with_the_cookie_a_browser_gets(sandbox: Sandbox) -> None:
    base = sandbox.urls["phoenix_mls"]
    nonce = "0123abcd"
    cookie = {"Cookie": f"fmc_waf={nonce}.{challenge._hash(nonce)}"}
    prop = dataset.property_by_key("ivanhoe")
    suggest = fetch(
        f"{base}/wp-admin/admin-ajax.php?action=fmc_search_suggest&q={quote(prop.address)}", cookie
    )
    labels = [r["label"] for r in suggest.json()["results"]]
    assert labels == [
        "1867 W IVANHOE Street, Chandler, AZ 85224 / 6512345 (MLS #)",
        "1867 W IVANHOE Street, Chandler, AZ 85224 / 6789012 (MLS #)",
    ]
    closed = fetch(base + prop.mls_path("6512345"), cookie)
    assert "0 matches found" in closed.text
    page = Selector(fetch(base + prop.mls_path("6789012"), cookie).text)
    facts = dict(
        (
            li.css(".flexmls_connect__field_label::text").get("").rstrip(":"),
            li.css(".flexmls_connect__field_value::text").get(),
        )
        for li in page.css(".flexmls_connect__ld_property_detail li")
    )
    expected = dataset.expected_facts("phoenix_mls", "ivanhoe")
    assert facts["Approx SQFT"] == f"{expected['approx_sqft']:,}"
    assert facts["Association Fee Incl"] == expected["association_fee_incl"]
    assert len(page.css("#fmc-photos img")) == 7 and page.css("#fmc-open-photos")
    empty = fetch(
        f"{base}/wp-admin/admin-ajax.php?action=fmc_search_suggest&q={quote('100 N Humphreys St')}",
        cookie,
    )
    assert empty.json()["results"] == []


# --- per-photo faults, request log, generic faults ---------------------------------------
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_dataset_photo_faults_are_served(sandbox: Sandbox) -> None:
    seen = set()
    for prop in dataset.PROPERTIES:
        for source in ("zillow", "redfin", "phoenix_mls"):
            for photo in dataset.expected_photos(source, prop.key):
                if photo.fault is None:
                    continue
                seen.add(photo.fault)
                resp = fetch(sandbox.urls[source] + photo.path)
                assert resp.status == 200
                if photo.fault == "empty":
                    assert resp.body == b""
                elif photo.fault == "html_as_jpeg":
                    assert resp.headers["content-type"] == "image/jpeg" and resp.body.startswith(
                        b"<!DOCTYPE html"
                    )
                elif photo.fault == "truncated":
                    with pytest.raises(OSError):
                        image_of(resp.body)
                elif photo.fault == "bomb":
                    width, height = Image.open(io.BytesIO(resp.body)).size
                    assert width * height > 90_000_000 and len(resp.body) < 50_000
                elif photo.fault == "too_small":
                    assert max(image_of(resp.body).size) < 200
    assert seen == set(PHOTO_FAULTS)


def test_request_log_records_requests(sandbox: Sandbox) -> None:
    sandbox.clear_requests()
    photo = dataset.expected_photos("zillow", "monterey")[0]
    fetch(sandbox.urls["zillow"] + photo.path)
    fetch(sandbox.urls["zillow"] + photo.path)
    sandbox.set_fault("zillow", "slow:0")  # control requests are never logged
    entries = sandbox.wait_for_requests(2, "zillow")
    assert [e["path"] for e in entries] == [photo.path, photo.path]
    entry = entries[0]
    assert set(entry) == {
        "t",
        "source",
        "method",
        "path",
        "user_agent",
        "has_cookie",
        "has_authorization",
        "status",
        "bytes",
        "fault",
    }
    assert entry["status"] == 200 and entry["bytes"] > 100_000 and entry["fault"] is None
    assert entry["user_agent"] == BROWSER_UA and entry["has_cookie"] is False


def test_generic_faults(sandbox: Sandbox) -> None:
    base = sandbox.urls["redfin"]
    url = f"{base}/stingray/api/home/details/initialInfo?path=/x/home/1"
    photo = base + dataset.expected_photos("redfin", "monterey")[0].path
    sandbox.set_faults("redfin", ["503:2", "cdn_429:1:3"])
    assert [fetch(url).status for _ in range(3)] == [503, 503, 200]
    limited = fetch(photo)
    assert limited.status == 429 and limited.headers["retry-after"] == "3"
    assert fetch(photo).status == 200
    sandbox.set_fault("redfin", "slow:0.4")
    started = time.monotonic()
    assert fetch(url).status == 200 and time.monotonic() - started >= 0.35
    sandbox.set_fault("redfin", "drop:1")
    with pytest.raises((OSError, http.client.HTTPException)):
        fetch(url)
    assert fetch(url).status == 200
    sandbox.set_fault("redfin", "burst:3:10:60")
    statuses = [fetch(url).status for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [302, 302]
    faults = [e["fault"] for e in sandbox.wait_for_requests(1, "redfin")]
    assert {"503", "cdn_429", "slow", "drop", "burst"} <= set(faults)
    with pytest.raises(Exception, match="unknown mode"):
        sandbox.set_fault("redfin", "explode")


def test_cli_rejects_bad_fault_spec() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "phx_scraper.sandbox", "--fault", "redfin:block200"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 2 and "zillow" in proc.stderr and proc.stdout == ""


# --- a real browser -----------------------------------------------------------------------
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_browser_mls_search_modal_and_zillow_challenge(sandbox: Sandbox) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    args = CHROMIUM_ARGS

    def drive() -> None:
        with playwright.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
            try:
                page = browser.new_page()
                first = page.goto(sandbox.urls["phoenix_mls"] + "/simple-search/")
                assert first is not None and first.status == 403  # the WAF challenge, passed by JS
                page.fill("#fmc-search-input", "1214 E Elgin St, Gilbert, AZ 85295")
                page.wait_for_selector("#fmc-suggest[role=tree] div[role=treeitem]")
                items = page.locator("div[role=tree] div[role=treeitem]").all_inner_texts()
                assert len(items) == 3 and all(
                    i.startswith("1214 E ELGIN Street, Gilbert") for i in items
                )
                page.locator("div[role=treeitem]", has_text="6912034").click()
                page.wait_for_selector("#fmc-open-photos")
                assert len(page.locator("#fmc-photos img").all()) == 7
                page.click("#fmc-open-photos")
                page.wait_for_selector('#fmc-photo-modal[data-loaded="true"]')
                srcs = page.eval_on_selector_all(
                    "#fmc-photo-modal img.fmc-gallery-photo", "els => els.map(e => e.src)"
                )
                ids = [re.sub(r"-[tml]\.jpg$", "", s.rsplit("/", 1)[1]) for s in srcs]
                assert ids == [e.photo_id for e in dataset.expected_photos("phoenix_mls", "elgin")]

                sandbox.set_fault("zillow", "require_browser")
                zillow = browser.new_page()
                blocked = zillow.goto(sandbox.urls["zillow"] + "/homedetails/x/8142157_zpid/")
                assert blocked is not None and blocked.status == 403
                zillow.wait_for_selector("script#__NEXT_DATA__", state="attached")
                assert "px-captcha" not in zillow.content()
            finally:
                browser.close()

    # Playwright's sync API refuses to run inside pytest-twisted's asyncio loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(drive).result(timeout=120)
