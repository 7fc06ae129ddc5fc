"""Phoenix MLS (phoenixmlssearch.com, a flexmls IDX site): a JavaScript site, read in Chromium.

Steps (setting ``PHX_MLS_BASE_URL``), each a page rendered by scrapy-playwright:

- ``/simple-search/``: type the address into the search box and read the
  ``div[role=tree] div[role=treeitem]`` suggestions
  (``"<address> / <MLS#> (MLS #)"``); "0 matches found" means no match;
- ``/mls/<ADDRESS-SLUG>-mls_<MLS#>/``: open the photo modal, which builds the
  whole gallery; collect every ``sparkplatform`` photo, rewrite the
  ``-t``/``-m``/``-l`` sizes to the original ``-o``, dedupe by photo id;
  read the labelled facts. With several MLS numbers for one address (a
  relisting), the active listing wins and the others are recorded.

Page actions are ``PageMethod`` objects with plain arguments (no lambdas) so
the requests survive a JOBDIR. Images are downloaded over plain HTTP.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from scrapy.http import Response
from scrapy_playwright.page import PageMethod

from phx_scraper.addresses import Address, AddressError, canonicalize
from phx_scraper.items import Photo
from phx_scraper.spiders.base import PropertySpider, number

logger = logging.getLogger(__name__)

SOURCE = "phoenix_mls"
SEARCH_INPUT = 'input[placeholder="Enter an Address, City, Zip or MLS#"]'
SUGGESTION = "div[role=tree] div[role=treeitem]"
NO_MATCHES = "0 matches found"
# The listing page: the photo button opens a modal that the page's script
# fills from an AJAX call; ``data-loaded`` says the gallery is complete.
PHOTO_BUTTON = "#fmc-open-photos"
MODAL = "#fmc-photo-modal"
MODAL_LOADED = '#fmc-photo-modal[data-loaded="true"]'
PAGE_PHOTOS = "#fmc-photos img"
FACTS = ".flexmls_connect__ld_property_detail li"
STATUS = ".flexmls_connect__ld_status span::text"
OPEN_PHOTOS_JS = f"document.querySelector('{PHOTO_BUTTON}')?.click()"
SUGGESTION_TEXT = re.compile(r"^(?P<address>.+?)\s*/\s*(?P<mls>\d{7})\s*\(MLS #\)")
SPARK_PHOTO = re.compile(r"^(?P<prefix>[^?#]+/az/)(?:\d+x\d+/true/)?(?P<id>\d{26})-[tmlo]\.jpg")
FACT_LABELS = {
    "# Bedrooms": "beds",
    "Full Bathrooms": "full_baths",
    "Approx SQFT": "approx_sqft",
    "Approx Lot SqFt": "lot_sqft",
    "Garage Spaces": "garage_spaces",
    "Sewer": "sewer",
    "Year Built": "year_built",
    "Association Fee Incl": "association_fee_incl",
}
STATUS_RANK = {"active": 0, "coming soon": 1, "pending": 2, "under contract": 2}


def suggestions(response: Response) -> list[tuple[str, str]]:
    """``(address text, MLS#)`` of every autocomplete suggestion on the page."""
    found = []
    for item in response.css(SUGGESTION):
        text = " ".join(" ".join(item.css("::text").getall()).split())
        match = SUGGESTION_TEXT.match(text)
        if match:
            found.append((match["address"], match["mls"]))
    return found


def listing_slug(address_text: str, mls: str) -> str:
    """``/mls/5219-W-EL-CAMINITO-Drive-Glendale-AZ-85302-mls_6937912/``."""
    words = address_text.replace(",", "").split()
    return f"/mls/{'-'.join(words)}-mls_{mls}/"


def gallery(response: Response, mls: str) -> list[Photo]:
    """This listing's photos — the modal's gallery, then the page's own thumbnails —
    as originals, deduplicated by Spark id. "Similar listings" are other homes."""
    images = response.css(f"{MODAL} img") + response.css(PAGE_PHOTOS)
    photos: list[Photo] = []
    seen: set[str] = set()
    for image in images:
        url = image.attrib.get("src") or image.attrib.get("data-src") or ""
        match = SPARK_PHOTO.search(response.urljoin(url))
        if not match or match["id"] in seen:
            continue
        seen.add(match["id"])
        photos.append(
            Photo(
                photo_id=match["id"],
                url=f"{match['prefix']}{match['id']}-o.jpg",
                position=len(photos),
                caption=image.attrib.get("alt") or "",
                listing_id=mls,
            )
        )
    return photos


def facts(response: Response) -> dict[str, Any]:
    """The labelled facts ("# Bedrooms: 4", "Year Built: 1995"...) of the listing."""
    found: dict[str, Any] = {}
    for row in response.css(FACTS):
        text = " ".join(" ".join(row.css("::text").getall()).split())
        label, _, value = text.partition(":")
        if label.strip() in FACT_LABELS:
            found[FACT_LABELS[label.strip()]] = number(value.strip())
    return found


def listing_status(response: Response) -> str:
    return " ".join(" ".join(response.css(STATUS).getall()).split()).lower()


class PhoenixMlsSpider(PropertySpider):
    """Phoenix MLS (phoenixmlssearch.com IDX): every original photo, in a real browser."""

    name = "phoenix_mls"
    sources: tuple[str, ...] = (SOURCE,)

    def phoenix_mls_start(self, address: Address) -> Iterable[Any]:
        url = f"{self.setting('PHX_MLS_BASE_URL')}/simple-search/"
        query = f"{address.street_line}, {address.city}, {address.state} {address.zip}"
        yield self.request(
            url,
            SOURCE,
            address,
            self.phoenix_mls_search,
            playwright=True,
            # The WAF answers the first navigation with a 403 challenge that
            # the browser solves by reloading; the page methods wait for the
            # real page, and the callback checks what was rendered.
            handle_httpstatus_list=[403],
            playwright_page_methods=[
                PageMethod("wait_for_selector", SEARCH_INPUT),
                # fill: the whole address in one input event, so the widget asks
                # once; typing key by key can show "0 matches found" for a prefix.
                PageMethod("fill", SEARCH_INPUT, query),
                PageMethod(
                    "wait_for_selector", f"{SUGGESTION}, :text('{NO_MATCHES}')", timeout=15000
                ),
            ],
        )

    def phoenix_mls_search(self, response: Response) -> Iterable[Any]:
        source, address = self.target(response)
        if kind := self.block_kind(response, SEARCH_INPUT):
            yield self.outcome(source, address, "blocked", reason=kind)
            return
        candidates = []
        for text, mls in suggestions(response):
            try:
                found = canonicalize(text)
            except AddressError:
                continue
            if found.canonical == address.canonical:
                candidates.append((text, mls))
        if not candidates:
            yield self.outcome(source, address, "no_match", reason="0 matches found")
            return
        # The newest listing first: relistings get higher MLS numbers.
        candidates.sort(key=lambda c: c[1], reverse=True)
        yield self.phoenix_mls_detail_request(address, candidates, visited=[])

    def phoenix_mls_detail_request(
        self, address: Address, candidates: list[tuple[str, str]], visited: list[dict[str, Any]]
    ) -> Any:
        text, mls = candidates[0]
        return self.request(
            f"{self.setting('PHX_MLS_BASE_URL')}{listing_slug(text, mls)}",
            SOURCE,
            address,
            self.phoenix_mls_detail,
            playwright=True,
            # The WAF answers the first navigation with a 403 challenge that
            # the browser solves by reloading; the page methods wait for the
            # real page, and the callback checks what was rendered.
            handle_httpstatus_list=[403],
            playwright_page_methods=[
                PageMethod("wait_for_selector", f"{PHOTO_BUTTON}, :text('{NO_MATCHES}')"),
                # A closed listing has no photo button: click only when there is one.
                PageMethod("evaluate", OPEN_PHOTOS_JS),
                PageMethod("wait_for_selector", f"{MODAL_LOADED}, :text('{NO_MATCHES}')"),
            ],
            mls={"candidates": candidates, "visited": visited},
            # Only the first visit is the pair's: later ones follow relistings.
            deltafetch_key=None if visited else f"{SOURCE}:{mls}",
        )

    def phoenix_mls_detail(self, response: Response) -> Iterable[Any]:
        source, address = self.target(response)
        if kind := self.block_kind(response, f"{PHOTO_BUTTON}, .flexmls_connect__no_results"):
            yield self.outcome(source, address, "blocked", reason=kind)
            return
        state = response.meta["mls"]
        _, mls = state["candidates"][0]
        if NO_MATCHES in response.text and not response.css(PHOTO_BUTTON):
            status = "closed"  # sold or withdrawn: the site shows no listing
        else:
            status = listing_status(response)
        listing = {
            "mls": mls,
            "status": status,
            "photos": gallery(response, mls),
            "facts": facts(response),
        }
        visited = [*state["visited"], listing]
        rest = state["candidates"][1:]
        if listing["status"] != "active" and rest:
            yield self.phoenix_mls_detail_request(address, rest, visited)
            return
        live = [v for v in visited if v["status"] != "closed"]
        if not live:
            yield self.outcome(source, address, "no_match", reason="0 matches found")
            return
        best = min(live, key=lambda v: STATUS_RANK.get(v["status"], 9))
        others = [v["mls"] for v in visited if v is not best] + [c[1] for c in rest]
        yield self.outcome(
            source,
            address,
            "ok",
            source_id=best["mls"],
            ids={"status": best["status"], "other_mls_numbers": others},
            photos=best["photos"],
            facts=best["facts"],
        )
