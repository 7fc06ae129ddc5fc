"""Replica of Redfin (www.redfin.com stingray API, HTML pages, ssl.cdn-redfin.com).

Endpoints (sources.md §2); every stingray body starts with ``{}&&``:

- ``GET /stingray/do/location-autocomplete?location=..&start=0&count=10&v=2``:
  ``payload.sections[]`` ("Addresses", "Places") and, sometimes, ``exactMatch``;
  rows may lack ``id``; a query under 3 characters gets ``resultCode`` 101.
- ``GET /stingray/api/home/details/initialInfo?path=<url path>``:
  ``payload.propertyId`` and ``payload.listingId`` (absent when off market).
- ``GET /stingray/api/home/details/aboveTheFold?propertyId=&listingId=&accessLevel=1``:
  ``payload.mediaBrowserInfo.photos[]`` (absent when off market). Refused for a
  few homes: HTTP 403, or 200 with ``resultCode`` 2 -- read the HTML page then.
- ``GET /stingray/api/home/details/belowTheFold?...``:
  ``payload.propertyHistoryInfo.mediaBrowserInfoBySourceId.<MLS#>`` = earlier
  listings (``listingId``, ``photos[]``).
- ``GET /<ST>/<City>/<Street>-<ZIP>[/unit-<U>]/home/<propertyId>``: HTML with
  ``root.__reactServerState.InitialContext = {...};`` holding the aboveTheFold
  body under ``["ReactServerAgent.cache"]["dataCache"][<api path>]["res"]`` as
  ``text`` or ``body``, and ``meta[property="og:image"]``.
- CDN ``/photo/86/<folder>/<last 3 of MLS#>/<prefix><file>``: only URLs the API
  gave exist (``..._1024.jpg`` is a 404).

Page and API requests whose User-Agent lacks "Mozilla/" get 403. Blocks:
``waf`` (202 challenge), ``ratelimit`` (302 to ``/ratelimited/`` -> 429).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date, datetime
from functools import partial
from typing import Any

from twisted.internet.defer import Deferred

from phx_scraper.sandbox import addresses, dataset, images, paths, photos
from phx_scraper.sandbox.base import (
    Call,
    Context,
    Reply,
    SourceSite,
    html,
    json_reply,
    not_found,
    redirect,
)
from phx_scraper.sandbox.model import Property, RedfinListing, stable_int
from phx_scraper.sandbox.zillow import variant_bytes, variant_key

PREFIX = "{}&&"
VERSION = 576
STINGRAY_JSON = "application/json;charset=UTF-8"
ABOVE = "/stingray/api/home/details/aboveTheFold"
INITIAL = "/stingray/api/home/details/initialInfo"
_HOMES = tuple(p for p in dataset.ALL_HOMES if p.redfin)
_CITIES = sorted({p.city for p in dataset.ALL_HOMES}, key=len, reverse=True)
_PHOTO_PATH = re.compile(r"/photo/(?P<ds>\d+)/(?P<folder>[a-z0-9]+)/(?P<dir>\d{3})/(?P<file>[^/]+)")


def envelope(payload: Any, code: int = 0, message: str = "Success") -> dict[str, Any]:
    return {"version": VERSION, "errorMessage": message, "resultCode": code, "payload": payload}


def stingray(payload: Any, code: int = 0, message: str = "Success", status: int = 200) -> Reply:
    return json_reply(envelope(payload, code, message), status, PREFIX, STINGRAY_JSON)


class RedfinSite(SourceSite):
    source = "redfin"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.by_id = {p.redfin.property_id: p for p in _HOMES if p.redfin}
        self.files = _file_index()
        r = self.router
        r.add(
            r"/",
            lambda call, m: html(
                "<html><head><title>Redfin</title></head><body>Redfin</body></html>"
            ),
        )
        r.add(r"/stingray/do/location-autocomplete", self.autocomplete)
        r.add(INITIAL, self.initial_info)
        r.add(ABOVE, self.above_the_fold)
        r.add(r"/stingray/api/home/details/belowTheFold", self.below_the_fold)
        r.add(r"/[A-Z]{2}/[^/]+/[^/]+(?:/unit-[^/]+)?/home/(?P<pid>\d+)/?", self.home_page)
        r.add(r"/ratelimited/?", self.rate_limited)
        r.add(_PHOTO_PATH.pattern, self.cdn_photo)

    def is_cdn(self, path: str) -> bool:
        return path.startswith("/photo/")

    def exempt(self, path: str) -> bool:
        return path.rstrip("/") == "/ratelimited"

    def handle(self, call: Call) -> Reply | Deferred[Reply]:
        page = not self.is_cdn(call.path) and not self.exempt(call.path)
        if page and "Mozilla/" not in (call.header("user-agent") or ""):
            reply = _forbidden()
            reply.fault = "user_agent"
            return reply
        return super().handle(call)

    def block_page(self, call: Call, kind: str, retry_after: int | None = None) -> Reply:
        if kind == "waf":
            return Reply(
                202,
                _waf_page().encode(),
                "text/html; charset=UTF-8",
                {"x-amzn-waf-action": "challenge"},
            )
        if kind in ("ratelimit", "burst"):
            query = f"?retry_after={retry_after}" if retry_after is not None else ""
            return redirect(f"{call.base}/ratelimited/{query}", 302)
        return _forbidden()

    def rate_limited(self, call: Call, match: re.Match[str]) -> Reply:
        retry = call.query.get("retry_after", "60")
        return html(
            "<!DOCTYPE html><html><head><title>Are You a Robot?</title></head><body>"
            "<h1>Are You a Robot?</h1><p>We have detected unusual traffic from your network. "
            "Please try again later.</p></body></html>",
            429,
            **{"Retry-After": retry if retry.isdigit() else "60"},
        )

    # --- address -> property ---
    def autocomplete(self, call: Call, match: re.Match[str]) -> Reply:
        location = call.query.get("location", "").strip()
        if len(location) < 3:
            return stingray(None, 101, "Invalid argument: location")
        found = addresses.search(location, _HOMES)
        rows = [_row(p) for _, p in found][: _int(call.query.get("count"), 10)]
        places = [_place_row(c) for c in addresses.cities_in(location, _CITIES)]
        sections = []
        if rows:
            sections.append({"rows": rows, "name": "Addresses"})
        if places:
            sections.append({"rows": places, "name": "Places"})
        payload: dict[str, Any] = {"sections": sections}
        exact = [p for s, p in found if s == addresses.EXACT]
        if len(exact) == 1 and exact[0].redfin and exact[0].redfin.exact_match:
            payload["exactMatch"] = _row(exact[0])
        return stingray(payload)

    def initial_info(self, call: Call, match: re.Match[str]) -> Reply:
        m = re.search(r"/home/(\d+)/?$", call.query.get("path", ""))
        prop = self.by_id.get(int(m[1])) if m else None
        if prop is None or prop.redfin is None:
            return stingray(None, 1, "Not found")
        payload: dict[str, Any] = {
            "propertyId": prop.redfin.property_id,
            "pageType": 1 if prop.redfin.current else 3,
            "latLong": {"latitude": prop.lat, "longitude": prop.lng},
            "path": prop.redfin_url,
        }
        if prop.redfin.current:
            payload["listingId"] = prop.redfin.current.listing_id
        return stingray(payload)

    def _home(self, call: Call) -> Property | None:
        pid = call.query.get("propertyId", "")
        return self.by_id.get(int(pid)) if pid.isdigit() else None

    def above_the_fold(self, call: Call, match: re.Match[str]) -> Reply:
        prop = self._home(call)
        if prop is None or prop.redfin is None:
            return stingray(None, 1, "Property not found")
        if prop.redfin.api == "refused_403":
            return _forbidden()
        if prop.redfin.api == "refused_code":
            return stingray({}, 2, "Unable to load home details")
        return stingray(above_payload(call.base, prop))

    def below_the_fold(self, call: Call, match: re.Match[str]) -> Reply:
        prop = self._home(call)
        if prop is None or prop.redfin is None:
            return stingray(None, 1, "Property not found")
        return stingray(below_payload(call.base, prop))

    def home_page(self, call: Call, match: re.Match[str]) -> Reply:
        prop = self.by_id.get(int(match["pid"]))
        if prop is None:
            return not_found()
        return html(home_page(call.base, prop))

    # --- CDN ---
    def cdn_photo(self, call: Call, match: re.Match[str]) -> Reply | Deferred[Reply]:
        found = self.files.get(call.path)
        if found is None:
            return not_found()
        prop, listing, position, folder = found
        picture = listing.gallery.pictures[position]
        fault = listing.gallery.fault(position)
        if folder == "bigphoto" and prop.redfin_shares_zillow_bytes(listing, picture):
            # The listing's photos syndicated from the same upload: Zillow's bytes.
            variant = dataset.zillow_chosen_variant(prop, picture)[0]
            key = variant_key(picture, variant)
            produce: Callable[[], bytes] = partial(variant_bytes, picture, variant)
        else:
            variant_spec = paths.REDFIN_FOLDERS[folder][1] or paths.REDFIN_FULL
            spec = photos.photo_spec(
                picture,
                variant_spec.size(picture.native),
                quality=80 if folder == "bigphoto" else 72,
            )
            key = f"redfin:{picture.id}:{folder}"
            produce = partial(images.render_photo, spec)
        return photos.serve(self, key, produce, "image/jpeg", picture, fault)


def _file_index() -> dict[str, tuple[Property, RedfinListing, int, str]]:
    index = {}
    for prop in _HOMES:
        assert prop.redfin is not None
        for listing in _listings(prop):
            for position in range(len(listing.gallery)):
                for folder in paths.REDFIN_FOLDERS:
                    path = paths.redfin_photo_path(
                        listing.mls, position, listing.version(position), folder
                    )
                    index[path] = (prop, listing, position, folder)
    return index


def _listings(prop: Property) -> list[RedfinListing]:
    assert prop.redfin is not None
    return ([prop.redfin.current] if prop.redfin.current else []) + list(prop.redfin.earlier)


def _row(prop: Property) -> dict[str, Any]:
    assert prop.redfin is not None
    row: dict[str, Any] = {
        "type": "1",
        "name": prop.redfin_name,
        "subName": prop.redfin_subname,
        "url": prop.redfin_url,
        "active": prop.redfin.current is not None,
        "claimedHome": False,
        "invalidMRS": False,
        "businessMarketIds": [5],
        "countryCode": "US",
    }
    if prop.redfin.row_id:
        row = {"id": f"1_{prop.redfin.property_id}", **row}
    return row


def _place_row(city: str) -> dict[str, Any]:
    region = 14000 + stable_int(city) % 900
    return {
        "id": f"2_{region}",
        "type": "2",
        "name": city,
        "subName": f"{city}, AZ, USA",
        "url": f"/city/{region}/AZ/{city.replace(' ', '-')}",
        "active": True,
    }


def photo_rows(base: str, prop: Property, listing: RedfinListing) -> list[dict[str, Any]]:
    rows = []
    for position, picture in enumerate(listing.gallery.pictures):
        version = listing.version(position)

        def link(folder: str, position: int = position, version: int = version) -> str:
            return base + paths.redfin_photo_path(listing.mls, position, version, folder)

        width, height = prop.redfin_full_size(listing, picture)
        rows.append(
            {
                "photoId": 1_000_000_000 + stable_int(f"{listing.mls}/{position}") % 900_000_000,
                "fileName": paths.redfin_file_name(listing.mls, position, version),
                "width": width,
                "height": height,
                "dataSourceId": paths.REDFIN_DATA_SOURCE,
                "photoText": picture.caption,
                "displayLevel": 1,
                "photoType": "2",
                "photoUrls": {
                    "fullScreenPhotoUrl": link("bigphoto"),
                    "nonFullScreenPhotoUrl": link("mbphotov3"),
                    "nonFullScreenPhotoUrlCompressed": link("mbpaddedwide"),
                    "lightboxListUrl": link("islphoto"),
                },
                "thumbnailData": {"thumbnailUrl": link("bcsphoto")},
            }
        )
    return rows


def above_payload(base: str, prop: Property) -> dict[str, Any]:
    assert prop.redfin is not None
    listing = prop.redfin.current
    payload: dict[str, Any] = {
        "addressSectionInfo": {
            "streetAddress": {"assembledAddress": prop.redfin_name},
            "city": prop.city,
            "state": "AZ",
            "zip": prop.zip,
            "beds": prop.beds,
            "baths": prop.full_baths,
            "sqFt": {"displayLevel": 1, "value": prop.sqft},
            "status": {"displayValue": "Active" if listing else "Off Market"},
            "priceInfo": {"amount": prop.price if listing else None},
        },
        "mainHouseInfo": {
            "propertyAddress": prop.redfin_name,
            "listingId": listing.listing_id if listing else None,
        },
    }
    if listing is not None:
        payload["mediaBrowserInfo"] = {
            "photos": photo_rows(base, prop, listing),
            "isHomeStatusActive": True,
            "scanUrl": None,
            "altTextForImage": prop.redfin_name,
        }
        payload["mainHouseInfo"]["mlsId"] = listing.mls
    return payload


def below_payload(base: str, prop: Property) -> dict[str, Any]:
    assert prop.redfin is not None
    events = []
    for listing in _listings(prop):
        listed = datetime.combine(date.fromisoformat(listing.list_date), datetime.min.time())
        events.append(
            {
                "eventDescription": "Sold (Public Records)"
                if listing.status == "Sold"
                else "Listed",
                "source": "ARMLS",
                "sourceId": listing.mls,
                "listingId": listing.listing_id,
                "eventDate": int(listed.timestamp() * 1000),
                "price": prop.price,
            }
        )
    by_source = {
        listing.mls: {
            "listingId": listing.listing_id,
            "photos": photo_rows(base, prop, listing),
            "isHomeStatusActive": False,
        }
        for listing in prop.redfin.earlier
    }
    return {
        "publicRecordsInfo": {
            "basicInfo": {
                "beds": prop.beds,
                "baths": prop.full_baths,
                "sqFt": prop.sqft,
                "lotSqFt": prop.lot_sqft,
                "yearBuilt": prop.year_built,
            }
        },
        "propertyHistoryInfo": {
            "events": events,
            "mediaBrowserInfoBySourceId": by_source,
            "isHistoryStillGrowing": False,
        },
    }


def home_page(base: str, prop: Property) -> str:
    assert prop.redfin is not None
    listing = prop.redfin.current
    above = envelope(above_payload(base, prop))
    initial = envelope(
        {
            "propertyId": prop.redfin.property_id,
            "listingId": listing.listing_id if listing else None,
        }
    )
    if prop.redfin.embedded == "text":
        above_res: dict[str, Any] = {"text": PREFIX + _compact(above), "status": 200}
    else:
        above_res = {"body": above, "status": 200}
    context = {
        "ReactServerAgent.cache": {
            "dataCache": {
                INITIAL: {
                    "res": {"text": PREFIX + _compact(initial), "status": 200},
                    "requestId": 1,
                },
                ABOVE: {"res": above_res, "requestId": 2},
            },
            "requestQueue": [],
        },
        "serverTime": 1764000000000,
    }
    og = ""
    if listing and listing.gallery.pictures:
        first = paths.redfin_photo_path(listing.mls, 0, listing.version(0))
        og = f'<meta property="og:image" content="{base}{first}">'
    others = [o for o in dataset.neighbours(prop.key) if o.redfin and o.redfin.current]
    cards = "".join(
        f'<div class="HomeCard"><a href="{o.redfin_url}"><img class="homecard-image" '
        f'src="{base}{paths.redfin_photo_path(o.redfin.current.mls, 0, 0, "bcsphoto")}" alt=""></a>'
        f"<span>{o.redfin_name}</span></div>"
        for o in others
        if o.redfin and o.redfin.current and o.redfin.current.gallery.pictures
    )
    mls = f" | MLS# {listing.mls}" if listing else ""
    script = _compact(context).replace("</", "<\\/")
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>{prop.redfin_name}, {prop.redfin_subname}{mls} | Redfin</title>{og}
<meta property="og:title" content="{prop.redfin_name}, {prop.redfin_subname}">
</head><body><div id="content"><div class="DPRedesignTopSection">
<h1 class="full-address">{prop.redfin_name}, {prop.redfin_subname}</h1></div>
<div class="SimilarHomes"><h2>Similar homes</h2>{cards}</div></div>
<script>(function (root) {{
root.__reactServerState = root.__reactServerState || {{}};
root.__reactServerState.Config = {{"sitekey": "redfin-web", "pageType": "DP"}};
root.__reactServerState.InitialContext = {script};
}})(this);</script>
</body></html>"""


def _compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _forbidden() -> Reply:
    return html(
        "<!DOCTYPE html><html><head><title>403 Forbidden</title></head><body><h1>403 Forbidden</h1>"
        "<p>Request blocked.</p></body></html>",
        403,
    )


def _waf_page() -> str:
    return """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title></title>
<style>body{font-family:Arial,sans-serif}</style>
<script>window.awsWafCookieDomainList = [];
window.gokuProps = {"key":"AQIDAHjcYu/GjX+QlghicBgQ/7bFaQZ+m5FKCMDnO+vTbNg96AGQ6vWtGpZT",
"iv":"CgAHfSIrXgAAAWOa","context":"hJKL0mvKfRk7Qz9aUBX2"};</script>
<script>/* The real page loads this script; the replica only names it: nothing leaves loopback. */
window.awsWafChallengeScript = "https://3e3378af7cd0.5a1d8d3a.us-east-2.token.awswaf.com/3e3378af7cd0/b2f3ba94f1e5/challenge.js";</script>
</head><body><div id="challenge-container"></div>
<script>AwsWafIntegration.saveReferrer();
AwsWafIntegration.checkForceRefresh().then(function (forceRefresh) {
  var reload = function () { window.location.reload(true); };
  if (forceRefresh) { AwsWafIntegration.forceRefreshToken().then(reload); }
  else { AwsWafIntegration.getToken().then(reload); }
});</script>
<noscript><h1>JavaScript is disabled</h1>In order to continue, you need to verify that
you're not a robot by solving a CAPTCHA puzzle.</noscript>
</body></html>"""


def _int(value: str | None, default: int) -> int:
    try:
        return max(1, int(value)) if value else default
    except ValueError:
        return default
