"""``scrapy reconcile [--repair] [--json]``: check the store against its manifest.

Read-only unless ``--repair`` (see ``phx_scraper.store.reconcile``). Exit
status: 0 when no error remains (warnings allowed), 1 when errors remain,
2 when there is no store at ``IMAGES_STORE`` or its manifest is unusable.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

from scrapy.commands import ScrapyCommand

from phx_scraper.store.locks import LockError, configure, store_lock
from phx_scraper.store.manifest import ManifestError
from phx_scraper.store.reconcile import (
    Issue,
    Report,
    StoreNotFound,
    reconcile,
    reconcile_report,
)

if TYPE_CHECKING:
    import argparse


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False

    def syntax(self) -> str:
        return "[--repair] [--json]"

    def short_desc(self) -> str:
        return "Check the store against its manifest (missing, corrupt, unreferenced files)"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument(
            "--repair",
            action="store_true",
            help="quarantine corrupt files and mark lost images missing so the next crawl "
            "fetches them again (orphans and temp files are left alone)",
        )
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        root = Path(self.settings["IMAGES_STORE"]).resolve()
        try:
            configure(self.settings)
            # Repair changes the store: no crawl may run meanwhile (a check may).
            hold = store_lock(root, exclusive=True) if opts.repair else nullcontext()
            with hold:
                report = reconcile(root, repair=opts.repair)
        except (StoreNotFound, ManifestError, LockError, ValueError, sqlite3.Error) as exc:
            print(f"error: {exc}", file=sys.stderr)
            self.exitcode = 2
            return
        data = report.to_dict()
        if report.repaired:
            # What repair changed is kept, like a crawl's run record.
            data["report_path"] = str(reconcile_report(root, secrets.token_hex(4), report))
        if opts.json:
            print(json.dumps(data, indent=1, sort_keys=True))
        else:
            print(format_report(report))
            if "report_path" in data:
                print(f"Report: {data['report_path']}")
        self.exitcode = report.exit_code


def format_report(report: Report) -> str:
    summary = report.summary()
    lines = [
        f"Store {report.root}: {_count(summary['errors'], 'error')}, "
        f"{_count(summary['warnings'], 'warning')}; "
        f"{_count(report.files_checked, 'file')} re-hashed ({report.bytes_checked} bytes)"
    ]
    lines += _issues("ERROR", report.errors)
    lines += _issues("WARNING", report.warnings)
    lines += _issues("INFO", report.pending)
    for title, paths in (
        ("temp files (a write in progress or interrupted; not orphans)", report.temp_files),
        ("stray files (not content names; left alone)", report.stray_files),
    ):
        if paths:
            lines.append(f"{title}: {len(paths)}")
            lines += [f"  {path}" for path in paths]
    if report.repaired:
        lines.append("repaired:")
        lines += [f"  {r.action:<18} {r.path}  {r.detail}" for r in report.repaired]
    if report.quality:
        lines.append(
            "quality (0-1; mean of completeness, resolution >= 1024 px, source coverage, "
            "1 - rejected share):"
        )
        for key, q in sorted(report.quality.items()):
            lines.append(
                f"  {key}  {q.score:.3f}  completeness {_num(q.completeness)}  "
                f"resolution {_num(q.resolution)}  coverage {_num(q.coverage)}  "
                f"rejected {_num(q.rejected_share)}  ({q.images} images, {q.rejected} rejected)"
            )
    verdict = "errors remain" if report.errors else "no errors"
    lines.append(f"Result: {verdict} (exit {report.exit_code})")
    return "\n".join(lines)


def _issues(severity: str, issues: list[Issue]) -> list[str]:
    return [f"{severity:<8} {issue.kind:<13} {issue.message}" for issue in issues]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
