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
from phx_scraper.spiders.base import PropertySpider

logger = logging.getLogger(__name__)

SOURCE = "phoenix_mls"
SEARCH_INPUT = 'input[placeholder="Enter an Address, City, Zip or MLS#"]'
SUGGESTION = "div[role=tree] div[role=treeitem]"
NO_MATCHES = "0 matches found"
PHOTO_BUTTON = "[data-open-gallery]"
MODAL_PHOTO = "[role=dialog] img"
SUGGESTION_TEXT = re.compile(r"^(?P<address>.+?)\s*/\s*(?P<mls>\d{7})\s*\(MLS #\)")
SPARK_PHOTO = re.compile(
    r"(?P<prefix>https?://[^\"'\s]+/az/)(?:\d+x\d+/true/)?(?P<id>\d{26})-[tmlo]\.jpg"
)
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


def gallery(response: Response) -> list[Photo]:
    """Every photo on the page, modal first, as originals, deduplicated by Spark id."""
    urls = response.css(f"{MODAL_PHOTO}::attr(src), {MODAL_PHOTO}::attr(data-src)").getall()
    urls += response.css("img::attr(src), img::attr(data-src), a::attr(href)").getall()
    photos: list[Photo] = []
    seen: set[str] = set()
    for url in urls:
        match = SPARK_PHOTO.search(response.urljoin(url))
        if not match or match["id"] in seen:
            continue
        seen.add(match["id"])
        photos.append(
            Photo(
                photo_id=match["id"],
                url=f"{match['prefix']}{match['id']}-o.jpg",
                position=len(photos),
                caption="",
                listing_id=None,
            )
        )
    return photos


def facts(response: Response) -> dict[str, str]:
    """The labelled facts ("# Bedrooms", "Year Built"...) from the page text."""
    lines = [" ".join(t.split()) for t in response.css("body *::text").getall()]
    lines = [line for line in lines if line]
    found: dict[str, str] = {}
    for index, line in enumerate(lines):
        label = line.rstrip(":").strip()
        if label in FACT_LABELS and index + 1 < len(lines):
            found.setdefault(FACT_LABELS[label], lines[index + 1])
    return found


def listing_status(response: Response) -> str:
    text = " ".join(response.css("[data-listing-status]::text, .listing-status::text").getall())
    return " ".join(text.split()).lower()


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
            playwright_page_methods=[
                PageMethod("wait_for_selector", SEARCH_INPUT),
                PageMethod("type", SEARCH_INPUT, query, delay=5),
                PageMethod(
                    "wait_for_selector", f"{SUGGESTION}, :text('{NO_MATCHES}')", timeout=15000
                ),
            ],
        )

    def phoenix_mls_search(self, response: Response) -> Iterable[Any]:
        source, address = self.target(response)
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
            playwright_page_methods=[
                PageMethod("wait_for_selector", PHOTO_BUTTON),
                PageMethod("click", PHOTO_BUTTON),
                PageMethod("wait_for_selector", MODAL_PHOTO),
            ],
            mls={"candidates": candidates, "visited": visited},
        )

    def phoenix_mls_detail(self, response: Response) -> Iterable[Any]:
        source, address = self.target(response)
        state = response.meta["mls"]
        _, mls = state["candidates"][0]
        listing = {
            "mls": mls,
            "status": listing_status(response),
            "photos": gallery(response),
            "facts": facts(response),
        }
        visited = [*state["visited"], listing]
        rest = state["candidates"][1:]
        if listing["status"] != "active" and rest:
            yield self.phoenix_mls_detail_request(address, rest, visited)
            return
        best = min(visited, key=lambda v: STATUS_RANK.get(v["status"], 9))
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
