"""``all``: every source for every address, concurrently, in one run."""

from __future__ import annotations

from typing import Any

from phx_scraper.sources import SOURCES, parse_sources
from phx_scraper.spiders.maricopa import MaricopaSpider
from phx_scraper.spiders.phoenix_mls import PhoenixMlsSpider
from phx_scraper.spiders.redfin import RedfinSpider
from phx_scraper.spiders.zillow import ZillowSpider


class AllSpider(ZillowSpider, RedfinSpider, MaricopaSpider, PhoenixMlsSpider):
    """All four sources at once: one crawl, one run_id, one manifest update.

    ``-a sources=zillow,redfin`` chooses a subset.
    """

    name = "all"
    sources = tuple(SOURCES)

    def __init__(self, *args: Any, sources: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if sources is not None:
            self.sources = parse_sources(sources)
            self.arguments["sources"] = sources
