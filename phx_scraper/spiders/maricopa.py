"""Maricopa County Assessor: the parcel's facts, map PDFs and one aerial image.

Endpoints:

- with a token (environment ``PHX_MARICOPA_TOKEN``, sent as ``AUTHORIZATION``
  by ``MaricopaTokenMiddleware``, never stored in a request), the official
  API at ``PHX_MARICOPA_API_URL``: ``/search/property/?q=`` (two response
  layouts), ``/parcel/<apn>``, ``/parcel/<apn>/residential-details``,
  ``/mapid/parcel/<apn>`` (map PDFs at ``/getmapid/<id>/``);
- always, the ArcGIS parcel layer at ``PHX_MARICOPA_GIS_URL`` + ``/query``:
  without a token it finds the parcel; with one it gives the parcel outline;
- the aerial image: ``PHX_MARICOPA_AERIAL_URL`` + ``/export`` over the parcel's
  bounding box plus a margin (``PHX_MARICOPA_AERIAL_SIZE``, ``_MARGIN``, ``_FORMAT``).

The Assessor publishes no listing photos: the aerial image is the one image.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from scrapy.http import Response

from phx_scraper.addresses import Address, AddressError, canonicalize
from phx_scraper.items import Photo
from phx_scraper.middlewares.secrets import META_KEY, maricopa_token
from phx_scraper.spiders.base import PropertySpider, number

logger = logging.getLogger(__name__)

SOURCE = "maricopa"
OUT_FIELDS = "APN,PHYSICAL_ADDRESS,PHYSICAL_CITY,PHYSICAL_ZIP"


def apn_digits(apn: str) -> str:
    return apn.replace("-", "").strip()


def format_apn(apn: str) -> str:
    """``12345678`` -> ``123-45-678`` (the Assessor's own way of writing it)."""
    digits = apn_digits(apn)
    if len(digits) >= 8:
        return f"{digits[:3]}-{digits[3:5]}-{digits[5:]}"
    return digits


def search_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Both layouts of ``/search/property/``."""
    return list(body.get("RealPropertyResults") or body.get("Results") or [])


def parcel_address(street: str, city: str, zip_code: str) -> Address | None:
    try:
        return canonicalize(f"{street}, {city}, AZ {zip_code}")
    except AddressError:
        return None


def bbox(geometry: dict[str, Any], margin: float) -> tuple[float, float, float, float] | None:
    points = [p for ring in geometry.get("rings") or () for p in ring]
    if not points:
        return None
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    pad = max(max(xs) - min(xs), max(ys) - min(ys)) * margin
    return (min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad)


def like_clause(address: Address) -> str:
    """``PHYSICAL_ADDRESS LIKE '4560 E SUNRISE%'``: number, direction and street name."""
    words = address.street.split()
    prefix = " ".join(words[:3] if len(words) > 3 else words[:-1] or words)
    return "PHYSICAL_ADDRESS LIKE '{}%'".format(prefix.replace("'", "''"))


class MaricopaSpider(PropertySpider):
    """Maricopa County Assessor: parcel facts, map PDFs and an aerial image of the parcel."""

    name = "maricopa"
    sources: tuple[str, ...] = (SOURCE,)

    def maricopa_start(self, address: Address) -> Iterable[Any]:
        if maricopa_token():
            query = urlencode({"q": address.canonical, "page": 1})
            url = f"{self.setting('PHX_MARICOPA_API_URL')}/search/property/?{query}"
            yield self.maricopa_request(url, address, self.maricopa_search)
        else:
            yield self.maricopa_gis_query(address, like_clause(address), api=None)

    def maricopa_request(self, url: str, address: Address, callback: Any, **meta: Any) -> Any:
        return self.request(url, SOURCE, address, callback, **{META_KEY: True}, **meta)

    def maricopa_gis_query(self, address: Address, where: str, api: dict[str, Any] | None) -> Any:
        params = {
            "where": where,
            "outFields": "*",
            "returnGeometry": "true",
            "f": "json",
        }
        url = f"{self.setting('PHX_MARICOPA_GIS_URL')}/query?{urlencode(params)}"
        return self.request(url, SOURCE, address, self.maricopa_parcels, maricopa={"api": api})

    # -- official API -----------------------------------------------------

    def maricopa_search(self, response: Response) -> Iterable[Any]:
        source, address = self.target(response)
        for result in search_results(json.loads(response.text)):
            situs = result.get("SitusAddress") or result.get("PropertyAddress") or ""
            city = result.get("SitusCity") or result.get("City") or address.city
            zip_code = result.get("SitusZip") or result.get("Zip") or address.zip
            found = parcel_address(situs, city, zip_code) if "," not in situs else None
            if found is None and situs:
                try:
                    found = canonicalize(situs)
                except AddressError:
                    found = None
            if found and found.canonical == address.canonical and result.get("APN"):
                apn = apn_digits(str(result["APN"]))
                api = self.setting("PHX_MARICOPA_API_URL")
                yield self.maricopa_request(
                    f"{api}/parcel/{apn}",
                    address,
                    self.maricopa_parcel,
                    maricopa={"apn": apn, "api_url": api},
                    deltafetch_key=f"{SOURCE}:{format_apn(apn)}",
                )
                return
        yield self.outcome(source, address, "no_match", reason="no_exact_address")

    def maricopa_parcel(self, response: Response) -> Iterable[Any]:
        _, address = self.target(response)
        state = dict(response.meta["maricopa"])
        state["parcel"] = json.loads(response.text)
        api = self.setting("PHX_MARICOPA_API_URL")
        yield self.maricopa_request(
            f"{api}/parcel/{state['apn']}/residential-details",
            address,
            self.maricopa_residential,
            maricopa=state,
        )

    def maricopa_residential(self, response: Response) -> Iterable[Any]:
        _, address = self.target(response)
        state = dict(response.meta["maricopa"])
        state["residential"] = json.loads(response.text)
        api = self.setting("PHX_MARICOPA_API_URL")
        yield self.maricopa_request(
            f"{api}/mapid/parcel/{state['apn']}", address, self.maricopa_map_ids, maricopa=state
        )

    def maricopa_map_ids(self, response: Response) -> Iterable[Any]:
        _, address = self.target(response)
        state = dict(response.meta["maricopa"])
        state["map_ids"] = [str(map_id) for map_id in json.loads(response.text) or ()]
        yield self.maricopa_gis_query(address, f"APN = '{state['apn']}'", api=state)

    # -- ArcGIS -----------------------------------------------------------

    def maricopa_parcels(self, response: Response) -> Iterable[Any]:
        source, address = self.target(response)
        api = response.meta["maricopa"]["api"]
        body = json.loads(response.text)
        if "error" in body:
            yield self.outcome(source, address, "failed", reason=f"arcgis: {body['error']}")
            return
        wkid = (body.get("spatialReference") or {}).get("wkid", 102100)
        for feature in body.get("features") or ():
            attrs = feature.get("attributes") or {}
            found = parcel_address(
                attrs.get("PHYSICAL_ADDRESS") or "",
                attrs.get("PHYSICAL_CITY") or "",
                str(attrs.get("PHYSICAL_ZIP") or ""),
            )
            same_apn = api and apn_digits(str(attrs.get("APN", ""))) == api["apn"]
            if same_apn or (found and found.canonical == address.canonical):
                yield self.maricopa_result(address, attrs, feature.get("geometry") or {}, wkid, api)
                return
        yield self.outcome(source, address, "no_match", reason="no_parcel")

    def maricopa_result(
        self,
        address: Address,
        attrs: dict[str, Any],
        geometry: dict[str, Any],
        wkid: int,
        api: dict[str, Any] | None,
    ) -> Any:
        apn = format_apn(str(attrs.get("APN") or (api or {}).get("apn", "")))
        facts = facts_from(attrs, api)
        photos: list[Photo] = []
        box = bbox(geometry, self.settings.getfloat("PHX_MARICOPA_AERIAL_MARGIN"))
        if box is not None:
            params = {
                "bbox": ",".join(f"{v:.2f}" for v in box),
                "bboxSR": wkid,
                "size": self.settings.get("PHX_MARICOPA_AERIAL_SIZE"),
                "format": self.settings.get("PHX_MARICOPA_AERIAL_FORMAT"),
                "f": "image",
            }
            url = f"{self.setting('PHX_MARICOPA_AERIAL_URL')}/export?{urlencode(params)}"
            photos.append(
                Photo(photo_id="aerial", url=url, position=0, caption="", listing_id=None)
            )
        return self.outcome(
            SOURCE,
            address,
            "ok",
            source_id=apn,
            photo_count=len(photos),
            photos=photos,
            facts=facts,
        )


def facts_from(attrs: dict[str, Any], api: dict[str, Any] | None) -> dict[str, Any]:
    """The parcel facts, from the official API when there is a token, else from ArcGIS."""
    facts: dict[str, Any] = {"apn": format_apn(str(attrs.get("APN") or (api or {}).get("apn")))}
    if api is None:
        facts["lot_size"] = attrs.get("LAND_SIZE") or attrs.get("LOT_SIZE")
        facts["year_built"] = attrs.get("CONST_YEAR") or attrs.get("YEAR_BUILT")
        return facts
    parcel = api.get("parcel") or {}
    residential = api.get("residential") or {}
    details = residential.get("ResidentialPropertyData") or residential
    valuations = parcel.get("Valuations") or []
    latest: dict[str, Any] = max(valuations, key=lambda v: int(v.get("TaxYear") or 0), default={})
    facts.update(
        lot_size=parcel.get("LotSize"),
        livable_space=details.get("LivableSpace"),
        year_built=details.get("ConstructionYear"),
        pool=details.get("Pool"),
        garages=details.get("NumberOfGarages"),
        valuation_year=number(latest.get("TaxYear")),
        full_cash_value=number(latest.get("FullCashValue")),
        map_ids=api.get("map_ids") or [],
        map_pdfs=[f"{api['api_url']}/getmapid/{map_id}/" for map_id in api.get("map_ids") or ()],
    )
    return facts
