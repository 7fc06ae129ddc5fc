"""``scrapy crawl`` with the spider arguments checked before anything starts.

Bad input (a missing or malformed address CSV, a bad flag) is one line on
stderr and exit status 2 — no reactor, no request, nothing in the store touched.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from scrapy.commands.crawl import Command as ScrapyCrawlCommand

from phx_scraper.addresses import AddressInputError, load_from_args
from phx_scraper.browser import BrowserNotFound
from phx_scraper.sources import parse_sources
from phx_scraper.spiders.base import parse_flag

if TYPE_CHECKING:
    import argparse


class Command(ScrapyCrawlCommand):
    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        spargs = opts.spargs
        try:
            load_from_args(spargs.get("addresses"), spargs.get("address"))
            parse_flag("force", spargs.get("force"))
            if "sources" in spargs:
                parse_sources(spargs["sources"])
            super().run(args, opts)
        except (AddressInputError, ValueError, BrowserNotFound) as exc:
            print(f"error: {exc}", file=sys.stderr)
            self.exitcode = 2
