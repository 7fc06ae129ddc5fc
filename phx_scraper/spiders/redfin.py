"""Redfin: location-autocomplete -> initialInfo -> aboveTheFold (+ belowTheFold) photos.

Endpoints (setting ``PHX_REDFIN_BASE_URL``), every body prefixed ``{}&&``:

- ``/stingray/do/location-autocomplete?location=<addr>&start=0&count=10&v=2``:
  ``payload.exactMatch`` or the rows of the "Addresses" section; the property
  id is the number after ``/home/`` in a row's URL.
- ``/stingray/api/home/details/initialInfo?path=<url path>``: property and listing ids.
- ``/stingray/api/home/details/aboveTheFold?propertyId=&listingId=&accessLevel=1``:
  ``payload.mediaBrowserInfo.photos[].photoUrls.fullScreenPhotoUrl``. When the
  API is refused, the HTML page embeds the same body in
  ``root.__reactServerState.InitialContext`` (as ``res.text`` or ``res.body``).
- ``/stingray/api/home/details/belowTheFold?...``: photos of earlier listings
  of the same house, kept and marked with their listing id.

The photo URL is always the one the site gives: an invented size is a 404.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from scrapy.http import Response

from phx_scraper.addresses import Address, AddressError, canonicalize
from phx_scraper.items import Photo
from phx_scraper.spiders.base import PropertySpider

logger = logging.getLogger(__name__)

SOURCE = "redfin"
PREFIX = "{}&&"
HOME_ID = re.compile(r"/home/(\d+)")
PHOTO_NAME = re.compile(r"/(?:[A-Za-z]+\.)?(?P<mls>[0-9A-Za-z]+)_(?P<index>\d+)(?:_\d+)?\.jpg")
SERVER_STATE = re.compile(
    r"root\.__reactServerState\.InitialContext\s*=\s*(\{.*?\});\s*(?:\n|</script>|root\.)",
    re.DOTALL,
)
ABOVE_THE_FOLD = "/stingray/api/home/details/aboveTheFold"


class StingrayError(ValueError):
    pass


def stingray(text: str) -> dict[str, Any]:
    """Parse a stingray body: strip ``{}&&``, check ``resultCode``, return ``payload``."""
    body = json.loads(text.removeprefix(PREFIX))
    if body.get("resultCode", 0) != 0:
        raise StingrayError(f"resultCode {body.get('resultCode')}: {body.get('errorMessage')}")
    return body.get("payload") or {}


def row_address(row: dict[str, Any]) -> Address | None:
    try:
        return canonicalize(f"{row.get('name', '')}, {row.get('subName', '')}")
    except AddressError:
        return None


def choose_row(payload: dict[str, Any], address: Address) -> dict[str, Any] | None:
    """``exactMatch`` when it is this address, else the matching row of "Addresses"."""
    rows = []
    if payload.get("exactMatch"):
        rows.append(payload["exactMatch"])
    for section in payload.get("sections") or ():
        if section.get("name") == "Addresses":
            rows += section.get("rows") or []
    for row in rows:
        candidate = row_address(row)
        if candidate and candidate.canonical == address.canonical and row.get("url"):
            return row
    return None


def property_id(row: dict[str, Any]) -> str | None:
    match = HOME_ID.search(row.get("url") or "")
    if match:
        return match[1]
    row_id = str(row.get("id") or "")
    return row_id.split("_", 1)[1] if "_" in row_id else None


def photos_from(media: dict[str, Any] | None, listing_id: str | None) -> list[Photo]:
    """The full-screen photos of one listing; positions are within that listing."""
    photos: list[Photo] = []
    for entry in (media or {}).get("photos") or ():
        url = (entry.get("photoUrls") or {}).get("fullScreenPhotoUrl")
        if not url:
            continue
        match = PHOTO_NAME.search(url)
        photo_id = f"{match['mls']}_{match['index']}" if match else str(entry.get("photoId"))
        photos.append(
            Photo(
                photo_id=photo_id,
                url=url,
                position=len(photos),
                caption=entry.get("photoText") or "",
                listing_id=listing_id,
            )
        )
    return photos


def embedded_above_the_fold(html: str) -> dict[str, Any] | None:
    """The aboveTheFold payload embedded in the page, in its text or body form."""
    match = SERVER_STATE.search(html)
    if not match:
        return None
    context = json.loads(match[1])
    cache = (context.get("ReactServerAgent.cache") or {}).get("dataCache") or {}
    res = (cache.get(ABOVE_THE_FOLD) or {}).get("res") or {}
    if isinstance(res.get("text"), str):
        return stingray(res["text"])
    if isinstance(res.get("body"), dict):
        body = res["body"]
        return body.get("payload", body) if "resultCode" in body else body
    return None


class RedfinSpider(PropertySpider):
    """Redfin (redfin.com): full-screen photos of the listing and of earlier listings."""

    name = "redfin"
    sources: tuple[str, ...] = (SOURCE,)

    def redfin_start(self, address: Address) -> Iterable[Any]:
        query = urlencode({"location": address.canonical, "start": 0, "count": 10, "v": 2})
        url = f"{self.setting('PHX_REDFIN_BASE_URL')}/stingray/do/location-autocomplete?{query}"
        yield self.request(url, SOURCE, address, self.redfin_autocomplete)

    def redfin_api(self, endpoint: str, **params: Any) -> str:
        return f"{self.setting('PHX_REDFIN_BASE_URL')}{endpoint}?{urlencode(params)}"

    def redfin_autocomplete(self, response: Response) -> Iterable[Any]:
        source, address = self.target(response)
        try:
            payload = stingray(response.text)
        except StingrayError as exc:
            yield self.outcome(source, address, "failed", reason=str(exc))
            return
        except ValueError:
            yield self.outcome(source, address, "blocked", reason="not_json")
            return
        row = choose_row(payload, address)
        if row is None:
            yield self.outcome(source, address, "no_match", reason="no_exact_address")
            return
        path = row["url"]
        yield self.request(
            self.redfin_api("/stingray/api/home/details/initialInfo", path=path),
            source,
            address,
            self.redfin_initial_info,
            redfin={"path": path, "property_id": property_id(row)},
            deltafetch_key=f"{SOURCE}:{property_id(row)}",
        )

    def redfin_initial_info(self, response: Response) -> Iterable[Any]:
        source, address = self.target(response)
        redfin = dict(response.meta["redfin"])
        try:
            payload = stingray(response.text)
        except ValueError as exc:
            yield self.outcome(source, address, "failed", reason=f"initialInfo: {exc}")
            return
        redfin["property_id"] = str(payload.get("propertyId") or redfin["property_id"])
        redfin["listing_id"] = str(payload["listingId"]) if payload.get("listingId") else None
        params = {
            "propertyId": redfin["property_id"],
            "listingId": redfin["listing_id"] or "",
            "accessLevel": 1,
        }
        request = self.request(
            self.redfin_api(ABOVE_THE_FOLD, **params),
            source,
            address,
            self.redfin_above_the_fold,
            redfin=redfin,
            # A refused API is answered from the page itself, not given up.
            handle_httpstatus_list=[403, 404],
        )
        yield request

    def redfin_above_the_fold(self, response: Response) -> Iterable[Any]:
        source, address = self.target(response)
        redfin = response.meta["redfin"]
        try:
            if response.status != 200:
                raise StingrayError(f"HTTP {response.status}")
            payload = stingray(response.text)
        except ValueError as exc:
            logger.info("redfin: aboveTheFold refused for %s (%s); reading the page", address, exc)
            yield self.request(
                f"{self.setting('PHX_REDFIN_BASE_URL')}{redfin['path']}",
                source,
                address,
                self.redfin_page,
                redfin=redfin,
            )
            return
        yield from self.redfin_below_the_fold_request(address, redfin, payload)

    def redfin_page(self, response: Response) -> Iterable[Any]:
        source, address = self.target(response)
        payload = embedded_above_the_fold(response.text)
        if payload is None:
            yield self.outcome(source, address, "failed", reason="no_embedded_photos")
            return
        yield from self.redfin_below_the_fold_request(address, response.meta["redfin"], payload)

    def redfin_below_the_fold_request(
        self, address: Address, redfin: dict[str, Any], above: dict[str, Any]
    ) -> Iterable[Any]:
        params = {
            "propertyId": redfin["property_id"],
            "listingId": redfin["listing_id"] or "",
            "accessLevel": 1,
        }
        media = above.get("mediaBrowserInfo")
        photos = photos_from(media, redfin["listing_id"])
        yield self.request(
            self.redfin_api("/stingray/api/home/details/belowTheFold", **params),
            SOURCE,
            address,
            self.redfin_below_the_fold,
            redfin={**redfin, "photos": photos},
            handle_httpstatus_list=[403, 404],
        )

    def redfin_below_the_fold(self, response: Response) -> Iterable[Any]:
        source, address = self.target(response)
        redfin = response.meta["redfin"]
        photos: list[Photo] = list(redfin["photos"])
        earlier: list[str] = []
        try:
            payload = stingray(response.text) if response.status == 200 else {}
        except ValueError:
            payload = {}
        history = payload.get("propertyHistoryInfo") or {}
        seen = {p["url"] for p in photos}
        for source_id, media in (history.get("mediaBrowserInfoBySourceId") or {}).items():
            listing_id = str(media.get("listingId") or source_id)
            for photo in photos_from(media, listing_id):
                if photo["url"] not in seen and photo["listing_id"] != redfin["listing_id"]:
                    seen.add(photo["url"])
                    photos.append(photo)
                    earlier.append(listing_id)
        yield self.outcome(
            source,
            address,
            "ok",
            source_id=redfin["property_id"],
            ids={"listing_id": redfin["listing_id"], "earlier_listing_ids": sorted(set(earlier))},
            photo_count=len(redfin["photos"]) or None,
            photos=photos,
        )
