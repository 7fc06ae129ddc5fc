"""``scrapy report [--run RUN_ID]``: write the store's report, ``<IMAGES_STORE>/report.html``.

A static page that opens from disk (see ``phx_scraper.store.report``). The
run section shows the newest run record, or ``--run``'s, whose copy
``runs/<run_id>.report.html`` is then written again too. Exit status: 0; 1
when ``--run`` names no run record; 2 when there is no manifest at
``IMAGES_STORE`` or it is unusable.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from scrapy.commands import ScrapyCommand

from phx_scraper.store.history import RUNS_DIR, scan_runs
from phx_scraper.store.manifest import MANIFEST_NAME, ManifestError
from phx_scraper.store.report import run_report_path, write_report

if TYPE_CHECKING:
    import argparse


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False

    def syntax(self) -> str:
        return "[--run RUN_ID]"

    def short_desc(self) -> str:
        return "Write the store's report (report.html): properties, photos, runs"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument(
            "--run",
            metavar="RUN_ID",
            help="show this run (default: the newest) and rewrite its runs/<run_id>.report.html",
        )

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        root = Path(self.settings["IMAGES_STORE"]).resolve()
        if not (root / MANIFEST_NAME).is_file():
            self.fail(f"no manifest at {root / MANIFEST_NAME} (IMAGES_STORE)", 2)
            return
        if opts.run and opts.run not in {run.run_id for run in scan_runs(root).runs}:
            self.fail(f"no run record {opts.run} in {root / RUNS_DIR}", 1)
            return
        try:
            path = write_report(root, opts.run)
        except (OSError, ManifestError) as exc:
            self.fail(str(exc), 2)
            return
        print(f"Report: {path.as_uri()}")
        if opts.run:
            print(f"Run report: {run_report_path(root, opts.run).as_uri()}")

    def fail(self, message: str, code: int) -> None:
        print(f"error: {message}", file=sys.stderr)
        self.exitcode = code
