"""``scrapy demo``: crawl the bundled replica of the sources into ./phx-demo/.

Built like ``scrapy bench``: the replica runs in a subprocess that prints its
URLs on its first line; the crawl runs here; the replica is stopped after.
Run it twice to see the second crawl download nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from phx_scraper.extensions.manifest import RUNS_DIR, format_summary
from phx_scraper.sandbox.process import Sandbox
from phx_scraper.store.report import REPORT_NAME

if TYPE_CHECKING:
    import argparse

DEMO_DIR = Path("phx-demo")
# The replica answers at once: no need for the live sites' politeness here.
DEMO_SETTINGS: dict[str, Any] = {
    "IMAGES_STORE": str(DEMO_DIR / "store"),
    "LOG_FILE": str(DEMO_DIR / "crawl.log"),
    "LOG_FILE_APPEND": False,
    "LOG_LEVEL": "INFO",
    "DOWNLOAD_DELAY": 0,
    "AUTOTHROTTLE_ENABLED": False,
    "CONCURRENT_REQUESTS_PER_DOMAIN": 8,
}


# The replica's photo URLs include its port: a fixed one lets a second demo find
# every photo in the URL index (and download nothing). Any free port if taken.
DEMO_PORT = 18642


@contextmanager
def start_replica() -> Iterator[Sandbox]:
    sandbox = Sandbox(port=DEMO_PORT)
    try:
        sandbox.start()
    except Exception:  # the port is taken: any port will do, at the cost of re-downloads
        sandbox.close()
        sandbox = Sandbox()
        sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.close()


# Above the project's settings.py (20), below ``-s`` on the command line (40):
# a command's own default_settings rank below settings.py and would lose.
DEMO_PRIORITY = 25


class Command(ScrapyCommand):
    requires_project = True

    def short_desc(self) -> str:
        return "Crawl the bundled replica of the four sources into ./phx-demo/"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument(
            "--spider", default="all", help="spider to run against the replica (default: all)"
        )

    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        assert self.settings is not None
        self.settings.setdict(DEMO_SETTINGS, priority=DEMO_PRIORITY)
        # Before Scrapy opens LOG_FILE, which lives in it.
        DEMO_DIR.mkdir(exist_ok=True)

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.crawler_process and self.settings is not None
        addresses = DEMO_DIR / "addresses.csv"
        demo_csv = resources.files("phx_scraper.sandbox") / "demo_addresses.csv"
        addresses.write_bytes(demo_csv.read_bytes())
        with start_replica() as sandbox:
            self.settings.setdict(sandbox.settings(), priority=DEMO_PRIORITY)
            live = [n for n in sandbox.settings() if not self.settings[n].startswith("http://127.")]
            if live:
                raise UsageError(f"the demo only crawls the replica; {', '.join(live)} overridden")
            os.environ["PHX_MARICOPA_TOKEN"] = sandbox.token
            crawler = self.crawler_process.create_crawler(opts.spider)
            self.crawler_process.crawl(crawler, addresses=str(addresses))
            self.crawler_process.start()
        run_id = getattr(crawler.spider, "run_id", None)
        store = Path(self.settings["IMAGES_STORE"])
        summary_path = store / RUNS_DIR / f"{run_id}.json"
        if not summary_path.exists():
            print(f"The demo crawl did not finish; see {self.settings['LOG_FILE']}")
            self.exitcode = 1
            return
        summary = json.loads(summary_path.read_text())
        print(format_summary(summary))
        print()
        print(f"Store:     {store.resolve()}/")
        print(f"Manifest:  {(store / 'manifest.json').resolve()}")
        print(f"Report:    {(store / REPORT_NAME).resolve().as_uri()}  (open it in a browser)")
        print(f"Run:       {summary_path.resolve()}")
        print(f"Log:       {Path(self.settings['LOG_FILE']).resolve()}")
        print(f"Addresses: {addresses.resolve()}")
