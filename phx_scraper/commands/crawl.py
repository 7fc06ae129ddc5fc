"""``scrapy crawl`` with the spider arguments checked before anything starts.

Bad input (a missing or malformed address CSV, a bad flag, an unknown source)
is one line on stderr and exit status 2 — checked in ``process_options``,
before Scrapy starts logging or builds a crawler: no request is sent and
nothing in the store is touched.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from scrapy.commands.crawl import Command as ScrapyCrawlCommand

from phx_scraper.addresses import AddressInputError, load_from_args
from phx_scraper.browser import BrowserNotFound
from phx_scraper.jobdir import DamagedJobdir, check_jobdir
from phx_scraper.sources import parse_sources
from phx_scraper.spiders.base import RUN_ID, parse_days, parse_flag
from phx_scraper.store.locks import parse_lease
from phx_scraper.store.quota import parse_quota

if TYPE_CHECKING:
    import argparse


class Command(ScrapyCrawlCommand):
    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        spargs = opts.spargs
        try:
            load_from_args(spargs.get("addresses"), spargs.get("address"))
            parse_flag("force", spargs.get("force"))
            parse_days(spargs.get("refresh_days"))
            run_id = spargs.get("run_id")
            if run_id is not None and not RUN_ID.fullmatch(run_id):
                raise ValueError(f"-a run_id={run_id!r}: expected 8 hex characters")
            if self.settings is not None:
                parse_quota(self.settings.get("PHX_STORE_QUOTA"))
                parse_lease(self.settings.get("PHX_LOCK_LEASE"))
                if warning := check_jobdir(self.settings.get("JOBDIR")):
                    print(f"warning: {warning}", file=sys.stderr)
            if "sources" in spargs:
                parse_sources(spargs["sources"])
        except (AddressInputError, ValueError, DamagedJobdir) as exc:
            fail(exc)

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        try:
            super().run(args, opts)
        except BrowserNotFound as exc:
            fail(exc)


def fail(exc: Exception) -> None:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
