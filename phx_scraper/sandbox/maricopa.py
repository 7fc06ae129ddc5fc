"""Replica of the Maricopa County Assessor (official API + ArcGIS REST).

Official API (sources.md §3), header ``AUTHORIZATION: <token>`` (no "Bearer";
401 without it or with a wrong one):

- ``GET /search/property/?q=<address>&page=N`` -- 25 per page, in one of two
  layouts: ``{"RealPropertyResults": [...], "TotalPropertyResults": N}`` (APN
  "123-45-678") or ``{"TOTAL": N, "Results": [...]}`` (APN "12345678").
- ``GET /parcel/<apn>`` (dashes optional), ``/parcel/<apn>/propertyinfo``,
  ``/parcel/<apn>/residential-details`` (the ``ResidentialPropertyData``
  object), ``/parcel/<apn>/valuations`` (list, newest first, values as strings).
- ``GET /mapid/parcel/<apn>`` -> list of map ids; ``GET /getmapid/<id>/`` -> PDF
  (no token needed).

ArcGIS (no token): ``/arcgis/rest/services/MaricopaDynamicQueryService/MapServer/3/query``
and ``/arcgis/rest/services/Aerials/MapServer/export`` (``f=image`` or ``f=json``);
bad parameters get ``{"error": {"code": 400, ...}}`` with HTTP 200, like ArcGIS.
Map PDFs and aerial exports count as CDN requests for fault modes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred

from phx_scraper.sandbox import addresses, arcgis, dataset, images
from phx_scraper.sandbox.base import (
    Call,
    Context,
    Handler,
    Reply,
    SourceSite,
    html,
    json_reply,
    not_found,
)
from phx_scraper.sandbox.model import Property, stable_int

GIS = "/arcgis/rest/services/MaricopaDynamicQueryService/MapServer/3"
AERIALS = "/arcgis/rest/services/Aerials/MapServer"
PAGE_SIZE = 25
_HOMES = tuple(p for p in dataset.ALL_HOMES if p.parcel)
_UNAUTHORIZED = {"Message": "Authorization has been denied for this request."}
_SQFT_TO_M2 = 0.09290304


def digits(apn: str) -> str:
    return apn.replace("-", "").strip().upper()


def _apn_order(prop: Property) -> str:
    return prop.parcel.apn if prop.parcel else ""


class MaricopaSite(SourceSite):
    source = "maricopa"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.by_apn = {digits(p.parcel.apn): p for p in _HOMES if p.parcel}
        self.map_ids = {m for p in _HOMES if p.parcel for m in p.parcel.map_ids}
        self.rows = [gis_row(p) for p in _HOMES]
        r = self.router
        r.add(
            r"/",
            lambda call, m: html(
                "<html><head><title>Maricopa County Assessor</title></head></html>"
            ),
        )
        r.add(r"/search/property/?", self.api(self.search))
        r.add(r"/parcel/(?P<apn>[0-9A-Za-z-]+)/?", self.api(self.parcel))
        r.add(r"/parcel/(?P<apn>[0-9A-Za-z-]+)/(?P<part>[a-z-]+)/?", self.api(self.parcel_part))
        r.add(r"/mapid/parcel/(?P<apn>[0-9A-Za-z-]+)/?", self.api(self.mapid))
        r.add(r"/getmapid/(?P<id>[0-9A-Za-z-]+)/?", self.map_pdf)
        r.add(GIS + r"/?", lambda call, m: json_reply(_layer_info()))
        r.add(GIS + r"/query/?", self.gis_query)
        r.add(
            AERIALS + r"/?",
            lambda call, m: json_reply({"currentVersion": 10.91, "mapName": "Aerials"}),
        )
        r.add(AERIALS + r"/export/?", self.export)

    def is_cdn(self, path: str) -> bool:
        return path.startswith(("/getmapid/", AERIALS + "/export"))

    def block_page(self, call: Call, kind: str, retry_after: int | None = None) -> Reply:
        return html(
            "<html><head><title>Request Rejected</title></head><body>"
            "The requested URL was rejected. Please consult with your administrator.<br><br>"
            "Your support ID is: 1473928459018237</body></html>",
            403,
        )

    def api(self, handler: Callable[[Call, re.Match[str]], Reply]) -> Handler:
        """Wrap an official-API handler with the token check."""

        def checked(call: Call, match: re.Match[str]) -> Reply:
            if call.header("authorization") != self.ctx.maricopa_token:
                return json_reply(_UNAUTHORIZED, 401)
            return handler(call, match)

        return checked

    # --- official API ---
    def search(self, call: Call, match: re.Match[str]) -> Reply:
        query = call.query.get("q", "")
        # The assessor ranks nothing: matches come in parcel-number order.
        found = sorted((p for _, p in addresses.search(query, _HOMES)), key=_apn_order)
        page = max(1, int(call.query["page"])) if call.query.get("page", "").isdigit() else 1
        rows = found[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        layout = (
            found[0].parcel.layout
            if found and found[0].parcel
            else ("real", "total")[stable_int(query) % 2]
        )
        if layout == "real":
            return json_reply(
                {
                    "RealPropertyResults": [_search_row(p, dashes=True) for p in rows],
                    "TotalPropertyResults": len(found),
                    "TotalCommercialResults": 0,
                    "TotalRentalResults": 0,
                }
            )
        return json_reply(
            {"TOTAL": len(found), "Results": [_search_row(p, dashes=False) for p in rows]}
        )

    def _prop(self, apn: str) -> Property | None:
        return self.by_apn.get(digits(apn))

    def parcel(self, call: Call, match: re.Match[str]) -> Reply:
        prop = self._prop(match["apn"])
        if prop is None:
            return json_reply({"Message": "Parcel not found"}, 404)
        return json_reply(
            {
                **property_info(prop),
                "Owner": owner(prop),
                "Valuations": valuations(prop),
                "ResidentialPropertyData": residential(prop),
            }
        )

    def parcel_part(self, call: Call, match: re.Match[str]) -> Reply:
        prop = self._prop(match["apn"])
        if prop is None:
            return json_reply({"Message": "Parcel not found"}, 404)
        parts: dict[str, Any] = {
            "propertyinfo": property_info,
            "residential-details": residential,
            "valuations": valuations,
            "owner-details": owner,
        }
        builder = parts.get(match["part"])
        return json_reply(builder(prop)) if builder else not_found()

    def mapid(self, call: Call, match: re.Match[str]) -> Reply:
        prop = self._prop(match["apn"])
        if prop is None or prop.parcel is None:
            return json_reply([])
        return json_reply(list(prop.parcel.map_ids))

    def map_pdf(self, call: Call, match: re.Match[str]) -> Reply:
        if match["id"] not in self.map_ids:
            return not_found()
        return Reply(200, _pdf(f"Maricopa County Assessor - Map {match['id']}"), "application/pdf")

    # --- ArcGIS ---
    def gis_query(self, call: Call, match: re.Match[str]) -> Reply:
        q = call.query
        try:
            fmt = q.get("f", "html")
            if fmt not in ("json", "pjson"):
                raise arcgis.ArcGISError("Invalid or missing output format (f)")
            out_sr = _out_sr(q.get("outSR", "102100"))
            predicate = arcgis.where(q.get("where", ""), set(self.rows[0]) - {"_geometry"})
            fields = _out_fields(q.get("outFields", ""), set(self.rows[0]) - {"_geometry"})
            with_geometry = q.get("returnGeometry", "true").lower() != "false"
            features = []
            for row in self.rows:
                if not predicate(row):
                    continue
                feature: dict[str, Any] = {"attributes": {f: row[f] for f in fields}}
                if with_geometry:
                    feature["geometry"] = {"rings": _project(row["_geometry"], out_sr)}
                features.append(feature)
        except arcgis.ArcGISError as exc:
            return json_reply(exc.body())
        body = {
            "displayFieldName": "APN",
            "fieldAliases": {f: f for f in fields},
            "geometryType": "esriGeometryPolygon",
            "spatialReference": _sr(out_sr),
            "fields": [{"name": f, "type": _field_type(f), "alias": f} for f in fields],
            "features": features,
        }
        reply = json_reply(body)
        if fmt == "pjson":
            reply.body = json.dumps(body, indent=2).encode()
        return reply

    def export(self, call: Call, match: re.Match[str]) -> Reply | Deferred[Reply]:
        try:
            bbox, size, fmt = arcgis.export_params(call.query)
            f = call.query.get("f", "html")
            if f not in ("image", "json", "pjson"):
                raise arcgis.ArcGISError("Invalid or missing output format (f)")
        except arcgis.ArcGISError as exc:
            return json_reply(exc.body())
        if f != "image":
            href = f"{call.base}{AERIALS}/export?" + "&".join(
                f"{k}={v}" for k, v in {**call.query, "f": "image"}.items()
            )
            xmin, ymin, xmax, ymax = bbox
            return json_reply(
                {
                    "href": href,
                    "width": size[0],
                    "height": size[1],
                    "extent": {
                        "xmin": xmin,
                        "ymin": ymin,
                        "xmax": xmax,
                        "ymax": ymax,
                        "spatialReference": _sr(102100),
                    },
                    "scale": round((xmax - xmin) / size[0] * 96 / 0.0254),
                }
            )
        key = "aerial:" + ",".join(f"{v:.2f}" for v in bbox) + f":{size[0]}x{size[1]}:{fmt}"
        content_type = "image/png" if fmt.startswith("png") else "image/jpeg"
        return self.image(key, lambda: images.aerial(bbox, size, fmt)).addCallback(
            lambda data: Reply(200, data, content_type)
        )


# --- documents ---
def property_info(prop: Property) -> dict[str, Any]:
    parcel = prop.parcel
    assert parcel is not None
    return {
        "APN": parcel.apn,
        "MCR": parcel.mcr,
        "PropertyAddress": f"{prop.maricopa_situs}   {prop.city.upper()}  {prop.zip}",
        "PropertyType": parcel.property_type,
        "LotSize": parcel.lot_size,
        "IsResidential": True,
        "TaxAreaCode": f"{stable_int(prop.city) % 900000:06d}",
        "Geo": {"lat": prop.lat, "long": prop.lng},
    }


def owner(prop: Property) -> dict[str, Any]:
    parcel = prop.parcel
    assert parcel is not None
    return {
        "Ownership": parcel.owner,
        "MailingAddress1": prop.maricopa_situs,
        "MailingCity": prop.city.upper(),
        "MailingState": "AZ",
        "MailingZip": prop.zip,
        "DeedType": "WD",
    }


def residential(prop: Property) -> dict[str, Any]:
    parcel = prop.parcel
    assert parcel is not None
    return {
        "APN": parcel.apn,
        "LivableSpace": parcel.livable_space,
        "NumberOfGarages": parcel.garages,
        "ConstructionYear": parcel.year_built,
        "Pool": parcel.pool,
        "RoofType": ("Concrete Tile", "Built Up", "Asphalt Shingle")[stable_int(prop.key) % 3],
        "ExteriorWalls": "Frame Stucco",
        "Bathrooms": prop.full_baths,
        "ImprovementQualityGrade": "Average",
    }


def valuations(prop: Property) -> list[dict[str, str]]:
    parcel = prop.parcel
    assert parcel is not None
    return [
        {
            "TaxYear": str(year),
            "FullCashValue": str(value),
            "LimitedPropertyValue": str(int(value * 0.71)),
            "LegalClassification": "3.1" if not prop.unit else "4.2",
            "AssessmentRatioPercentage": "10",
        }
        for year, value in reversed(parcel.full_cash_values)
    ]


def _search_row(prop: Property, dashes: bool) -> dict[str, Any]:
    parcel = prop.parcel
    assert parcel is not None
    return {
        "APN": parcel.apn if dashes else digits(parcel.apn),
        "Ownership": parcel.owner,
        "SitusAddress": prop.maricopa_situs,
        "SitusCity": prop.city.upper(),
        "SitusZip": prop.zip,
        "PropertyType": parcel.property_type,
        "MCR": parcel.mcr,
    }


def gis_row(prop: Property) -> dict[str, Any]:
    parcel = prop.parcel
    assert parcel is not None
    return {
        "APN": digits(parcel.apn),
        "APN_DASH": parcel.apn,
        "PHYSICAL_ADDRESS": prop.maricopa_situs,
        "PHYSICAL_STREET_NUM": prop.number,
        "PHYSICAL_STREET_DIR": prop.predir,
        "PHYSICAL_STREET_NAME": prop.name.upper(),
        "PHYSICAL_STREET_TYPE": prop.suffix.upper(),
        "PHYSICAL_CITY": prop.city.upper(),
        "PHYSICAL_ZIP": prop.zip,
        "UNIT": prop.unit,
        "OWNER_NAME": parcel.owner,
        "LAND_SIZE": parcel.lot_size,
        "CONST_YEAR": parcel.year_built,
        "LATITUDE": prop.lat,
        "LONGITUDE": prop.lng,
        "MCR": parcel.mcr,
        "_geometry": footprint(prop),
    }


def footprint(prop: Property) -> list[list[tuple[float, float]]]:
    """The lot as one clockwise Web Mercator ring (units share the building's)."""
    area = max(prop.lot_sqft, 600) * _SQFT_TO_M2
    if prop.unit:
        area = 41_800 * _SQFT_TO_M2
    stretch = 1 / math.cos(math.radians(prop.lat))  # ground metres -> Mercator metres
    width = math.sqrt(area / 1.4) * stretch
    depth = area / math.sqrt(area / 1.4) * stretch
    cx, cy = arcgis.to_mercator(prop.lng, prop.lat)
    x0, x1, y0, y1 = cx - width / 2, cx + width / 2, cy - depth / 2, cy + depth / 2
    ring = [(x0, y0), (x0, y1), (x1, y1), (x1, y0), (x0, y0)]
    return [[(round(x, 2), round(y, 2)) for x, y in ring]]


def _project(rings: list[list[tuple[float, float]]], wkid: int) -> list[list[list[float]]]:
    if wkid == 4326:
        return [[[round(v, 7) for v in arcgis.to_lnglat(x, y)] for x, y in ring] for ring in rings]
    return [[[x, y] for x, y in ring] for ring in rings]


def _out_sr(text: str) -> int:
    wkid = arcgis.wkid(text) if text else 102100
    if wkid != 4326 and wkid not in arcgis.MERCATOR_WKIDS:
        raise arcgis.ArcGISError(f"Invalid outSR: {text}")
    return wkid


def _sr(wkid: int) -> dict[str, Any]:
    if wkid == 4326:
        return {"wkid": 4326, "latestWkid": 4326}
    return {"wkid": 102100, "latestWkid": 3857}


def _out_fields(text: str, fields: set[str]) -> list[str]:
    ordered = [f for f in gis_row_order() if f in fields]
    if text.strip() in ("", "*"):
        return ordered if text.strip() == "*" else ["APN"]
    by_upper = {f.upper(): f for f in fields}
    chosen = []
    for name in (n.strip() for n in text.split(",")):
        if name.upper() not in by_upper:
            raise arcgis.ArcGISError(f"Invalid field: {name}")
        chosen.append(by_upper[name.upper()])
    return chosen


def gis_row_order() -> list[str]:
    return [k for k in gis_row(_HOMES[0]) if k != "_geometry"]


def _field_type(name: str) -> str:
    if name in ("LAND_SIZE", "CONST_YEAR"):
        return "esriFieldTypeInteger"
    if name in ("LATITUDE", "LONGITUDE"):
        return "esriFieldTypeDouble"
    return "esriFieldTypeString"


def _layer_info() -> dict[str, Any]:
    return {
        "id": 3,
        "name": "Parcels",
        "type": "Feature Layer",
        "geometryType": "esriGeometryPolygon",
        "fields": [{"name": f, "type": _field_type(f), "alias": f} for f in gis_row_order()],
        "maxRecordCount": 1000,
    }


def _pdf(text: str) -> bytes:
    """A one-page PDF with a line of text (valid xref, opens in any viewer)."""
    content = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)
