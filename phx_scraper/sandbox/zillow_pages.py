"""What Zillow's pages contain: the home JSON, its cache layouts, and the HTML.

Faithful to the captures in sources.md §1: photo lists in four crops with
unsorted ``mixedSources``, the cache as a JSON *string* under one of three
layouts, an entry for another zpid, and carousels of other homes' photos,
agent headshots, a static map and a 91x31 badge on the same CDN.
"""

from __future__ import annotations

import hashlib
import html
import json
import random
from typing import Any

from phx_scraper.sandbox import dataset, paths
from phx_scraper.sandbox.model import Picture, Property, stable_int

PX_APP_ID = "PXHYx10rg3"
BADGE_ID = hashlib.md5(b"zillow-badge-armls").hexdigest()
BADGE_PATH = paths.zillow_photo_path(BADGE_ID, "p_a", "png")
_BUILD_ID = "hdp-2025.11.3-7c1f0a9"

PHOTO_LISTS: dict[str, tuple[str, ...]] = {
    "photos": tuple(f"cc_ft_{w}" for w in range(192, 1537, 192)),
    "responsivePhotos": ("cc_ft_384", "cc_ft_768", "cc_ft_960", "cc_ft_1152", "cc_ft_1536", "p_e"),
    "responsivePhotosOriginalRatio": (
        "uncropped_scaled_within_1344_1008",
        paths.ZILLOW_BEST,
        "d_d",
        "o_a",
    ),
    "originalPhotos": ("p_c", "p_e", "p_h", paths.ZILLOW_BEST),
}
_AGENTS = ("Dana Whitfield", "Marcus Ortega", "Priya Raman", "Tom Becker", "Elena Ruiz")
_BROKERS = ("HomeSmart", "Realty ONE Group", "My Home Group Real Estate", "eXp Realty")


def url(base: str, path: str) -> str:
    return base + path


def photo_entry(base: str, prop: Property, position: int, variants: tuple[str, ...]) -> dict:
    """One gallery photo: caption plus jpeg/webp sources, deliberately unsorted."""
    assert prop.zillow is not None
    picture = prop.zillow.gallery.pictures[position]
    if position in prop.zillow.lacks_uncropped:
        variants = tuple(v for v in variants if v != paths.ZILLOW_BEST)
    rng = random.Random(f"{picture.id}:{len(variants)}")
    order = list(variants)
    rng.shuffle(order)
    sources = {
        fmt: [
            {
                "url": url(base, paths.zillow_photo_path(picture.zillow_id, v, ext)),
                "width": paths.ZILLOW_VARIANTS[v].size(picture.native)[0],
            }
            for v in order
        ]
        for fmt, ext in (("jpeg", "jpg"), ("webp", "webp"))
    }
    return {"caption": picture.caption, "subjectType": None, "mixedSources": sources}


def _one_url(base: str, picture: Picture, variant: str) -> str:
    return url(base, paths.zillow_photo_path(picture.zillow_id, variant))


def agent(prop: Property) -> tuple[str, str, str]:
    n = stable_int(prop.key)
    name = _AGENTS[n % len(_AGENTS)]
    headshot = f"/h_n/IS{hashlib.md5(name.encode()).hexdigest()[:22]}.jpg"
    return name, _BROKERS[n % len(_BROKERS)], headshot


def static_map_url(base: str, prop: Property) -> str:
    return (
        f"{base}/maps/api/staticmap?center={prop.lat},{prop.lng}&zoom=17&size=640x400"
        f"&maptype=roadmap&markers={prop.lat},{prop.lng}&client=gme-zillow&signature=x1Yv"
    )


def mini_card(base: str, other: Property, count: int = 3) -> dict:
    assert other.zillow is not None
    pictures = other.zillow.gallery.pictures[:count]
    return {
        "zpid": other.zillow.zpid,
        "price": other.price,
        "address": _address(other),
        "hdpUrl": hdp_path(other),
        "miniCardPhotos": [{"url": _one_url(base, p, "p_c")} for p in pictures],
    }


def _address(prop: Property) -> dict[str, Any]:
    return {
        "streetAddress": prop.zillow_street,
        "city": prop.city,
        "state": "AZ",
        "zipcode": prop.zip,
        "neighborhood": None,
        "community": None,
        "subdivision": None,
    }


def hdp_path(prop: Property) -> str:
    assert prop.zillow is not None
    return f"/homedetails/{prop.zillow_slug}/{prop.zillow.zpid}_zpid/"


def home(base: str, prop: Property, contamination: bool = True) -> dict[str, Any]:
    """The ``property`` object of a home-details cache entry."""
    z = prop.zillow
    assert z is not None
    pictures = z.gallery.pictures
    name, broker, headshot = agent(prop)
    data: dict[str, Any] = {
        "zpid": z.zpid,
        "streetAddress": prop.zillow_street,
        "city": prop.city,
        "state": "AZ",
        "zipcode": prop.zip,
        "address": _address(prop),
        "latitude": prop.lat,
        "longitude": prop.lng,
        "price": prop.price if z.status != "OTHER" else None,
        "homeStatus": z.status,
        "homeType": "CONDO" if prop.unit else "SINGLE_FAMILY",
        "bedrooms": prop.beds,
        "bathrooms": prop.full_baths,
        "livingArea": prop.sqft,
        "yearBuilt": prop.year_built,
        "hdpUrl": hdp_path(prop),
        "mlsid": z.mls,
        "photoCount": len(pictures),
    }
    for list_name, variants in PHOTO_LISTS.items():
        data[list_name] = [photo_entry(base, prop, i, variants) for i in range(len(pictures))]
    first = pictures[0] if pictures else None
    data["hiResImageLink"] = _one_url(base, first, _first_variant(prop)) if first else None
    data["desktopWebHdpImageLink"] = _one_url(base, first, "p_f") if first else None
    data["mediumImageLink"] = _one_url(base, first, "cc_ft_960") if first else None
    data["attributionInfo"] = {
        "agentName": name,
        "agentPhoneNumber": "480-555-0142",
        "agentPhotoUrl": url(base, headshot),
        "brokerName": broker,
        "mlsId": z.mls,
        "mlsName": "ARMLS" if z.mls else None,
        "providerLogo": url(base, BADGE_PATH),
    }
    data["staticMap"] = {"sources": [{"url": static_map_url(base, prop), "width": 640}]}
    data["streetViewTileImageUrlMediumAddress"] = (
        f"{base}/maps/api/streetview?location={prop.lat},{prop.lng}&size=600x400&client=gme-zillow"
    )
    if contamination:
        others = [o for o in dataset.neighbours(prop.key) if o.zillow]
        data["nearbyHomes"] = [mini_card(base, o) for o in others[:2]]
        data["comps"] = [
            {**mini_card(base, o, 2), "hiResImageLink": _hires(base, o)} for o in others[1:3]
        ]
        data["similarHomes"] = {"homes": [_full_card(base, o, 4) for o in others[2:4]]}
        data["recommendedHomes"] = [_full_card(base, o, 2) for o in others[:1]]
    return data


def _first_variant(prop: Property) -> str:
    assert prop.zillow is not None
    return paths.ZILLOW_FALLBACK if 0 in prop.zillow.lacks_uncropped else paths.ZILLOW_BEST


def _hires(base: str, other: Property) -> str | None:
    assert other.zillow is not None
    pictures = other.zillow.gallery.pictures
    return _one_url(base, pictures[0], _first_variant(other)) if pictures else None


def _full_card(base: str, other: Property, count: int) -> dict[str, Any]:
    """A carousel card whose photos look exactly like gallery photos (a trap)."""
    assert other.zillow is not None
    n = min(count, len(other.zillow.gallery))
    return {
        "zpid": other.zillow.zpid,
        "hdpUrl": hdp_path(other),
        "address": _address(other),
        "photos": [photo_entry(base, other, i, PHOTO_LISTS["responsivePhotos"]) for i in range(n)],
    }


def cache(base: str, prop: Property, layout: str) -> dict[str, Any]:
    """Cache key -> entry; the home is under a query key, plus decoy entries."""
    z = prop.zillow
    assert z is not None
    zpid = z.zpid
    others = [o for o in dataset.neighbours(prop.key) if o.zillow]
    other = others[-1]
    assert other.zillow is not None
    if layout == "apollo":
        form = f'{{"zpid":{zpid},"platform":"desktop","isDoubleScroll":true}}'
        args = f'{{"zpid":{zpid},"contactFormRenderParameter":{form}}}'
        full_key = f"ForSaleDoubleScrollFullRenderQuery{args}"
        light_key = f'VariantQuery{{"zpid":{zpid},"altId":null}}'
    else:
        prefix = "ForSale" if z.status == "FOR_SALE" else "NotForSale"
        args = f'{{"zpid":{zpid},"altId":null,"deviceTypeV2":"WEB_DESKTOP"}}'
        query_key = f"{prefix}ShopperPlatformFullRenderQuery{args}"
        # Which key holds the full home varies between captures: support both.
        if stable_int(prop.key) % 2:
            full_key, light_key = query_key, f"Property:{zpid}"
        else:
            full_key, light_key = f"Property:{zpid}", query_key
    light = {k: v for k, v in home(base, prop, False).items() if k not in PHOTO_LISTS}
    entries: dict[str, Any] = {
        light_key: {"property": light},
        full_key: {"property": home(base, prop)},
        f"Property:{other.zillow.zpid}": {"property": home(base, other, contamination=False)},
        f'OtherListingsQuery{{"zpid":{zpid}}}': {
            "otherListings": {"listings": [_full_card(base, o, 3) for o in others[:2]]}
        },
        f'SearchPageStateQuery{{"regionId":{40326 + stable_int(prop.city) % 999}}}': {
            "searchResults": {
                "listResults": [
                    {
                        "zpid": str(o.zillow.zpid),
                        "detailUrl": url(base, hdp_path(o)),
                        "imgSrc": _one_url(base, o.zillow.gallery.pictures[0], "p_e"),
                        "carouselPhotos": [
                            {"url": _one_url(base, p, "p_e")} for p in o.zillow.gallery.pictures[:3]
                        ],
                    }
                    for o in others
                    if o.zillow and o.zillow.gallery.pictures
                ]
            }
        },
    }
    return entries


def _script_json(obj: Any) -> str:
    # Like Next.js: "<" escaped so the JSON can never close the script element.
    return json.dumps(obj, separators=(",", ":")).replace("<", "\\u003c")


def title(prop: Property) -> str:
    assert prop.zillow is not None
    mls = f" | MLS #{prop.zillow.mls}" if prop.zillow.mls else ""
    return f"{prop.zillow_address}{mls} | Zillow"


def detail_page(base: str, prop: Property) -> str:
    z = prop.zillow
    assert z is not None
    entries = cache(base, prop, z.layout)
    cache_string = json.dumps(entries, separators=(",", ":"))
    if z.layout == "apollo":
        data_script = (
            '<script id="hdpApolloPreloadedData" type="application/json">'
            + _script_json({"zpid": z.zpid, "apiCache": cache_string})
            + "</script>"
        )
    else:
        page_props: dict[str, Any] = {"componentProps": {"zpid": z.zpid, "pageType": "hdp"}}
        if z.layout == "component":
            page_props["componentProps"]["gdpClientCache"] = cache_string
        else:
            page_props["gdpClientCache"] = cache_string
        next_data = {
            "props": {"pageProps": page_props, "__N_SSP": True},
            "page": "/homedetails/[...slug]",
            "query": {"slug": [prop.zillow_slug, f"{z.zpid}_zpid"]},
            "buildId": _BUILD_ID,
            "isFallback": False,
            "gssp": True,
            "scriptLoader": [],
        }
        data_script = (
            '<script id="__NEXT_DATA__" type="application/json">'
            + _script_json(next_data)
            + "</script>"
        )
    name, broker, headshot = agent(prop)
    pictures = z.gallery.pictures
    gallery = "".join(
        f'<li><picture><source type="image/webp" srcset="{_srcset(base, p, "webp")}">'
        f'<img src="{_one_url(base, p, "cc_ft_960")}" alt="{html.escape(p.caption)}">'
        "</picture></li>"
        for p in pictures[:5]
    )
    nearby = "".join(
        f'<li><a href="{url(base, hdp_path(o))}">'
        f'<img src="{_one_url(base, o.zillow.gallery.pictures[0], "p_c")}" '
        f'alt="{html.escape(o.zillow_address)}"></a></li>'
        for o in dataset.neighbours(prop.key)
        if o.zillow and o.zillow.gallery.pictures
    )
    og = (
        f'<meta property="og:image" content="{_one_url(base, pictures[0], "p_f")}">'
        if pictures
        else ""
    )
    price = f"${prop.price:,}" if z.status != "OTHER" else "Off market"
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title(prop))}</title>
<meta name="description"
 content="{html.escape(prop.zillow_address)} is a {prop.beds} bed, {prop.full_baths} bath home.">
<meta property="og:title" content="{html.escape(prop.zillow_address)}">{og}
<link rel="canonical" href="{url(base, hdp_path(prop))}">
<script>window._pxAppId = '{PX_APP_ID}';window._pxJsClientSrc = '/{PX_APP_ID[2:]}/init.js';</script>
</head><body><div id="__next"><div class="layout-wrapper">
<section data-testid="media-stream"><ul class="media-stream">{gallery}</ul>
<button data-testid="gallery-see-all">See all {len(pictures)} photos</button></section>
<h1 class="Text-c11n-8-100-2__sc-aiai24-0">{html.escape(prop.zillow_address)}</h1>
<span data-testid="price">{price}</span>
<div data-testid="bed-bath-sqft-facts"><span>{prop.beds} beds</span>
 <span>{prop.full_baths} baths</span> <span>{prop.sqft:,} sqft</span></div>
<div data-testid="attribution-LISTING_AGENT">
<img src="{url(base, headshot)}" alt="{html.escape(name)}" width="60" height="60">
Listed by: {html.escape(name)}, {html.escape(broker)}
<img class="mls-logo" src="{url(base, BADGE_PATH)}" width="91" height="31" alt="ARMLS"></div>
<section id="nearby-homes"><h2>Nearby homes</h2><ul>{nearby}</ul></section>
<img src="{static_map_url(base, prop)}" alt="Map of {html.escape(prop.zillow_street)}"
 width="640" height="400">
</div></div>
{data_script}
</body></html>"""


def _srcset(base: str, picture: Picture, ext: str) -> str:
    return ", ".join(
        f"{url(base, paths.zillow_photo_path(picture.zillow_id, v, ext))} "
        f"{paths.ZILLOW_VARIANTS[v].size(picture.native)[0]}w"
        for v in ("cc_ft_384", "cc_ft_768", "cc_ft_960")
    )


def search_page(base: str, matches: list[Property], city: str | None) -> str:
    rows = [
        {
            "zpid": str(p.zillow.zpid),
            "detailUrl": url(base, hdp_path(p)),
            "address": p.zillow_address,
            "imgSrc": _one_url(base, p.zillow.gallery.pictures[0], "p_e")
            if p.zillow.gallery.pictures
            else None,
        }
        for p in matches
        if p.zillow
    ]
    cards = "".join(
        '<li><article data-test="property-card">'
        f'<a data-test="property-card-link" href="{r["detailUrl"]}">'
        f"<address>{html.escape(str(r['address']))}</address></a>"
        + (f'<img src="{r["imgSrc"]}" alt="">' if r["imgSrc"] else "")
        + "</article></li>"
        for r in rows
    )
    empty = (
        ""
        if rows
        else '<div class="zsg-content"><h2>No matching results</h2>'
        "<p>Try a different location.</p></div>"
    )
    place = f"{city} AZ " if city else ""
    next_data = {
        "props": {
            "pageProps": {
                "searchPageState": {
                    "cat1": {
                        "searchResults": {"listResults": rows, "mapResults": []},
                        "searchList": {"totalResultCount": len(rows)},
                    }
                }
            }
        },
        "page": "/homes/[...searchQueryState]",
        "buildId": _BUILD_ID,
    }
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>{html.escape(place)}Real Estate &amp; Homes For Sale | Zillow</title>
<script>window._pxAppId = '{PX_APP_ID}';</script></head>
<body><div id="__next"><div id="grid-search-results">
<h1>{html.escape(place)}Real Estate &amp; Homes For Sale</h1>
<span class="result-count">{len(rows)} results</span>
<ul class="photo-cards">{cards}</ul>{empty}</div></div>
<script id="__NEXT_DATA__" type="application/json">{_script_json(next_data)}</script>
</body></html>"""


def px_page(reference: str, challenge_js: str = "") -> str:
    """The PerimeterX / HUMAN block page; the captcha script is only named, never loaded."""
    app = PX_APP_ID
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Access to this page has been denied</title>
<style>html,body{{margin:0;padding:0;font-family:Helvetica,Arial,sans-serif}}
#px-captcha{{min-width:310px;display:inline-block}}</style>
</head><body>
<section class="center-wrapper"><div class="page-title-wrapper"><div class="page-title">
<h1>Please verify you are a human</h1></div></div>
<div class="content-wrapper"><div class="content"><div id="px-captcha-wrapper">
<div class="px-loader-wrapper"><div class="px-loader"></div></div>
<div id="px-captcha"><p>Press &amp; Hold</p></div></div>
<p>Press &amp; Hold to confirm you are<br>a human (and not a bot).</p>
<p class="reference">Reference ID {reference}</p></div></div></section>
<script>window._pxAppId = '{app}';window._pxJsClientSrc = '/{app[2:]}/init.js';
window._pxFirstPartyEnabled = true;window._pxVid = '';window._pxUuid = '{reference}';
window._pxHostUrl = '/{app[2:]}/xhr';window._pxreCaptchaTheme = 'light';
window._pxCaptchaSrc = 'https://captcha.px-cdn.net/{app}/captcha.js?a=c&m=0&u={reference}&v=&g=b';
window._pxCustomTexts = {{"btnText": "Press & Hold", "title": "Before we continue..."}};
</script>
{challenge_js}
</body></html>"""
