"""``scrapy cleanup``: print what may go from the store; delete it only with ``--apply``.

See ``phx_scraper.store.cleanup`` for what each option selects and how a plan
is carried out. ``--apply`` takes the store lock exclusively (waiting up to
``--wait`` seconds for running crawls), makes the plan under it and applies
it; without ``--apply`` nothing is locked or written. Settings:
``IMAGES_STORE`` (the store), ``PHX_CLEANUP_GRACE_DAYS`` (age before an
orphan or temp file may go, default 14), ``PHX_STORE_QUOTA`` (for
``--to-quota``).

Exit status: 0; 1 when ``--apply`` refuses a plan that drops every property
(``--allow-empty`` to do it anyway); 2, with one line, for bad input, no
store at ``IMAGES_STORE``, an unusable manifest, or a store still locked after
``--wait``.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy.commands import ScrapyCommand

from phx_scraper.addresses import AddressInputError, load_csv
from phx_scraper.store.cleanup import (
    DEFAULT_GRACE_DAYS,
    CleanupRefused,
    Options,
    Plan,
    Result,
    apply,
    check_store,
    plan,
)
from phx_scraper.store.locks import LockError, configure, store_lock
from phx_scraper.store.manifest import ManifestError
from phx_scraper.store.quota import QUOTA_SETTING, format_size, parse_quota
from phx_scraper.store.reconcile import StoreNotFound

if TYPE_CHECKING:
    import argparse

DEFAULT_WAIT = 10.0
_CHOICES = (
    "--orphans, --temp, --properties-not-seen DAYS, --not-in FILE.csv, --keep-runs N, "
    "--quarantine-older-than DAYS or --to-quota"
)


class BadInput(Exception):
    """An option or setting that cannot be used; the message is the one line shown."""


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False

    def syntax(self) -> str:
        return (
            "[--orphans] [--temp] [--properties-not-seen DAYS] [--not-in FILE.csv] "
            "[--keep-runs N] [--quarantine-older-than DAYS] [--to-quota] [--apply] "
            "[--allow-empty] [--wait SECONDS] [--json]"
        )

    def short_desc(self) -> str:
        return "Plan (and with --apply, carry out) removing orphans, old runs and properties"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        add = parser.add_argument
        add(
            "--orphans",
            action="store_true",
            help="files no manifest entry names, past the grace period (PHX_CLEANUP_GRACE_DAYS)",
        )
        add("--temp", action="store_true", help="leftover .tmp-* files, past the grace period")
        add(
            "--properties-not-seen",
            metavar="DAYS",
            help="drop properties no source has reported on for DAYS days",
        )
        add("--not-in", metavar="FILE.csv", help="drop properties whose address is not in FILE")
        add("--keep-runs", metavar="N", help="keep the newest N run records and reports")
        add("--quarantine-older-than", metavar="DAYS", help="quarantined files older than DAYS")
        add(
            "--to-quota",
            action="store_true",
            help=f"drop the oldest-unseen properties until the store fits {QUOTA_SETTING}",
        )
        add("--apply", action="store_true", help="delete what the plan lists")
        add("--allow-empty", action="store_true", help="allow a plan that drops every property")
        add(
            "--wait",
            metavar="SECONDS",
            default=str(DEFAULT_WAIT),
            help=f"with --apply, wait this long for running crawls ({DEFAULT_WAIT:.0f})",
        )
        add("--json", action="store_true", help="print the plan (and result) as JSON")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        root = Path(self.settings["IMAGES_STORE"]).resolve()
        now = time.time()
        try:
            if args:
                raise BadInput(f"unexpected argument {args[0]!r}")
            options = self.options(opts)
            wait = _number(opts.wait, "--wait")
            configure(self.settings)
            check_store(root)
            result: Result | None = None
            refused: str | None = None
            if opts.apply:
                with store_lock(root, exclusive=True, timeout=wait):
                    made = plan(root, options, now)
                    try:
                        result = apply(root, made, allow_empty=opts.allow_empty)
                    except CleanupRefused as exc:
                        refused = f"{exc}; add --allow-empty to do it anyway"
            else:
                made = plan(root, options, now)
        except (BadInput, StoreNotFound, ManifestError, LockError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            self.exitcode = 2
            return
        if opts.json:
            data: dict[str, Any] = {
                "plan": made.to_dict(),
                "applied": result is not None,
                "result": result.to_dict() if result else None,
                "refused": refused,
            }
            print(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False))
        else:
            print(format_plan(made))
            print(format_outcome(made, result, refused))
        self.exitcode = 1 if refused else 0

    def options(self, opts: argparse.Namespace) -> Options:
        assert self.settings is not None
        chosen = [
            opts.orphans,
            opts.temp,
            opts.properties_not_seen,
            opts.not_in,
            opts.keep_runs,
            opts.quarantine_older_than,
            opts.to_quota,
        ]
        if not any(v not in (None, False) for v in chosen):
            raise BadInput(f"nothing to clean: choose {_CHOICES}")
        try:
            grace = self.settings.getfloat("PHX_CLEANUP_GRACE_DAYS", DEFAULT_GRACE_DAYS)
        except ValueError as exc:
            raise BadInput(f"PHX_CLEANUP_GRACE_DAYS: {exc}") from None
        if grace < 0:
            raise BadInput(f"PHX_CLEANUP_GRACE_DAYS: {grace:g} is negative")
        keep_only, keep_source = None, "the address list"
        if opts.not_in is not None:
            try:
                batch = load_csv(opts.not_in)
            except AddressInputError as exc:
                more = f" (and {len(exc.lines) - 1} more)" if len(exc.lines) > 1 else ""
                raise BadInput(f"--not-in {exc.lines[0]}{more}") from None
            for warning in batch.warnings:
                print(f"warning: {warning}", file=sys.stderr)
            keep_only = frozenset(address.property_hash for address in batch.addresses)
            keep_source = batch.source
        quota = None
        if opts.to_quota:
            try:
                quota = parse_quota(self.settings.get(QUOTA_SETTING))
            except ValueError as exc:
                raise BadInput(str(exc)) from None
            if quota is None:
                raise BadInput(f"--to-quota needs a quota: set {QUOTA_SETTING} (e.g. 20GB)")
        keep_runs = None
        if opts.keep_runs is not None:
            keep_runs = _count(opts.keep_runs, "--keep-runs")
        return Options(
            orphans=opts.orphans,
            temp=opts.temp,
            grace_days=grace,
            not_seen_days=_days(opts.properties_not_seen, "--properties-not-seen"),
            keep_only=keep_only,
            keep_only_source=keep_source,
            keep_runs=keep_runs,
            quarantine_days=_days(opts.quarantine_older_than, "--quarantine-older-than"),
            quota=quota,
        )


def _number(text: str, option: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadInput(f"{option} {text!r}: not a number") from None
    if not value >= 0:
        raise BadInput(f"{option} {text}: give a number of 0 or more")
    return value


def _days(text: str | None, option: str) -> float | None:
    return None if text is None else _number(text, option)


def _count(text: str, option: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadInput(f"{option} {text!r}: not a whole number") from None
    if value < 1:
        raise BadInput(
            f"{option} {text}: keep at least 1 (the run history is bounded by PHX_RUNS_KEEP)"
        )
    return value


def format_plan(made: Plan) -> str:
    when = datetime.fromtimestamp(made.now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [f"Cleanup plan for {made.root} at {when} (grace {made.options.grace_days:g} days)"]
    if made.drops:
        lines.append(
            f"properties dropped from the manifest: {len(made.drops)} of {made.properties}"
        )
        for drop in made.drops:
            shared = f", {drop.shared} shared with a kept property stay" if drop.shared else ""
            lines.append(
                f"  {drop.property_hash}  {drop.canonical_address}  {drop.detail}; "
                f"{_plural(drop.images, 'image')}{shared}"
            )
    if made.items:
        lines.append(f"files to delete: {len(made.items)}")
        lines += [
            f"  {item.reason:<15} {format_size(item.bytes):>9}  {item.path}  {item.detail}"
            for item in made.items
        ]
    if not made.items and not made.drops:
        lines.append("nothing to clean")
    else:
        lines.append("totals:")
        for reason, total in made.totals().items():
            files = _plural(total["files"], "file")
            lines.append(f"  {reason:<15} {files:>12} {format_size(total['bytes']):>9}")
        files = _plural(len(made.items), "file")
        lines.append(
            f"  {'freed':<15} {files:>12} {format_size(made.bytes_freed):>9}"
            f" ({made.bytes_freed} bytes)"
        )
    if made.options.quota is not None and made.used is not None:
        after = made.used_after or 0
        over = after - made.options.quota
        lines.append(
            f"quota {format_size(made.options.quota)}: used {format_size(made.used)}, "
            f"after the plan {format_size(after)}"
            + (f"; still {format_size(over)} over" if over > 0 else "")
        )
    if made.empties_store:
        lines.append(
            f"this plan drops every property ({made.properties}); --apply refuses it "
            "without --allow-empty"
        )
    return "\n".join(lines)


def format_outcome(made: Plan, result: Result | None, refused: str | None) -> str:
    if refused:
        return f"refused: {refused}"
    if result is None:
        if not made.items and not made.drops:
            return "nothing deleted (dry run)"
        return "nothing deleted (dry run); add --apply"
    lines = [
        f"deleted {_plural(len(result.deleted), 'file')} ({format_size(result.bytes_freed)}), "
        f"dropped {_plural(len(result.dropped), 'property', 'properties')} from the manifest "
        f"and {_plural(result.index_rows, 'URL-index row')}"
    ]
    lines += [f"  skipped {item.path}: {why}" for item, why in result.skipped]
    return "\n".join(lines)


def _plural(n: int, noun: str, nouns: str = "") -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {nouns or noun + 's'}"
