"""Writes the manifest and the run summary when the spider closes.

Items reach this extension through ``item_scraped``, i.e. after the images
pipeline stored their files, so the manifest never names a file that is not
durable on disk.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy import Spider, signals
from scrapy.utils.defer import deferred_from_coro

from phx_scraper.items import PropertyImagesItem
from phx_scraper.store import history, locks
from phx_scraper.store import manifest as manifest_store
from phx_scraper.store.locks import LockError, store_lock
from phx_scraper.store.neardup import Thresholds
from phx_scraper.store.quota import format_size
from phx_scraper.store.reconcile import log_report, reconcile, reconcile_report
from phx_scraper.store.report import write_report
from phx_scraper.store.urlindex import paths_fetched_since

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

RUNS_DIR = "runs"

#: Rejections that say the store had no room, not that the photo is bad.
NO_ROOM = ("quota_exceeded", "disk_full")

#: Sent after records reached the manifest on disk (``records``: the dicts merged).
manifest_saved = object()


class ManifestWriter:
    def __init__(
        self,
        root: Path,
        crawler: Crawler,
        thresholds: Thresholds,
        checkpoint_items: int = 50,
        checkpoint_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.thresholds = thresholds
        self.crawler = crawler
        #: Items not yet merged into the manifest on disk, as records.
        self.pending: list[dict[str, Any]] = []
        #: What the end of the crawl needs of the items already merged (``outcome``):
        #: a crawl's memory does not grow with the photos it stores.
        self.outcomes: list[dict[str, Any]] = []
        self.unsaved_downloads = 0  # pending records that downloaded an image
        self.checkpoint_items = checkpoint_items
        self.checkpoint_seconds = checkpoint_seconds
        self.clock = clock
        self.last_checkpoint = clock()
        self.keep_runs = history.DEFAULT_KEEP
        self.hash_all = False
        self.previous: manifest_store.Manifest | None = None
        #: When the crawl opened (``time.time()``, as the URL index records fetches).
        self.opened_at = time.time()
        self.store_hold = ExitStack()
        self.closing = False

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        root = Path(crawler.settings["IMAGES_STORE"]).resolve()
        locks.configure(crawler.settings)
        thresholds = Thresholds(
            phash=crawler.settings.getint("PHX_NEAR_DUP_PHASH", Thresholds.phash),
            dhash=crawler.settings.getint("PHX_NEAR_DUP_DHASH", Thresholds.dhash),
        )
        ext = cls(
            root,
            crawler,
            thresholds,
            checkpoint_items=crawler.settings.getint("PHX_MANIFEST_CHECKPOINT_ITEMS", 50),
            checkpoint_seconds=crawler.settings.getfloat("PHX_MANIFEST_CHECKPOINT_SECONDS", 60),
        )
        crawler.signals.connect(ext.item_scraped, signal=signals.item_scraped)
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        ext.keep_runs = crawler.settings.getint("PHX_RUNS_KEEP", history.DEFAULT_KEEP)
        ext.hash_all = crawler.settings.getbool("PHX_RECONCILE_HASH_ALL")
        return ext

    def item_scraped(self, item: Any, spider: Spider) -> None:
        if isinstance(item, PropertyImagesItem):
            full = [r["reason"] for r in item.rejected if r["reason"] in NO_ROOM]
            if full:
                # Not complete: the next run, with more room, finishes it.
                item.status, item.reason = "failed", full[0]
            self.pending.append(record_of(item))
            locks = getattr(spider, "property_locks", None)
            if locks is not None and item.status != "blocked":
                # Kept while blocked: the pair is not done, and a retry may follow.
                locks.release(item.property_hash, item.source)
            # Only new downloads count towards the item threshold: an item whose
            # photos were all stored before is cheap to redo after a kill, and a
            # checkpoint rewrites the whole manifest.
            if any(image["status"] == "downloaded" for image in item.images):
                self.unsaved_downloads += 1
            due = self.clock() - self.last_checkpoint >= self.checkpoint_seconds
            if self.unsaved_downloads >= self.checkpoint_items or due:
                self.checkpoint()

    def checkpoint(self) -> None:
        """Merge what is pending into the manifest: a killed crawl loses at most this window,
        and the URL index lets the next run add that window back without downloading it."""
        self.root.mkdir(parents=True, exist_ok=True)
        saved = self.pending
        try:
            manifest_store.update(self.root, saved, self.thresholds)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            # The old manifest stays whole (atomic write); the images are in the URL
            # index, so the next run adds these records back without downloading.
            logger.error("Manifest not written, the disk is full: %s", exc)
            if not self.closing and self.crawler.engine is not None:
                deferred_from_coro(self.crawler.engine.close_spider_async(reason="disk_full"))
            return
        self.outcomes += [outcome(record) for record in saved]
        self.pending = []
        self.unsaved_downloads = 0
        self.crawler.signals.send_catch_log(manifest_saved, records=saved)
        self.last_checkpoint = self.clock()

    def spider_closed(self, spider: Spider, reason: str) -> None:
        self.closing = True
        try:
            self.finish(spider, reason)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            logger.error("Run record and report not written, the disk is full: %s", exc)
        finally:
            locks = getattr(spider, "property_locks", None)
            if locks is not None:
                locks.release_all()
            self.store_hold.close()

    def finish(self, spider: Spider, reason: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        unfinished = self.unfinished(spider)
        if reason in ("finished", *NO_ROOM):
            # Every request ended (or the store is full) and still no outcome: say
            # so rather than leave the pair silently absent from the manifest.
            why = "no_outcome" if reason == "finished" else reason
            self.pending += [self.no_outcome(spider, *pair, why) for pair in unfinished]
            unfinished = []
        self.checkpoint()
        stats = self.crawler.stats
        start_time = stats.get_value("start_time")
        run_id = getattr(spider, "run_id", "")
        changes = self.write_changes(run_id)
        summary = build_summary(spider, reason, self.all_outcomes())
        summary.update(
            sources_crawled=list(getattr(spider, "sources", ())),
            arguments=history.redact(getattr(spider, "arguments", {})),
            started_at=history.iso_time(start_time) if start_time else manifest_store.utc_now(),
            finished_at=manifest_store.utc_now(),
            stats=history.stats_summary(stats.get_stats()),
            unfinished=len(unfinished),
            skipped={
                "complete": stats.get_value("phx/skipped/complete", 0),
                "locked_by_another_crawl": stats.get_value("phx/skipped/locked", 0),
            },
            breaker=breaker_figures(stats.get_stats()),
            changes=changes,
            quota={
                key: stats.get_value(f"phx/quota/{key}")
                for key in ("refused", "refused_bytes", "needed")
                if stats.get_value(f"phx/quota/{key}") is not None
            },
            reconcile=self.check_store(run_id),
        )
        try:
            history.write_run(self.root, summary, keep=self.keep_runs)
        except history.RunRecordError as exc:
            logger.error("Run record not written: %s", exc)
        try:
            report = write_report(self.root, run_id or None)
        except (OSError, manifest_store.ManifestError) as exc:
            logger.error("Report not written: %s", exc)
        else:
            logger.info("Report: %s", report.as_uri())
        logger.info("%s", format_summary(summary), extra={"spider": spider})

    def spider_opened(self, spider: Spider) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            # Shared with other crawls; cleanup and repair wait for it.
            self.store_hold.enter_context(
                store_lock(self.root, exclusive=False, on_lost=self.store_lock_lost)
            )
        except LockError as exc:
            logger.error("%s", exc)
            assert self.crawler.engine is not None
            deferred_from_coro(self.crawler.engine.close_spider_async(reason="store_locked"))
            return
        # What the store held before this run: the change log compares with it
        # (checkpoints rewrite the manifest during the crawl).
        try:
            before = manifest_store.load(self.root, lazy=True)
            # Only this crawl's properties are parsed: memory follows the crawl, not the store.
            targets = getattr(spider, "targets", None)
            if targets is not None:
                kept = before["properties"]
                before["properties"] = {k: kept[k] for k in targets if k in kept}
        except manifest_store.ManifestError as exc:
            logger.error("%s", exc)
            self.previous = None
        else:
            self.previous = before

    def store_lock_lost(self) -> None:
        """Another host took this crawl's store lease over (its heartbeat stalled):
        cleanup may be running, so stop writing. Runs in the heartbeat thread."""

        def close() -> None:
            if not self.closing and self.crawler.engine is not None:
                deferred_from_coro(self.crawler.engine.close_spider_async(reason="lock_lost"))

        from twisted.internet import reactor

        reactor.callFromThread(close)

    def unfinished(self, spider: Spider) -> list[tuple[str, str]]:
        """(property_hash, source) pairs of this crawl that have no outcome yet."""
        done = {(r["property_hash"], r["source"]) for r in self.all_outcomes()}
        done |= getattr(spider, "skipped", set())
        targets = getattr(spider, "targets", {})
        sources = getattr(spider, "sources", ())
        return [(h, s) for h in targets for s in sources if (h, s) not in done]

    def no_outcome(
        self, spider: Spider, property_hash: str, source: str, reason: str
    ) -> dict[str, Any]:
        address = spider.targets[property_hash]  # type: ignore[attr-defined]
        item = PropertyImagesItem(
            run_id=spider.run_id,  # type: ignore[attr-defined]
            source=source,
            property_hash=property_hash,
            address=address.raw,
            canonical_address=address.canonical,
            status="failed",
            reason=reason,
        )
        return record_of(item)

    def all_outcomes(self) -> list[dict[str, Any]]:
        return self.outcomes + [outcome(record) for record in self.pending]

    def write_changes(self, run_id: str) -> dict[str, int] | None:
        """The run's change log, written as it is made; returns its totals."""
        covered = {(r["property_hash"], r["source"]) for r in self.all_outcomes()}
        current = manifest_store.load(self.root, lazy=True)
        try:
            return history.write_changes(
                self.root, run_id, history.change_log(self.previous, current, run_id, covered)
            )
        except (history.RunRecordError, OSError) as exc:
            # The run record and the report still follow (a full disk included).
            logger.error("Change log not written: %s", exc)
            return None

    def check_store(self, run_id: str) -> dict[str, Any]:
        """Read-only reconciliation after every crawl, so a damaged store is noticed.

        Quick unless PHX_RECONCILE_HASH_ALL: the files this crawl wrote are hashed,
        the others checked by size, so its cost does not grow with the store."""
        # What the URL index says was fetched since the crawl opened, read as the
        # check goes: this crawl's downloads (and a concurrent crawl's).
        wrote = None if self.hash_all else paths_fetched_since(self.root, self.opened_at)
        try:
            report = reconcile(self.root, rehash=wrote)
        except (OSError, sqlite3.Error, manifest_store.ManifestError) as exc:
            logger.error("Reconcile failed: %s", exc)
            return {"failed": str(exc)}
        reconcile_report(self.root, run_id, report)
        log_report(report, logger)
        return report.summary()


def record_of(item: PropertyImagesItem) -> dict[str, Any]:
    """The item as a record, field by field. Shallow: the pipelines are done with
    the item, and ``dataclasses.asdict`` deep-copied every photo (0.35 ms for an
    item of 11 photos, against 0.002 ms)."""
    return {field.name: getattr(item, field.name) for field in dataclasses.fields(item)}


def outcome(record: dict[str, Any]) -> dict[str, Any]:
    """What the end of a crawl needs of an item's record (see ``build_summary``)."""
    return {
        "property_hash": record["property_hash"],
        "source": record["source"],
        "status": record["status"],
        "reason": record["reason"],
        "photos": len(record["photos"]),
        "stored": len(record["images"]),
        "downloaded": sum(i["status"] == "downloaded" for i in record["images"]),
        "rejected": [r["reason"] for r in record["rejected"]],
    }


def build_summary(spider: Spider, reason: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's figures from its items' ``outcome``s."""
    per_source: dict[str, Counter[str]] = {}
    failures: Counter[str] = Counter()
    for record in records:
        counts = per_source.setdefault(record["source"], Counter())
        counts[f"status_{record['status']}"] += 1
        counts["photos_listed"] += record["photos"]
        counts["photos_stored"] += record["stored"]
        counts["photos_downloaded"] += record["downloaded"]
        counts["photos_rejected"] += len(record["rejected"])
        if record["status"] not in ("ok", "no_photos", "no_match"):
            failures[f"{record['source']}/{record['status']}:{record['reason']}"] += 1
        for rejected in record["rejected"]:
            failures[f"{record['source']}/image:{rejected}"] += 1
    return {
        "run_id": getattr(spider, "run_id", ""),
        "spider": spider.name,
        "finish_reason": reason,
        "properties": len({r["property_hash"] for r in records}),
        "sources": {name: dict(counts) for name, counts in sorted(per_source.items())},
        "failures": dict(failures.most_common()),
    }


def breaker_figures(stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per source: requests, blocks, block rate, breaker trips, time open, given up."""
    figures: dict[str, dict[str, Any]] = {}
    for key, value in stats.items():
        parts = key.split("/")
        if len(parts) != 4 or parts[0] != "phx" or parts[1] not in ("requests", "block", "breaker"):
            continue
        name = {"requests/count": "requests", "block/count": "blocks", "block/rate": "block_rate"}
        field = name.get(f"{parts[1]}/{parts[3]}", parts[3] if parts[1] == "breaker" else "")
        if field:
            figures.setdefault(parts[2], {})[field] = value
    return figures


def format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"Run {summary['run_id']} ({summary['spider']}, {summary['finish_reason']}): "
        f"{summary['properties']} properties",
    ]
    for name, counts in summary["sources"].items():
        statuses = ", ".join(
            f"{key.removeprefix('status_')} {value}"
            for key, value in sorted(counts.items())
            if key.startswith("status_")
        )
        lines.append(
            f"  {name:<12} photos stored {counts.get('photos_stored', 0):>4} "
            f"(downloaded {counts.get('photos_downloaded', 0)}, "
            f"rejected {counts.get('photos_rejected', 0)}); properties: {statuses}"
        )
    if summary["failures"]:
        lines.append("  failures by reason:")
        lines += [f"    {count:>4}  {key}" for key, count in summary["failures"].items()]
    else:
        lines.append("  no failures")
    for source, figures in sorted((summary.get("breaker") or {}).items()):
        if figures.get("blocks") or figures.get("trips"):
            lines.append(
                f"  {source:<12} blocks {figures.get('blocks', 0)} of "
                f"{figures.get('requests', 0)} requests "
                f"({100 * figures.get('block_rate', 0):.0f}%), breaker trips "
                f"{figures.get('trips', 0)}, open {figures.get('open_seconds', 0):.0f}s"
                + (", given up" if figures.get("given_up") else "")
            )
    if quota := summary.get("quota"):
        lines.append(
            f"  store full (PHX_STORE_QUOTA): {quota.get('refused', 0)} photos not fetched "
            f"({format_size(quota.get('refused_bytes', 0))}); free at least "
            f"{format_size(quota.get('needed', 0))} (scrapy cleanup --to-quota) or raise the "
            "quota; the next run completes them"
        )
    skipped = summary.get("skipped") or {}
    if any(skipped.values()):
        lines.append(
            f"  skipped: {skipped.get('complete', 0)} property/source pairs complete in an"
            f" earlier run, {skipped.get('locked_by_another_crawl', 0)} being extracted by"
            " another crawl"
        )
    if summary.get("unfinished"):
        lines.append(f"  {summary['unfinished']} property/source pairs unfinished (next run)")
    if checked := summary.get("reconcile"):
        lines.append(
            f"  store check failed: {checked['failed']}"
            if "failed" in checked
            else f"  store check: errors {checked['errors']}, warnings {checked['warnings']}"
            " (details: scrapy reconcile)"
        )
    return "\n".join(lines)
