"""Replica of Zillow (www.zillow.com, zillowstatic autocomplete, photos CDN).

Endpoints (sources.md §1), all on the one sandbox host:

- ``GET /autocomplete/v3/suggestions?q=...`` -> ``{"results": [...]}``; Address
  rows carry ``metaData.zpid``, Region rows do not; some exact addresses get
  ``results: []`` (use the ``_rb`` route then).
- ``GET /homes/<street>-<city>-<ST>-<zip>_rb/``: one match -> the home-details
  page itself; several -> a search results page; none -> "No matching results".
- ``GET /homedetails/<zpid>_zpid/`` -> 301 to ``/homedetails/<slug>/<zpid>_zpid/``
  (slug not checked) -> the page with the cache in ``__NEXT_DATA__`` or
  ``hdpApolloPreloadedData``.
- CDN: ``/fp/<32 hex>-<variant>.<jpg|webp>`` (only the variants the page lists;
  anything else 404), headshots ``/h_n/...``, ``/maps/api/staticmap``,
  ``/maps/api/streetview``; the 91x31 MLS badge is ``zillow_pages.BADGE_PATH``.

Blocks: PerimeterX page (403; ``block200`` answers 200). With the
``require_browser`` fault, HTML pages need the ``_px3`` cookie a JS challenge sets.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from twisted.internet.defer import Deferred

from phx_scraper.sandbox import addresses, challenge, dataset, images, paths, photos
from phx_scraper.sandbox import zillow_pages as pages
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
from phx_scraper.sandbox.model import Picture, Property

COOKIE = "_px3"
_HOMES = tuple(p for p in dataset.ALL_HOMES if p.zillow)
_CITIES = sorted({p.city for p in dataset.ALL_HOMES}, key=len, reverse=True)


def _photo_index() -> dict[str, tuple[Property, Picture, int]]:
    index = {}
    for prop in _HOMES:
        assert prop.zillow is not None
        for position, picture in enumerate(prop.zillow.gallery.pictures):
            index[picture.zillow_id] = (prop, picture, position)
    return index


def variant_bytes(picture: Picture, variant: str, ext: str = "jpg") -> bytes:
    """The file Zillow serves; Redfin re-serves the chosen JPEG byte for byte."""
    size = paths.ZILLOW_VARIANTS[variant].size(picture.native)
    fmt = "WEBP" if ext == "webp" else "JPEG"
    return images.render_photo(
        photos.photo_spec(picture, size, fmt=fmt, quality=85 if fmt == "JPEG" else 80)
    )


def variant_key(picture: Picture, variant: str, ext: str = "jpg") -> str:
    return f"zillow:{picture.id}:{variant}:{ext}"


class ZillowSite(SourceSite):
    source = "zillow"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.photos = _photo_index()
        self.by_zpid = {p.zillow.zpid: p for p in _HOMES if p.zillow}
        r = self.router
        r.add(
            r"/",
            lambda call, m: html(
                "<html><head><title>Zillow</title></head><body>Zillow</body></html>"
            ),
        )
        r.add(r"/autocomplete/v3/suggestions/?", self.autocomplete)
        r.add(r"/homes/(?P<slug>.+)_rb/?", self.search_redirect)
        r.add(r"/homedetails/(?P<zpid>\d+)_zpid/?", self.short_detail)
        r.add(r"/homedetails/(?P<slug>[^/]+)/(?P<zpid>\d+)_zpid/?", self.detail)
        r.add(
            r"/fp/(?P<id>[0-9a-f]{32})-(?P<variant>[a-z0-9_]+)\.(?P<ext>jpg|webp|png)",
            self.cdn_photo,
        )
        r.add(r"/h_n/(?P<name>[A-Za-z0-9_]+)\.jpg", self.headshot)
        r.add(r"/maps/api/staticmap", self.static_map)
        r.add(r"/maps/api/streetview", self.street_view)

    def is_cdn(self, path: str) -> bool:
        return path.startswith(("/fp/", "/h_n/", "/maps/"))

    def block_page(self, call: Call, kind: str, retry_after: int | None = None) -> Reply:
        return html(pages.px_page(str(uuid.uuid4())), 200 if kind == "block200" else 403)

    # --- address -> zpid ---
    def autocomplete(self, call: Call, match: re.Match[str]) -> Reply:
        query = call.query.get("q", "")
        found = addresses.search(query, _HOMES)
        if found and found[0][0] == addresses.EXACT:
            top = found[0][1]
            if top.zillow and top.zillow.autocomplete_empty:
                return json_reply({"results": []})
        limit = _int(call.query.get("resultCount"), 10)
        rows: list[dict[str, Any]] = [_address_row(p) for _, p in found][:limit]
        rows += [_region_row(city) for city in addresses.cities_in(query, _CITIES)]
        return json_reply({"results": rows[:limit]})

    def search_redirect(self, call: Call, match: re.Match[str]) -> Reply:
        gate = self._browser_gate(call)
        if gate:
            return gate
        text = match["slug"].replace("-", " ")
        found = addresses.search(text, _HOMES)
        top = [p for s, p in found if s == found[0][0]] if found else []
        cities = addresses.cities_in(text, _CITIES)
        if len(top) == 1 and found[0][0] == addresses.EXACT:
            return html(pages.detail_page(call.base, top[0]))
        return html(
            pages.search_page(call.base, [p for _, p in found], cities[0] if cities else None)
        )

    # --- home details ---
    def short_detail(self, call: Call, match: re.Match[str]) -> Reply:
        prop = self.by_zpid.get(int(match["zpid"]))
        if prop is None:
            return not_found("This home is not available")
        return redirect(call.base + pages.hdp_path(prop), 301)

    def detail(self, call: Call, match: re.Match[str]) -> Reply:
        gate = self._browser_gate(call)
        if gate:
            return gate
        prop = self.by_zpid.get(int(match["zpid"]))
        if prop is None:
            return not_found("This home is not available")
        return html(pages.detail_page(call.base, prop))

    def _browser_gate(self, call: Call) -> Reply | None:
        if not self.ctx.faults.requires_browser(self.source) or challenge.valid(
            call.cookie(COOKIE)
        ):
            return None
        script = challenge.script(COOKIE, challenge.new_nonce())
        reply = html(pages.px_page(str(uuid.uuid4()), script), 403)
        reply.fault = "require_browser"
        return reply

    # --- CDN ---
    def cdn_photo(self, call: Call, match: re.Match[str]) -> Reply | Deferred[Reply]:
        photo_id, variant, ext = match["id"], match["variant"], match["ext"]
        if photo_id == pages.BADGE_ID:
            return self.image("badge", images.badge).addCallback(
                lambda data: Reply(200, data, "image/png")
            )
        found = self.photos.get(photo_id)
        if found is None or variant not in paths.ZILLOW_VARIANTS or ext == "png":
            return not_found()
        prop, picture, position = found
        assert prop.zillow is not None
        if variant == paths.ZILLOW_BEST and position in prop.zillow.lacks_uncropped:
            return not_found()
        content_type = "image/webp" if ext == "webp" else "image/jpeg"
        return photos.serve(
            self,
            variant_key(picture, variant, ext),
            lambda: variant_bytes(picture, variant, ext),
            content_type,
            picture,
            prop.zillow.gallery.fault(position),
        )

    def headshot(self, call: Call, match: re.Match[str]) -> Deferred[Reply]:
        seed = dataset.stable_int(match["name"])
        return self.image(f"headshot:{seed}", lambda: images.headshot(seed)).addCallback(
            lambda data: Reply(200, data, "image/jpeg")
        )

    def static_map(self, call: Call, match: re.Match[str]) -> Deferred[Reply]:
        width, height = _size(call.query.get("size", ""), (640, 400))
        seed = dataset.stable_int(call.query.get("center", ""))
        return self.image(
            f"map:{seed}:{width}x{height}", lambda: images.static_map(width, height, seed)
        ).addCallback(lambda data: Reply(200, data, "image/png"))

    def street_view(self, call: Call, match: re.Match[str]) -> Deferred[Reply]:
        width, height = _size(call.query.get("size", ""), (600, 400))
        seed = dataset.stable_int(call.query.get("location", ""))
        spec = images.PhotoSpec(seed, "exterior", (width, height), (width, height), quality=80)
        return self.image(
            f"streetview:{seed}:{width}x{height}", lambda: images.render_photo(spec)
        ).addCallback(lambda data: Reply(200, data, "image/jpeg"))


def _address_row(prop: Property) -> dict[str, Any]:
    assert prop.zillow is not None
    meta: dict[str, Any] = {
        "zpid": prop.zillow.zpid,
        "streetNumber": prop.number,
        "streetName": " ".join(p for p in (prop.predir, prop.name, prop.suffix) if p),
        "city": prop.city,
        "state": "AZ",
        "zipCode": prop.zip,
        "lat": prop.lat,
        "lng": prop.lng,
        "addressType": "condo"
        if prop.unit
        else ("building" if prop.sqft > 20_000 else "single_family"),
    }
    if prop.unit:
        meta["unitNumber"] = prop.unit
    display = f"{prop.zillow_street} {prop.city}, AZ {prop.zip}"
    return {"display": display, "resultType": "Address", "metaData": meta}


def _region_row(city: str) -> dict[str, Any]:
    region_id = 40326 + dataset.stable_int(city) % 999
    return {
        "display": f"{city}, AZ",
        "resultType": "Region",
        "metaData": {"regionId": region_id, "regionType": "city", "city": city, "state": "AZ"},
    }


def _int(value: str | None, default: int) -> int:
    try:
        return max(1, int(value)) if value else default
    except ValueError:
        return default


def _size(text: str, default: tuple[int, int]) -> tuple[int, int]:
    m = re.fullmatch(r"(\d{1,4})x(\d{1,4})", text)
    if not m:
        return default
    return min(max(int(m[1]), 1), 2048), min(max(int(m[2]), 1), 2048)
