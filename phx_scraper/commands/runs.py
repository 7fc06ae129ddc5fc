"""``scrapy runs [--limit N] [--json]``: the recent crawls, one line each, newest first.

Reads ``<IMAGES_STORE>/runs/`` (see ``phx_scraper.store.history``). Files there
that are not run records are named on stderr and skipped. Exit status: 0, or 2
when there is no store at ``IMAGES_STORE`` or ``--limit`` is not positive.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy.commands import ScrapyCommand

from phx_scraper.store.history import RUNS_DIR, scan_runs, summarize

if TYPE_CHECKING:
    import argparse


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False

    def syntax(self) -> str:
        return "[--limit N] [--json]"

    def short_desc(self) -> str:
        return "List the recent crawls (run records under IMAGES_STORE/runs), newest first"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument(
            "--limit", type=int, default=20, metavar="N", help="show the N newest runs (20)"
        )
        parser.add_argument("--json", action="store_true", help="print the runs as JSON")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        root = Path(self.settings["IMAGES_STORE"]).resolve()
        if opts.limit < 1:
            print(f"error: --limit {opts.limit}: give a positive number", file=sys.stderr)
            self.exitcode = 2
            return
        if not root.is_dir():
            print(f"error: no store at {root} (IMAGES_STORE)", file=sys.stderr)
            self.exitcode = 2
            return
        scan = scan_runs(root)
        for problem in scan.corrupt:
            print(f"warning: {problem}", file=sys.stderr)
        runs = [summarize(run.record) | {"path": str(run.path)} for run in scan.runs]
        runs = runs[: opts.limit]
        if opts.json:
            print(json.dumps(runs, indent=1, sort_keys=True))
        elif not runs:
            print(f"No runs recorded in {root / RUNS_DIR}")
        else:
            print("\n".join(format_run(run) for run in runs))


def format_run(run: dict[str, Any]) -> str:
    """``1a2b3c4d  2026-11-25T10:00:00Z  zillow  finished  3 properties  photos …``."""
    if run["reconcile_failed"]:
        check = "store check failed"
    elif run["reconcile_errors"] is None:
        check = "store check -"
    else:
        check = (
            f"store check {run['reconcile_errors']} errors, {run['reconcile_warnings']} warnings"
        )
    return (
        f"{run['run_id']}  {run['finished_at'] or '-':<20}  {run['spider'] or '-':<12} "
        f"{run['finish_reason'] or '-':<10} {_dash(run['properties']):>4} properties  "
        f"photos {run['photos_stored']} stored, {run['photos_downloaded']} downloaded, "
        f"{run['photos_rejected']} rejected  blocks {run['blocks']}  {check}"
    )


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)
