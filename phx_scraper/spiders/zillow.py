"""Zillow: address -> zpid -> detail page -> the widest variant of every photo.

Endpoints (settings ``PHX_ZILLOW_AUTOCOMPLETE_URL``, ``PHX_ZILLOW_BASE_URL``):

- ``<autocomplete>?q=<address>&resultTypes=allhomes&resultCount=6``: JSON
  rows; an ``Address`` row carries ``metaData.zpid``. An exact address may
  come back with no rows, so the search route is the fallback.
- ``<base>/homes/<street>-<city>-<ST>-<zip>_rb/``: one match serves the
  detail page itself; several serve a search results page.
- ``<base>/homedetails/<slug>/<zpid>_zpid/``: the detail page. Photos sit in
  ``__NEXT_DATA__`` under ``gdpClientCache`` (a JSON string) in one of two
  places, or in the older ``hdpApolloPreloadedData`` ``apiCache``.

Only the ``property`` whose zpid is the target counts: nearby homes, comps,
agent headshots, maps and badges are never photos of this house.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlencode

import scrapy
from scrapy.http import Response

from phx_scraper.addresses import Address, AddressError, canonicalize
from phx_scraper.items import Photo
from phx_scraper.spiders.base import PropertySpider

logger = logging.getLogger(__name__)

SOURCE = "zillow"
PREFERRED_VARIANT = "uncropped_scaled_within_1536_1152"
# The gallery's lists: the same photos in different crops.
PHOTO_LISTS = ("photos", "responsivePhotos", "responsivePhotosOriginalRatio", "originalPhotos")
PHOTO_URL = re.compile(r"/fp/(?P<id>[0-9a-f]{32})-(?P<variant>[a-z0-9_]+)\.(?P<ext>jpg|webp)")
BLOCK_MARKERS = ("px-captcha", "press & hold", "press and hold", "captcha.px-cdn.net")


def is_block_page(text: str) -> bool:
    lowered = text.lower()
    return any(marker in lowered for marker in BLOCK_MARKERS)


def slug(address: Address) -> str:
    """``4560-E-Sunrise-Dr-Phoenix-AZ-85044``, as Zillow's search route expects."""
    parts = [address.street, address.unit or "", address.city, address.state, address.zip]
    words = " ".join(p for p in parts if p).replace("#", "").split()
    return "-".join(w.title() if w.isalpha() and len(w) > 2 else w for w in words)


def autocomplete_address(row: dict[str, Any]) -> Address | None:
    meta = row.get("metaData") or {}
    street = " ".join(
        str(meta[k]) for k in ("streetNumber", "streetName") if meta.get(k) not in (None, "")
    )
    if meta.get("unitNumber"):
        street += f" UNIT {meta['unitNumber']}"
    text = (
        f"{street}, {meta.get('city', '')}, {meta.get('state', '')} {meta.get('zipCode', '')}"
        if street
        else row.get("display", "")
    )
    try:
        return canonicalize(text)
    except AddressError:
        return None


def next_data_caches(response: Response) -> list[dict[str, Any]]:
    """Every Apollo/GDP cache on a detail page, parsed (both layouts, old pages too)."""
    caches: list[dict[str, Any]] = []
    raw = response.css("script#__NEXT_DATA__::text").get()
    if raw:
        page_props = json.loads(raw).get("props", {}).get("pageProps", {})
        for holder in (page_props.get("componentProps") or {}, page_props):
            cache = holder.get("gdpClientCache")
            if cache:
                caches.append(json.loads(cache) if isinstance(cache, str) else cache)
    apollo = response.css("script#hdpApolloPreloadedData::text").get()
    if apollo:
        cache = json.loads(apollo).get("apiCache")
        if cache:
            caches.append(json.loads(cache) if isinstance(cache, str) else cache)
    return caches


def find_properties(caches: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for cache in caches:
        for value in cache.values():
            if isinstance(value, dict) and isinstance(value.get("property"), dict):
                yield value["property"]


def property_address(prop: dict[str, Any]) -> Address | None:
    address = prop.get("address") or {}
    text = (
        f"{address.get('streetAddress', '')}, {address.get('city', '')}, "
        f"{address.get('state', '')} {address.get('zipcode', '')}"
    )
    try:
        return canonicalize(text)
    except AddressError:
        return None


def gallery(homes: list[dict[str, Any]]) -> list[Photo]:
    """Every photo of the home at its widest published variant, in gallery order.

    ``homes`` are all the cache entries of the target zpid: a page can hold a
    thin entry (no photos) next to the full one.
    """
    candidates: dict[str, list[tuple[str, int, str]]] = {}
    captions: dict[str, str] = {}
    lists = [prop.get(name) or () for prop in homes for name in PHOTO_LISTS]
    for photo_list in lists:
        for entry in photo_list:
            sources = (entry.get("mixedSources") or {}) if isinstance(entry, dict) else {}
            for fmt in ("jpeg", "webp"):
                for variant in sources.get(fmt) or ():
                    url = variant.get("url") or ""
                    match = PHOTO_URL.search(url)
                    if not match:
                        continue
                    photo_id = match["id"]
                    candidates.setdefault(photo_id, []).append(
                        (url, int(variant.get("width") or 0), match["variant"])
                    )
                    if entry.get("caption") and not captions.get(photo_id):
                        captions[photo_id] = entry["caption"]
    return [
        Photo(
            photo_id=photo_id,
            url=widest(options),
            position=position,
            caption=captions.get(photo_id, ""),
            listing_id=None,
        )
        for position, (photo_id, options) in enumerate(candidates.items())
    ]


def widest(options: list[tuple[str, int, str]]) -> str:
    """``uncropped_scaled_within_1536_1152`` if published, else the widest; JPEG on ties."""

    def rank(option: tuple[str, int, str]) -> tuple[bool, int, bool]:
        url, width, variant = option
        return (variant == PREFERRED_VARIANT, width, url.endswith(".jpg"))

    return max(options, key=rank)[0]


class ZillowSpider(PropertySpider):
    """Zillow (zillow.com): every listing photo at its widest variant, by zpid."""

    name = "zillow"
    sources: tuple[str, ...] = (SOURCE,)

    def zillow_start(self, address: Address) -> Iterable[scrapy.Request]:
        query = urlencode({"q": address.canonical, "resultTypes": "allhomes", "resultCount": 6})
        url = f"{self.setting('PHX_ZILLOW_AUTOCOMPLETE_URL')}?{query}"
        yield self.request(url, SOURCE, address, self.zillow_autocomplete)

    def zillow_page(self, url: str, address: Address, zpid: str | None = None) -> scrapy.Request:
        meta: dict[str, Any] = {"zpid": zpid}
        if zpid is not None:
            meta["deltafetch_key"] = f"{SOURCE}:{zpid}"
        if self.uses_browser(SOURCE):
            meta["playwright"] = True
        return self.request(url, SOURCE, address, self.zillow_detail, **meta)

    def zillow_autocomplete(self, response: Response) -> Iterable[Any]:
        source, address = self.target(response)
        try:
            rows = json.loads(response.text).get("results") or []
        except ValueError:
            yield self.outcome(source, address, "blocked", reason="autocomplete_not_json")
            return
        matches = []
        for row in rows:
            zpid = (row.get("metaData") or {}).get("zpid")
            if row.get("resultType") != "Address" or not zpid:
                continue
            candidate = autocomplete_address(row)
            if candidate and candidate.canonical == address.canonical:
                matches.append(str(zpid))
            else:
                logger.debug("zillow: candidate %r is not %s", row.get("display"), address)
        if matches:
            if len(set(matches)) > 1:
                logger.info("zillow: %s matches zpids %s; using %s", address, matches, matches[0])
            base = self.setting("PHX_ZILLOW_BASE_URL")
            yield self.zillow_page(
                f"{base}/homedetails/{slug(address)}/{matches[0]}_zpid/", address, matches[0]
            )
            return
        # No exact row: Zillow's search route resolves an address to its page.
        yield self.zillow_page(
            f"{self.setting('PHX_ZILLOW_BASE_URL')}/homes/{slug(address)}_rb/", address
        )

    def zillow_detail(self, response: Response) -> Iterable[Any]:
        source, address = self.target(response)
        if is_block_page(response.text):
            yield self.outcome(source, address, "blocked", reason="perimeterx")
            return
        properties = list(find_properties(next_data_caches(response)))
        zpid = response.meta.get("zpid") or self._zpid_of(properties, address)
        homes = [p for p in properties if zpid is not None and str(p.get("zpid")) == zpid]
        if not homes:
            yield from self._search_results(response, address)
            return
        counts = [h["photoCount"] for h in homes if isinstance(h.get("photoCount"), int)]
        yield self.outcome(
            source,
            address,
            "ok",
            source_id=zpid,
            photo_count=max(counts, default=None),
            photos=gallery(homes),
        )

    @staticmethod
    def _zpid_of(properties: list[dict[str, Any]], address: Address) -> str | None:
        """The search route served a detail page: trust it only for this address."""
        for prop in properties:
            found = property_address(prop)
            if prop.get("zpid") and found and found.canonical == address.canonical:
                return str(prop["zpid"])
        return None

    def _search_results(self, response: Response, address: Address) -> Iterable[Any]:
        """A search page: follow the one result that is exactly this address."""
        raw = response.css("script#__NEXT_DATA__::text").get()
        results: list[dict[str, Any]] = []
        if raw:
            state = json.loads(raw).get("props", {}).get("pageProps", {}).get("searchPageState")
            results = ((state or {}).get("cat1") or {}).get("searchResults", {}).get(
                "listResults"
            ) or []
        for result in results:
            try:
                candidate = canonicalize(result.get("address", ""))
            except AddressError:
                continue
            if candidate.canonical == address.canonical and result.get("zpid"):
                yield self.zillow_page(
                    response.urljoin(result["detailUrl"]), address, str(result["zpid"])
                )
                return
        yield self.outcome(SOURCE, address, "no_match", reason="no_exact_address")
