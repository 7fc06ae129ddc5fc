"""Cleanup: what may go from a store, and taking it away without losing what is referenced.

Modelled on ``restic forget``/``prune`` and ``git gc``: ``plan`` is read-only
and says what would go, why, and the bytes freed; ``apply`` carries a plan out.
What a plan may hold (each chosen in ``Options``):

``orphan``, ``orphan_thumb``, ``orphan_original``
    what ``scrapy reconcile`` calls orphans (a valid file under ``full/`` no
    manifest image or ``missing`` entry names, a thumbnail of no such md5),
    plus originals whose md5 is no image's ``source_md5``; only once
    unchanged (mtime) for longer than the grace period: a crawl stores a file
    before its manifest names it, and a dedup hit refreshes the mtime
    (``store.files.store_content``), so a file a crawl is about to reference
    is always young. A file whose bytes do not hash to its name is not an
    orphan but reconcile's ``mismatch``: it is left for ``--repair``.
``temp``
    ``.tmp-*`` files anywhere but ``quarantine/``, older than the grace period.
``property``
    the files of properties dropped from the manifest (not seen for N days,
    not in an address list, or the oldest-unseen ones until the store fits
    its quota): an image, its thumbnails and its original go only when no
    kept property references them, in ``images`` or ``missing``.
``run``, ``report``
    run records beyond the newest N (``store.history`` order) with their
    companion files, companions first; reports with no run record (a
    repair's ``<id>.reconcile.json``) beyond the newest N by mtime. Files
    that are not run records are never touched, as in ``store.history``.
``quarantine``
    files under ``quarantine/`` older than N days, counted from the later of
    mtime and ctime: a move into quarantine keeps the file's mtime.

Stray files are never touched. ``apply`` runs under the store lock, taken
exclusively by the caller (``store.locks.store_lock``), and the manifest lock:

1. the dropped properties leave the manifest (atomic write), so a crash from
   here on leaves orphans, never ghosts;
2. the URL-index rows of the ``full/`` files about to go are deleted, so the
   index never points at a file that is gone;
3. each file is re-checked and deleted: one the manifest now references, or
   that changed since the plan, is skipped and said so.

A plan that drops every property of the manifest is refused unless asked for.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from phx_scraper.store import history
from phx_scraper.store import manifest as manifest_store
from phx_scraper.store.files import TEMP_PREFIX, fsync_dir
from phx_scraper.store.quota import COUNTED_DIRS, measure
from phx_scraper.store.reconcile import (
    _CONTENT,
    _THUMB,
    QUARANTINE_DIR,
    StoreNotFound,
    _shape_checked,
    _walk,
    file_md5,
)
from phx_scraper.store.urlindex import INDEX_PATH

DEFAULT_GRACE_DAYS = 14.0
DAY = 86400.0
#: Reasons in the order a plan lists them.
REASONS = (
    "orphan",
    "orphan_thumb",
    "orphan_original",
    "temp",
    "property",
    "run",
    "report",
    "quarantine",
)

_ORIGINAL = re.compile(r"^originals/(?P<dir>[0-9a-f]{2})/(?P<md5>[0-9a-f]{32})\.[0-9a-z]+$")


class CleanupRefused(Exception):
    """``apply`` was asked to drop every property without ``allow_empty``."""


@dataclass(frozen=True)
class Options:
    orphans: bool = False
    temp: bool = False
    grace_days: float = DEFAULT_GRACE_DAYS
    #: Drop properties no source has seen for longer than this many days.
    not_seen_days: float | None = None
    #: Drop properties whose property_hash is not in this set (an address list) ...
    keep_only: frozenset[str] | None = None
    #: ... named so in the plan (the CSV file).
    keep_only_source: str = "the address list"
    #: Keep the newest N run records and reports.
    keep_runs: int | None = None
    quarantine_days: float | None = None
    #: Drop the oldest-unseen properties until the store holds at most this many bytes.
    quota: int | None = None


@dataclass(frozen=True)
class Item:
    """A file the plan deletes; ``path`` is relative to the store root."""

    path: str
    bytes: int
    reason: str
    detail: str
    #: The mtime the plan saw: ``apply`` skips a file that changed since.
    mtime_ns: int = field(default=0, compare=False, repr=False)


@dataclass(frozen=True)
class Drop:
    """A property the plan removes from the manifest."""

    property_hash: str
    canonical_address: str
    reason: str  # not_seen | not_in | to_quota
    detail: str
    last_seen: str | None
    images: int
    #: Its images that stay, because a kept property references them too.
    shared: int


@dataclass
class Plan:
    root: Path
    now: float
    options: Options
    items: list[Item] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    #: Properties in the manifest the plan was made from.
    properties: int = 0
    #: Bytes counted against the quota (``store.quota.measure``), when a quota was given.
    used: int | None = None

    @property
    def bytes_freed(self) -> int:
        return sum(item.bytes for item in self.items)

    @property
    def used_after(self) -> int | None:
        if self.used is None:
            return None
        return self.used - sum(i.bytes for i in self.items if _counted(i.path))

    @property
    def empties_store(self) -> bool:
        """The plan drops every property of a manifest that has some."""
        return self.properties > 0 and len(self.drops) == self.properties

    def totals(self) -> dict[str, dict[str, int]]:
        totals: dict[str, dict[str, int]] = {}
        for item in self.items:
            entry = totals.setdefault(item.reason, {"files": 0, "bytes": 0})
            entry["files"] += 1
            entry["bytes"] += item.bytes
        return {reason: totals[reason] for reason in REASONS if reason in totals}

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": str(self.root),
            "now": history.iso_time(datetime.fromtimestamp(self.now, UTC)),
            "grace_days": self.options.grace_days,
            "properties": self.properties,
            "drops": [asdict(drop) for drop in self.drops],
            "items": [
                {"path": i.path, "bytes": i.bytes, "reason": i.reason, "detail": i.detail}
                for i in self.items
            ],
            "totals": self.totals(),
            "files": len(self.items),
            "bytes_freed": self.bytes_freed,
            "quota": self.options.quota,
            "used": self.used,
            "used_after": self.used_after,
            "empties_store": self.empties_store,
        }


@dataclass
class Result:
    deleted: list[Item] = field(default_factory=list)
    skipped: list[tuple[Item, str]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    index_rows: int = 0

    @property
    def bytes_freed(self) -> int:
        return sum(item.bytes for item in self.deleted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "deleted": len(self.deleted),
            "bytes_freed": self.bytes_freed,
            "dropped": self.dropped,
            "index_rows_deleted": self.index_rows,
            "skipped": [{"path": item.path, "why": why} for item, why in self.skipped],
        }


# -- plan -------------------------------------------------------------------


def check_store(root: Path) -> None:
    """Raise StoreNotFound unless ``root`` holds a store (a manifest or ``full/``)."""
    if not root.is_dir() or not (
        (root / manifest_store.MANIFEST_NAME).exists() or (root / "full").is_dir()
    ):
        raise StoreNotFound(f"{root}: no store here (no {manifest_store.MANIFEST_NAME}, no full/)")


def plan(root: Path, options: Options, now: float | None = None) -> Plan:
    """What ``options`` would delete from the store at ``root``; reads, never writes."""
    check_store(root)
    now = time.time() if now is None else now
    manifest = manifest_store.load(root)
    result = Plan(root=root, now=now, options=options)
    with _shape_checked(root):
        properties: dict[str, dict[str, Any]] = dict(manifest["properties"])
        result.properties = len(properties)
        files = _Files.scan(root)
        refs = _Refs(properties.values())
        grace = options.grace_days * DAY
        if options.orphans:
            result.items += _orphans(files, refs, now, grace)
        if options.temp:
            result.items += [
                files.item(rel, "temp", f"temporary file unchanged for {_days(age)}")
                for rel in files.temp
                if (age := now - files.mtime(rel)) > grace
            ]
        _drop_properties(result, properties, files, refs)
    if options.keep_runs is not None:
        result.items += _runs(root, options.keep_runs)
    if options.quarantine_days is not None:
        result.items += _quarantine(root, now, options.quarantine_days * DAY)
    return result


class _Files:
    """The store's files by kind, from one walk (``reconcile._walk``); stat on demand."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.content: set[str] = set()
        self.thumbs: dict[str, list[str]] = {}  # md5 -> thumbnail paths
        self.originals: dict[str, list[str]] = {}  # md5 -> original paths
        self.temp: list[str] = []
        self._stats: dict[str, os.stat_result] = {}

    @classmethod
    def scan(cls, root: Path) -> _Files:
        files = cls(root)
        for rel_dir, _, entries in _walk(root):
            for entry in entries:
                name = entry.name
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                if entry.is_symlink():
                    continue  # reconcile's stray files: never ours to delete
                if name.startswith(TEMP_PREFIX):
                    files.temp.append(rel)
                elif (m := _CONTENT.match(rel)) and m["md5"].startswith(m["dir"]):
                    files.content.add(rel)
                elif _THUMB.match(rel):
                    files.thumbs.setdefault(name[:32], []).append(rel)
                elif (m := _ORIGINAL.match(rel)) and m["md5"].startswith(m["dir"]):
                    files.originals.setdefault(m["md5"], []).append(rel)
        return files

    def stat(self, rel: str) -> os.stat_result | None:
        if rel not in self._stats:
            try:
                self._stats[rel] = os.lstat(self.root / rel)
            except FileNotFoundError:
                return None
        return self._stats[rel]

    def mtime(self, rel: str) -> float:
        stat = self.stat(rel)
        return stat.st_mtime if stat else float("inf")  # gone: never old enough

    def item(self, rel: str, reason: str, detail: str) -> Item:
        stat = self.stat(rel)
        assert stat is not None
        return Item(rel, stat.st_size, reason, detail, stat.st_mtime_ns)


class _Refs:
    """How many kept properties reference each content path, md5 and source_md5."""

    def __init__(self, properties: Iterable[dict[str, Any]]) -> None:
        self.paths: Counter[str] = Counter()
        self.md5s: Counter[str] = Counter()
        self.source_md5s: Counter[str] = Counter()
        for prop in properties:
            paths, md5s, source_md5s = _references(prop)
            self.paths.update(paths)
            self.md5s.update(md5s)
            self.source_md5s.update(source_md5s)

    def release(self, prop: dict[str, Any], files: _Files) -> list[str]:
        """Take ``prop``'s references away; the files nothing references any more."""
        paths, md5s, source_md5s = _references(prop)
        freed: list[str] = []
        for counter, keys, on_disk in (
            (self.paths, paths, lambda p: [p] if p in files.content else []),
            (self.md5s, md5s, lambda m: files.thumbs.get(m, [])),
            (self.source_md5s, source_md5s, lambda m: files.originals.get(m, [])),
        ):
            for key in sorted(keys):
                counter[key] -= 1
                if counter[key] == 0:
                    freed += on_disk(key)
        return freed

    def holds(self, rel: str) -> bool:
        """The manifest these references come from names ``rel`` (or its md5, for
        thumbnails and originals)."""
        name = rel.rpartition("/")[2][:32]
        if rel.startswith("full/"):
            return self.paths[rel] > 0
        if rel.startswith("thumbs/"):
            return self.md5s[name] > 0
        if rel.startswith("originals/"):
            return self.source_md5s[name] > 0
        return False


def _references(prop: dict[str, Any]) -> tuple[set[str], set[str], set[str]]:
    """(content paths, md5s, source_md5s) a property references, missing images included."""
    entries = [*prop["images"], *prop.get("missing", ())]
    paths = {entry["path"] for entry in entries}
    md5s = {entry["md5"] for entry in entries}
    source_md5s = {image["source_md5"] for image in prop["images"] if image.get("source_md5")}
    return paths, md5s, source_md5s


def _orphans(files: _Files, refs: _Refs, now: float, grace: float) -> list[Item]:
    items = []
    candidates = [(rel, "orphan") for rel in sorted(files.content)]
    candidates += [(rel, "orphan_thumb") for paths in files.thumbs.values() for rel in paths]
    candidates += [(rel, "orphan_original") for paths in files.originals.values() for rel in paths]
    for rel, reason in sorted(candidates, key=lambda c: (REASONS.index(c[1]), c[0])):
        if refs.holds(rel) or (age := now - files.mtime(rel)) <= grace:
            continue
        if reason != "orphan_thumb" and not _valid(files.root / rel):
            continue  # reconcile's mismatch (or unreadable): for --repair, not for us
        what = {"orphan": "no manifest image", "orphan_thumb": "a thumbnail of no manifest image"}
        detail = what.get(reason, "the original of no manifest image")
        items.append(files.item(rel, reason, f"{detail}; unchanged for {_days(age)}"))
    return items


def _valid(path: Path) -> bool:
    try:
        return file_md5(path)[0] == path.name[:32]
    except OSError:
        return False


def _drop_properties(
    result: Plan, properties: dict[str, dict[str, Any]], files: _Files, refs: _Refs
) -> None:
    options, now = result.options, result.now
    images: dict[str, set[str]] = {}  # dropped property -> its image paths

    def drop(key: str, reason: str, detail: str) -> None:
        prop = properties.pop(key)
        images[key] = {image["path"] for image in prop["images"]}
        result.drops.append(
            Drop(key, prop.get("canonical_address", ""), reason, detail, last_seen(prop), 0, 0)
        )
        result.items.extend(
            files.item(rel, "property", f"{_kind(rel)} of dropped property {key}")
            for rel in refs.release(prop, files)
            if files.stat(rel) is not None
        )

    # Oldest-unseen first, as --to-quota chooses.
    oldest = sorted(properties, key=lambda k: (_timestamp(last_seen(properties[k])), k))
    for key in oldest:
        reasons = []
        last = last_seen(properties[key])
        if options.not_seen_days is not None:
            age = now - _timestamp(last)
            if age > options.not_seen_days * DAY:
                since = f"last seen {last}" if last else "never seen"
                reasons.append(("not_seen", f"not seen for {_days(age)} ({since})"))
        if options.keep_only is not None and key not in options.keep_only:
            reasons.append(("not_in", f"not in {options.keep_only_source}"))
        if reasons:
            drop(key, reasons[0][0], "; ".join(detail for _, detail in reasons))
    if options.quota is not None:
        result.used = measure(result.root)
        for key in [k for k in oldest if k in properties]:
            used_after = result.used_after
            if used_after is None or used_after <= options.quota:
                break
            last = last_seen(properties[key])
            since = f"last seen {last}" if last else "never seen"
            drop(key, "to_quota", f"oldest unseen ({since}); the store is over its quota")
    # Only once every drop is known can it be said which images stay for kept properties.
    result.drops = [
        replace(
            d,
            images=len(images[d.property_hash]),
            shared=sum(refs.paths[path] > 0 for path in images[d.property_hash]),
        )
        for d in result.drops
    ]


def last_seen(prop: dict[str, Any]) -> str | None:
    """When a source last reported on the property (its newest ``sources.*.time``)."""
    times = [entry.get("time") for entry in prop.get("sources", {}).values()]
    stamped = [t for t in times if isinstance(t, str) and _timestamp(t) > float("-inf")]
    return max(stamped, key=_timestamp) if stamped else None


def _timestamp(value: str | None) -> float:
    if not value:
        return float("-inf")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return float("-inf")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _runs(root: Path, keep: int) -> list[Item]:
    runs_dir = root / history.RUNS_DIR
    if not runs_dir.is_dir():
        return []
    scan = history.scan_runs(root)
    companions: dict[str, list[Path]] = {}
    for path in sorted(runs_dir.iterdir()):
        run_id, dot, rest = path.name.partition(".")
        if dot and rest != "json" and history.RUN_ID.fullmatch(run_id) and path.is_file():
            companions.setdefault(run_id, []).append(path)
    items: list[Item | None] = []
    for run in scan.runs[keep:]:
        finished = run.record.get("finished_at")
        why = f"run {run.run_id} (finished {finished}); keeping the newest {keep}"
        for path in [*companions.get(run.run_id, []), run.path]:
            items.append(
                _file_item(root, path, "run", why if path == run.path else f"report of {why}")
            )
    # A corrupt <id>.json is not a record; its companions are left with it.
    unowned = {
        run_id: paths
        for run_id, paths in companions.items()
        if not (runs_dir / f"{run_id}.json").exists()
    }
    newest = sorted(
        unowned, key=lambda r: (max(p.stat().st_mtime_ns for p in unowned[r]), r), reverse=True
    )
    for run_id in newest[keep:]:
        why = f"report of no run record; keeping the newest {keep}"
        items += [_file_item(root, path, "report", why) for path in unowned[run_id]]
    return [item for item in items if item is not None]


def _quarantine(root: Path, now: float, older_than: float) -> list[Item]:
    items = []
    for dirpath, dirnames, filenames in os.walk(root / QUARANTINE_DIR):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            try:
                stat = path.lstat()
            except FileNotFoundError:
                continue
            age = now - max(stat.st_mtime, stat.st_ctime)
            if age > older_than:
                rel = path.relative_to(root).as_posix()
                detail = f"quarantined {_days(age)} ago"
                items.append(Item(rel, stat.st_size, "quarantine", detail, stat.st_mtime_ns))
    return items


def _file_item(root: Path, path: Path, reason: str, detail: str) -> Item | None:
    try:
        stat = path.lstat()
    except FileNotFoundError:
        return None  # removed since the listing
    return Item(path.relative_to(root).as_posix(), stat.st_size, reason, detail, stat.st_mtime_ns)


def _kind(rel: str) -> str:
    return {"full": "image", "thumbs": "thumbnail", "originals": "original"}[rel.split("/")[0]]


def _counted(rel: str) -> bool:
    return rel.split("/")[0] in COUNTED_DIRS and not rel.rpartition("/")[2].startswith(TEMP_PREFIX)


def _days(seconds: float) -> str:
    return f"{seconds / DAY:.1f} days"


# -- apply ------------------------------------------------------------------


def apply(root: Path, plan: Plan, *, allow_empty: bool = False) -> Result:
    """Carry ``plan`` out. Call it holding ``store_lock(root, exclusive=True)``."""
    if plan.empties_store and not allow_empty:
        raise CleanupRefused(
            f"the plan drops every property ({plan.properties}) of {root}; nothing deleted"
        )
    result = Result()
    with manifest_store.lock(root):
        manifest = manifest_store.load(root)
        with _shape_checked(root):
            kept = manifest["properties"]
            result.dropped = [d.property_hash for d in plan.drops if d.property_hash in kept]
            for key in result.dropped:
                del kept[key]
            if result.dropped:
                manifest_store.save(root, manifest)
            refs = _Refs(kept.values())
        doomed = []
        for item in plan.items:
            why = _keep_reason(root, item, refs)
            if why:
                result.skipped.append((item, why))
            else:
                doomed.append(item)
        result.index_rows = _forget_paths(
            root, [i.path for i in doomed if i.path.startswith("full/")]
        )
        parents = set()
        for item in doomed:
            try:
                _remove(root / item.path)
            except FileNotFoundError:
                result.skipped.append((item, "already gone"))
                continue
            result.deleted.append(item)
            parents.add((root / item.path).parent)
        for parent in sorted(parents):
            fsync_dir(parent)
    return result


def _keep_reason(root: Path, item: Item, refs: _Refs) -> str | None:
    if refs.holds(item.path):
        return "referenced by the manifest"
    try:
        stat = os.lstat(root / item.path)
    except FileNotFoundError:
        return "already gone"
    if stat.st_mtime_ns != item.mtime_ns:
        return "changed since the plan"
    return None


def _forget_paths(root: Path, paths: list[str]) -> int:
    """Delete the URL-index rows of ``paths``; the number of rows deleted."""
    index = root / INDEX_PATH
    if not paths or not index.exists():
        return 0
    db = sqlite3.connect(index, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=30000")
        return db.executemany("DELETE FROM urls WHERE path = ?", [(p,) for p in paths]).rowcount
    finally:
        db.close()


def _remove(path: Path) -> None:
    path.unlink()
