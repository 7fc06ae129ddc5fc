"""Run history: ``<store>/runs/``, one record per crawl, and what each crawl changed.

Files (``<run_id>`` is letters, digits, ``_`` and ``-``; no dot, so a name
with two dots is always a companion of the run before its first dot)::

    runs/<run_id>.json             the run record (``write_run``)
    runs/<run_id>.changes.json     its property change log (``write_changes``)
    runs/<run_id>.reconcile.json   its store check (``store.reconcile.reconcile_report``)
    runs/.tmp-*                    a write in progress, or one a kill interrupted

A run record holds at least ``run_id``, ``spider``, ``sources`` (source name
-> counts: ``photos_stored``, ``photos_downloaded``, ``photos_rejected``,
``status_<status>``), ``arguments`` (passed through ``redact``),
``started_at``, ``finished_at`` (ISO 8601 UTC) and ``finish_reason``; the
crawl adds what it has: ``properties``, ``failures``, ``stats``, ``breaker``
(blocks and breaker figures per source), ``reconcile`` (the store check's
summary), ``changes`` (the change log's totals).

Retention: ``write_run`` keeps the newest ``keep`` records, ordered by the
``finished_at`` inside each file (its mtime when that is missing, as in
records from before this module); the run being written always counts as
the newest. A pruned run's companions go first, then its record, so a kill
part-way leaves a record that the next prune takes. Pruning runs under
the history lock (``store.locks``) and before the new record is written, so neither two
crawls ending together nor a kill between the steps can leave more than
``keep`` records.

A ``runs/<name>.json`` that is not a run record (not JSON, not an object, or
its ``run_id`` is not its name: damage, or a file someone put there) is
logged, not counted and never deleted: a person decides what it is. Temp
files and companions whose record is gone are left alone too;
``scrapy reconcile`` lists temp files.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any, BinaryIO

from phx_scraper.middlewares.secrets import maricopa_token
from phx_scraper.store.files import TEMP_PREFIX, atomic_write
from phx_scraper.store.locks import LockError, history_lock
from phx_scraper.store.manifest import Manifest, compact

logger = logging.getLogger(__name__)

RUNS_DIR = "runs"
DEFAULT_KEEP = 100
REQUIRED = (
    "run_id",
    "spider",
    "sources",
    "arguments",
    "started_at",
    "finished_at",
    "finish_reason",
)
RUN_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
#: Argument names holding credentials (substring match, any case).
SECRET_WORDS = ("token", "password", "secret", "auth", "key")
MASK = "***"
#: Source statuses whose listing was read in full, so a photo not seen is really gone.
LISTED = ("ok", "no_photos")
CHANGE_KINDS = ("added", "removed", "changed")


class RunRecordError(ValueError):
    """A run record cannot be written (the message lists every problem)."""


@dataclass(frozen=True)
class RunFile:
    run_id: str
    path: Path
    record: dict[str, Any]
    #: (finished_at or mtime as a timestamp, mtime_ns, run_id): larger is newer.
    order: tuple[float, int, str]


@dataclass
class Scan:
    runs: list[RunFile] = field(default_factory=list)  # newest first
    corrupt: list[str] = field(default_factory=list)  # "<path>: <why>"


def iso_time(value: datetime) -> str:
    """``2026-11-25T10:00:00Z``, the manifest's time format (naive times are UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def stats_summary(stats: Mapping[str, Any]) -> dict[str, int | float]:
    """The numeric Scrapy stats (times go to ``started_at``/``finished_at`` instead)."""
    return {
        key: value
        for key, value in sorted(stats.items())
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def redact(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments as they may be kept: credentials replaced by ``***``.

    A key naming a credential masks its value; any value equal to (or
    containing) the Assessor token is masked whatever its key, since a token
    can reach the arguments under any name.
    """
    token = maricopa_token()
    return {key: _redact_value(key, value, token) for key, value in arguments.items()}


def _redact_value(key: str, value: Any, token: str) -> Any:
    if any(word in str(key).lower() for word in SECRET_WORDS):
        return MASK
    if isinstance(value, Mapping):
        return {k: _redact_value(k, v, token) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value("", v, token) for v in value]
    if token and isinstance(value, str) and token in value:
        return MASK
    return value


def check_record(record: Mapping[str, Any]) -> None:
    """Raise ``RunRecordError`` naming every problem of a record about to be written."""
    problems = [f"missing {key!r}" for key in REQUIRED if key not in record]
    run_id = record.get("run_id")
    if "run_id" in record and not (isinstance(run_id, str) and RUN_ID.fullmatch(run_id)):
        problems.append(f"run_id {run_id!r} is not 1-64 letters, digits, '_' or '-'")
    for key, kind in (("spider", str), ("finish_reason", str), ("sources", dict)):
        if key in record and not isinstance(record[key], kind):
            problems.append(f"{key!r} is not a {kind.__name__}")
    if "arguments" in record and not isinstance(record["arguments"], dict):
        problems.append("'arguments' is not a dict")
    for key in ("started_at", "finished_at"):
        if key in record and _timestamp(record[key]) is None:
            problems.append(f"{key!r} is not an ISO 8601 time: {record[key]!r}")
    try:
        json.dumps(record)
    except (TypeError, ValueError) as exc:
        problems.append(f"not JSON-serializable ({exc})")
    if problems:
        raise RunRecordError(f"run record {run_id!r}: " + "; ".join(problems))


def write_run(root: Path, record: Mapping[str, Any], keep: int = DEFAULT_KEEP) -> Path:
    """Write ``runs/<run_id>.json`` atomically, keeping at most ``keep`` records.

    ``keep <= 0`` keeps every record. A record with the same run_id is
    replaced. If another process holds the history lock for long, the record
    is written anyway and pruning waits for the next run.
    """
    check_record(record)
    run_id = record["run_id"]
    data = json.dumps(record, indent=1, sort_keys=True).encode() + b"\n"
    path = root / RUNS_DIR / f"{run_id}.json"
    try:
        with history_lock(root):
            if keep > 0:
                _prune(root, keep - 1, exclude=run_id)
            atomic_write(path, data)
    except LockError as exc:
        logger.warning("Run history: %s; %s written without pruning", exc, path)
        atomic_write(path, data)
    return path


def write_changes(
    root: Path, run_id: str, properties: Iterable[tuple[str, dict[str, Any]]]
) -> dict[str, int]:
    """Write ``runs/<run_id>.changes.json`` atomically from ``change_log``'s
    properties, one line each as they come (a large run's log is never held
    whole); returns the totals, also written: ``{"added": n, "removed": n, "changed": n}``."""
    if not RUN_ID.fullmatch(run_id):
        raise RunRecordError(f"run_id {run_id!r} is not 1-64 letters, digits, '_' or '-'")
    totals: Counter[str] = Counter()

    def write(fh: BinaryIO) -> None:
        # Keys in sorted order, as json.dumps(sort_keys=True) would put them.
        fh.write(b'{\n "properties": {')
        for n, (key, entry) in enumerate(properties):
            for changes in entry["sources"].values():
                totals.update({kind: len(changes[kind]) for kind in CHANGE_KINDS})
            fh.write(f"{',' if n else ''}\n  {compact(key)}: {compact(entry)}".encode())
        counts = {kind: totals[kind] for kind in CHANGE_KINDS}
        fh.write(
            f'\n }},\n "run_id": {compact(run_id)},\n "totals": {compact(counts)}\n}}\n'.encode()
        )

    atomic_write(root / RUNS_DIR / f"{run_id}.changes.json", write)
    return {kind: totals[kind] for kind in CHANGE_KINDS}


def scan_runs(root: Path) -> Scan:
    """Every run record under ``runs/``, newest first, and the files that are not records."""
    scan = Scan()
    runs_dir = root / RUNS_DIR
    if not runs_dir.is_dir():
        return scan
    for path in sorted(runs_dir.iterdir()):
        run_id = path.name.removesuffix(".json")
        if run_id == path.name or path.name.startswith(TEMP_PREFIX) or "." in run_id:
            continue  # not a run record's name: temp file, companion, other file
        run, why = _read_run(path, run_id)
        if run is None:
            scan.corrupt.append(f"{path}: {why}; left alone")
        else:
            scan.runs.append(run)
    scan.runs.sort(key=lambda run: run.order, reverse=True)
    return scan


def list_runs(root: Path) -> list[dict[str, Any]]:
    """One ``summarize`` dict per run, newest first; files that are not records are logged."""
    scan = scan_runs(root)
    for problem in scan.corrupt:
        logger.warning("Run history: %s", problem)
    return [summarize(run.record) | {"path": str(run.path)} for run in scan.runs]


def summarize(record: Mapping[str, Any]) -> dict[str, Any]:
    """The figures ``scrapy runs`` shows, from a record of any age (absent ones are None)."""
    sources = _dict(record.get("sources"))
    counts = [c for c in sources.values() if isinstance(c, dict)]
    figures = [f for f in _dict(record.get("breaker")).values() if isinstance(f, dict)]
    checked = _dict(record.get("reconcile"))
    return {
        "run_id": record.get("run_id"),
        "spider": record.get("spider"),
        "sources": sorted(sources),
        "started_at": record.get("started_at"),
        "finished_at": record.get("finished_at"),
        "finish_reason": record.get("finish_reason"),
        "properties": record.get("properties"),
        "photos_stored": sum(_int(c.get("photos_stored")) for c in counts),
        "photos_downloaded": sum(_int(c.get("photos_downloaded")) for c in counts),
        "photos_rejected": sum(_int(c.get("photos_rejected")) for c in counts),
        "blocks": sum(_int(f.get("blocks")) for f in figures),
        "reconcile_errors": checked.get("errors"),
        "reconcile_warnings": checked.get("warnings"),
        "reconcile_failed": checked.get("failed"),
        "changes": record.get("changes"),
    }


def change_log(
    previous: Manifest | None,
    current: Manifest,
    run_id: str,
    covered: Iterable[tuple[str, str]],
) -> Iterator[tuple[str, dict[str, Any]]]:
    """What run ``run_id`` changed, per covered (property_hash, source) pair:
    ``(property_hash, {"canonical_address", "sources": {source: changes}})``,
    one property at a time (see ``write_changes``).

    ``previous`` is the manifest before the run's records were merged,
    ``current`` the one after. Per pair, compared with the listing of the
    previous run that read this source for this property in full:

    - ``added``: images (md5 and the URLs that gave it) not stored from this
      source for this property before;
    - ``removed``: images the source no longer lists. Only said when this
      run read the listing in full (status ok or no_photos: ``complete``);
      a photo listed but not downloaded this time (rejected) is not removed;
    - ``changed``: the same URL, or the same photo_id, now gives other bytes.
      Its old and new md5 are not repeated under removed and added.

    When the previous attempt did not read the listing (blocked, failed), every
    image known from this source is the baseline, so an image removed before
    that attempt may be reported removed again.
    """
    before_all = (previous or {}).get("properties") or {}
    for key, pairs in groupby(sorted(set(covered)), key=itemgetter(0)):
        after = current["properties"].get(key) or {}
        before = before_all.get(key) or {}
        yield (
            key,
            {
                "canonical_address": after.get("canonical_address")
                or before.get("canonical_address"),
                "sources": {
                    source: _source_changes(before, after, source, run_id) for _, source in pairs
                },
            },
        )


def _source_changes(
    before: Mapping[str, Any], after: Mapping[str, Any], source: str, run_id: str
) -> dict[str, Any]:
    now = (after.get("sources") or {}).get(source) or {}
    then = (before.get("sources") or {}).get(source) or {}
    complete = now.get("run_id") == run_id and now.get("status") in LISTED
    last_listing = then.get("run_id") if then.get("status") in LISTED else None
    baseline = _origins(before, source, last_listing)
    seen = _origins(after, source, run_id)
    by_url = {origin["url"]: (md5, origin) for md5, origin in baseline}
    by_photo = {o["photo_id"]: (md5, o) for md5, o in baseline if o.get("photo_id")}
    changed: list[dict[str, Any]] = []
    matched: set[tuple[str, str]] = set()  # (md5, url) of baseline origins seen again
    new_origin: set[str] = set()  # md5s reached through an origin not known before
    for md5, origin in seen:
        old = by_url.get(origin["url"]) or by_photo.get(origin.get("photo_id") or "")
        if old is None:
            new_origin.add(md5)
            continue
        old_md5, old_origin = old
        matched.add((old_md5, old_origin["url"]))
        if old_md5 != md5:
            changed.append(
                {
                    "url": origin["url"],
                    "old_url": old_origin["url"],
                    "photo_id": origin.get("photo_id"),
                    "old_md5": old_md5,
                    "new_md5": md5,
                }
            )
    old_md5s = {md5 for md5, _ in baseline}
    seen_md5s = {md5 for md5, _ in seen}
    added = [
        {"md5": md5, "urls": sorted({o["url"] for m, o in seen if m == md5})}
        for md5 in sorted(seen_md5s - old_md5s)
        if md5 in new_origin
    ]
    removed: list[dict[str, Any]] = []
    if complete:
        still_listed = _rejected_now(after, source, run_id)
        for md5 in sorted(old_md5s - seen_md5s):
            gone = [
                o
                for m, o in baseline
                if m == md5
                and (m, o["url"]) not in matched
                and o["url"] not in still_listed
                and (o.get("photo_id") or o["url"]) not in still_listed
            ]
            if gone:
                removed.append({"md5": md5, "urls": sorted({o["url"] for o in gone})})
    return {
        "status": now.get("status"),
        "previous_run": then.get("run_id"),
        "complete": complete,
        "added": added,
        "removed": removed,
        "changed": sorted(changed, key=lambda c: (c["url"], c["new_md5"])),
    }


def _origins(
    prop: Mapping[str, Any], source: str, run_id: str | None
) -> list[tuple[str, dict[str, Any]]]:
    """(md5, origin) of ``source``; only those last seen by ``run_id`` unless it is None."""
    return [
        (image["md5"], origin)
        for image in prop.get("images") or ()
        for origin in image.get("origins") or ()
        if origin.get("source") == source
        and (run_id is None or origin.get("last_seen_run") == run_id)
    ]


def _rejected_now(prop: Mapping[str, Any], source: str, run_id: str) -> set[str]:
    """URLs and photo_ids the source listed this run whose download was rejected."""
    keys: set[str] = set()
    for rejected in prop.get("rejected") or ():
        if rejected.get("source") == source and rejected.get("run_id") == run_id:
            keys.update(k for k in (rejected.get("url"), rejected.get("photo_id")) if k)
    return keys


def _prune(root: Path, keep: int, exclude: str) -> None:
    """Delete all but the newest ``keep`` records other than ``exclude``, companions first."""
    scan = scan_runs(root)
    for problem in scan.corrupt:
        logger.warning("Run history: %s", problem)
    others = [run for run in scan.runs if run.run_id != exclude]
    for run in others[keep:]:
        for companion in sorted(run.path.parent.glob(f"{run.run_id}.*.*")):
            companion.unlink(missing_ok=True)
        run.path.unlink(missing_ok=True)
        logger.debug("Run history: pruned run %s", run.run_id)


def _read_run(path: Path, run_id: str) -> tuple[RunFile | None, str]:
    try:
        stat = path.stat()
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return None, f"cannot read ({exc.strerror})"
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"not valid JSON ({exc})"
    if not isinstance(record, dict) or record.get("run_id") != run_id:
        return None, "not a run record (no run_id matching its name)"
    finished = _timestamp(record.get("finished_at"))
    order = (stat.st_mtime if finished is None else finished, stat.st_mtime_ns, run_id)
    return RunFile(run_id, path, record, order), ""


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
