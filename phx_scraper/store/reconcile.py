"""Reconciliation: does the store hold, byte for byte, what the manifest says?

Modelled on ``git fsck`` / ``restic check``: read-only unless asked to repair,
and it says what is missing, what is corrupt and what is unreferenced, at
different severities. Every file under ``full/`` is re-hashed (in 1 MiB
chunks): a content name is only worth something if it is verified.

ERROR (exit code 1)
    ``ghost``       a manifest image whose file is absent
    ``mismatch``    a file under ``full/`` whose MD5 is not its name
                    (flipped bits, truncation, a rename)
    ``bad_path``    a manifest image whose ``path`` does not name its ``md5``
    ``unreadable``  a content file that cannot be read (permissions, I/O error)
WARNING
    ``orphan``         a valid content file no manifest entry names: a crawl killed
                       between storing it and its manifest update, or one still
                       running; ``scrapy cleanup --orphans`` removes them
    ``missing_thumb``  a thumbnail the manifest names is absent
    ``orphan_thumb``   a thumbnail of no manifest image
INFO
    ``pending``        an image an earlier repair took out of ``images``
                       (property ``missing`` list) that no crawl has stored again yet
Reported apart, never counted as orphans:
    temp files      names starting with ``.tmp-``: a write in progress, or one a
                    crash interrupted (anywhere in the store but ``quarantine/``)
    stray files     names under ``full/`` or ``thumbs/`` that are not content names

Repair (``repair=True``) is conservative and idempotent. Only errors are
repaired, under the manifest lock, after re-checking each one there (the full
scan runs without the lock so crawls are not held up):

- a mismatched file is moved to ``quarantine/<name>``, never deleted;
- every manifest image that is a ghost, was quarantined or has a bad path is
  taken out of ``images`` and put in the property's ``missing`` list (md5, path,
  reason, origins), and the near-duplicate group it left gets a new best member;
- URL-index rows (``index/urls.sqlite``) of every missing md5 whose file is
  absent are deleted, so the pre-download check fetches those URLs again; the
  next crawl that stores the md5 again puts it back in ``images``, and the next
  repair drops it from ``missing``.

Orphans, temp files and stray files are left alone: they may belong to a crawl
that is running. A second repair finds nothing to do and writes nothing.

Quality, per property, a score in [0, 1]: the mean of the components that are
defined (a component without data is left out, not counted as 0; a property
with none scores 0)::

    completeness = mean over sources announcing photos_expected > 0 of
                   min(1, images with an origin from that source / photos_expected)
    resolution   = share of images with a long side >= 1024 px
    coverage     = sources with status "ok" / sources tried
    acceptance   = 1 - rejected / (origins of stored images + rejected)
    score        = mean(defined components), rounded to 3 decimals

The report gives the components too (``rejected_share`` = 1 - acceptance).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from statistics import mean
from typing import Any

from phx_scraper.store import manifest as manifest_store
from phx_scraper.store.files import EXTENSIONS, TEMP_PREFIX, atomic_write, fsync_dir
from phx_scraper.store.neardup import quality_key
from phx_scraper.store.urlindex import INDEX_PATH

CHUNK = 1 << 20
QUARANTINE_DIR = "quarantine"
RUNS_DIR = "runs"
#: Long side from which an image counts as high resolution in the quality score.
HIGH_RES = 1024
ORPHAN_HINT = "run `scrapy cleanup --orphans` to remove"

_EXTS = "|".join(sorted(set(EXTENSIONS.values())))
_CONTENT = re.compile(rf"^full/(?P<dir>[0-9a-f]{{2}})/(?P<md5>[0-9a-f]{{32}})\.(?:{_EXTS})$")
_THUMB = re.compile(r"^thumbs/[1-9][0-9]*/[0-9a-f]{32}\.jpg$")
_CHECKED_DIRS = ("full", "thumbs")


class StoreNotFound(Exception):
    """The path holds no store (no manifest, no ``full/``)."""


@dataclass(frozen=True)
class Issue:
    kind: str
    path: str
    message: str
    md5: str | None = None
    properties: tuple[str, ...] = ()


@dataclass(frozen=True)
class Repair:
    action: str  # quarantined | marked_missing | missing_resolved | index_rows_deleted
    path: str
    detail: str


@dataclass(frozen=True)
class Quality:
    score: float
    completeness: float | None
    resolution: float | None
    coverage: float | None
    rejected_share: float | None
    images: int
    rejected: int


@dataclass
class Report:
    root: Path
    checked_at: str
    repair: bool = False
    files_checked: int = 0
    bytes_checked: int = 0
    #: Content files whose MD5 was computed (all of them, unless the check was quick).
    files_hashed: int = 0
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    pending: list[Issue] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    stray_files: list[str] = field(default_factory=list)
    repaired: list[Repair] = field(default_factory=list)
    quality: dict[str, Quality] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0

    def summary(self) -> dict[str, int]:
        return {
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "pending": len(self.pending),
            "temp_files": len(self.temp_files),
            "stray_files": len(self.stray_files),
            "repaired": len(self.repaired),
            "files_checked": self.files_checked,
            "bytes_checked": self.bytes_checked,
            "files_hashed": self.files_hashed,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": str(self.root),
            "checked_at": self.checked_at,
            "repair": self.repair,
            "exit_code": self.exit_code,
            "summary": self.summary(),
            "errors": [asdict(i) for i in self.errors],
            "warnings": [asdict(i) for i in self.warnings],
            "pending": [asdict(i) for i in self.pending],
            "temp_files": self.temp_files,
            "stray_files": self.stray_files,
            "repaired": [asdict(r) for r in self.repaired],
            "quality": {key: asdict(q) for key, q in sorted(self.quality.items())},
        }


def file_md5(path: Path) -> tuple[str, int]:
    """MD5 and size of a file, read in 1 MiB chunks (images can be large, stores larger)."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def reconcile(root: Path, *, repair: bool = False, rehash: Iterable[str] | None = None) -> Report:
    """Check the store at ``root`` against its manifest; with ``repair``, fix the errors.

    Every content file is hashed, unless ``rehash`` names the only ones to hash
    (the quick check after a crawl: the files it fetched, read as the check
    goes). The others are then taken to hold what their name says when their
    size is the manifest's; a file of another size is hashed, so truncation is
    still found.

    Memory does not follow the store's size: the manifest is read one property
    at a time, and what is compared (its references, the files found) is kept
    in a private temporary SQLite database, joined and sorted there (see
    ``_Ledger``).
    """
    if not root.is_dir() or not (
        (root / manifest_store.MANIFEST_NAME).exists() or (root / "full").is_dir()
    ):
        raise StoreNotFound(f"{root}: no store here (no {manifest_store.MANIFEST_NAME}, no full/)")
    report = Report(root=root, checked_at=manifest_store.utc_now(), repair=repair)
    with _Ledger.open() as ledger:
        with _shape_checked(root):
            index = _index(manifest_store.load(root, lazy=True), ledger)
        if rehash is not None:
            ledger.add_rehash(rehash)
        scan = _scan(root, ledger, quick=rehash is not None)
        report.files_checked, report.bytes_checked = ledger.file_totals()
        report.files_hashed = scan.hashed
        report.temp_files, report.stray_files = scan.temp, scan.stray
        report.errors = _check_entries(ledger) + _check_files(ledger)
        report.warnings = _orphans(ledger) + _check_thumbs(ledger)
    # Properties with a ``missing`` list are revisited too: an interrupted
    # repair may have left URL-index rows, or a crawl may have restored one.
    if repair and (report.errors or index.with_missing):
        report.repaired = _repair(root, report.errors)
        repaired_paths = {r.path for r in report.repaired}
        report.errors = [e for e in report.errors if e.path not in repaired_paths]
        with _shape_checked(root):
            index = _index(manifest_store.load(root, lazy=True))
    report.pending, report.quality = index.pending, index.quality
    return report


def reconcile_report(root: Path, run_id: str, report: Report) -> Path:
    """Write ``runs/<run_id>.reconcile.json`` atomically; returns its path."""
    path = root / RUNS_DIR / f"{run_id}.reconcile.json"
    atomic_write(path, json.dumps(report.to_dict(), indent=1, sort_keys=True).encode() + b"\n")
    return path


def log_report(report: Report, log: logging.Logger, limit: int = 10) -> None:
    """One log line per error (ERROR) and warning (WARNING), at most ``limit`` of each."""
    for level, issues, word in (
        (logging.ERROR, report.errors, "errors"),
        (logging.WARNING, report.warnings, "warnings"),
    ):
        for issue in issues[:limit]:
            log.log(level, "Reconcile %s: %s", issue.kind, issue.message)
        if len(issues) > limit:
            log.log(level, "Reconcile: %d more %s", len(issues) - limit, word)
    if report.temp_files or report.stray_files:
        log.info(
            "Reconcile: %d temp files, %d stray files (not orphans)",
            len(report.temp_files),
            len(report.stray_files),
        )


def quality(prop: dict[str, Any]) -> Quality:
    """The property's quality score; see the module docstring for the formula."""
    images, rejected, sources = prop["images"], prop["rejected"], prop["sources"]
    per_source = Counter(
        name for image in images for name in {o["source"] for o in image["origins"]}
    )
    ratios = [
        min(1.0, per_source[name] / entry["photos_expected"])
        for name, entry in sources.items()
        if isinstance(entry.get("photos_expected"), int) and entry["photos_expected"] > 0
    ]
    completeness = mean(ratios) if ratios else None
    resolution = (
        sum(max(i["width"], i["height"]) >= HIGH_RES for i in images) / len(images)
        if images
        else None
    )
    coverage = (
        sum(entry["status"] == "ok" for entry in sources.values()) / len(sources)
        if sources
        else None
    )
    attempts = sum(len(image["origins"]) for image in images) + len(rejected)
    rejected_share = len(rejected) / attempts if attempts else None
    acceptance = None if rejected_share is None else 1 - rejected_share
    defined = [c for c in (completeness, resolution, coverage, acceptance) if c is not None]
    return Quality(
        score=round(mean(defined), 3) if defined else 0.0,
        completeness=_round(completeness),
        resolution=_round(resolution),
        coverage=_round(coverage),
        rejected_share=_round(rejected_share),
        images=len(images),
        rejected=len(rejected),
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@contextmanager
def _shape_checked(root: Path) -> Iterator[None]:
    # A manifest that parses but lacks the keys store.manifest writes is as
    # unusable as one that does not parse: one clear error, not a traceback.
    try:
        yield
    except (KeyError, TypeError, AttributeError, sqlite3.ProgrammingError) as exc:
        # ProgrammingError: a value of a type the ledger cannot hold (a list as a size).
        raise manifest_store.ManifestError(
            f"{root / manifest_store.MANIFEST_NAME}: unexpected shape ({exc!r})"
        ) from exc


# -- the ledger ---------------------------------------------------------------


_LEDGER_SCHEMA = """
CREATE TABLE refs (
    path TEXT NOT NULL, key TEXT NOT NULL, md5 TEXT NOT NULL,
    bytes INTEGER NOT NULL, bad_path INTEGER NOT NULL
);
CREATE TABLE thumb_refs (path TEXT NOT NULL, key TEXT NOT NULL);
CREATE TABLE known (md5 TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE files (path TEXT PRIMARY KEY, md5 TEXT NOT NULL, size INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE unreadable (path TEXT PRIMARY KEY, error TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE thumbs (path TEXT PRIMARY KEY, md5 TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE rehash (path TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE hashed (path TEXT PRIMARY KEY, md5 TEXT NOT NULL, size INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE gone (path TEXT PRIMARY KEY) WITHOUT ROWID;
"""
#: The md5 a content file's name gives (``full/<2>/<md5>.<ext>``: after 8 characters).
_NAME_MD5 = "substr(f.path, 9, 32)"
_LEDGER_INDEXES = """
CREATE INDEX refs_path ON refs (path, key);
CREATE INDEX thumb_refs_path ON thumb_refs (path, key);
"""


class _Ledger:
    """The two sides of the check, the manifest's references and the files on disk,
    in a private temporary SQLite database (``sqlite3.connect("")``): SQLite keeps
    at most its page cache (2 MiB) of it in memory and spills the rest to a
    temporary file, so the check's memory does not grow with the store (a quick
    check of 10,000 photos peaks at 1.9 MiB of Python objects, 33.7 MiB with the
    dictionaries it replaced). Nothing of it is in the store, and it is gone
    when closed."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.executescript(_LEDGER_SCHEMA)

    @classmethod
    @contextmanager
    def open(cls) -> Iterator[_Ledger]:
        db = sqlite3.connect("")
        try:
            yield cls(db)
        finally:
            db.close()

    def add_property(self, key: str, prop: dict[str, Any]) -> None:
        """A property's images (and the md5s of its missing ones, whose thumbnails are kept)."""
        images = prop["images"]
        self.db.executemany(
            "INSERT INTO refs VALUES (?, ?, ?, ?, ?)",
            (
                (i["path"], key, i["md5"], i["bytes"], i["path"] != _content_path_of(i))
                for i in images
            ),
        )
        md5s = [i["md5"] for i in images] + [m["md5"] for m in prop.get("missing", ())]
        self.db.executemany("INSERT OR IGNORE INTO known VALUES (?)", ((m,) for m in md5s))
        self.db.executemany(
            "INSERT INTO thumb_refs VALUES (?, ?)",
            ((thumb, key) for i in images for thumb in i["thumbs"].values()),
        )

    def indexed(self) -> None:
        """The manifest side is complete: index it for the joins."""
        self.db.executescript(_LEDGER_INDEXES)

    def add_rehash(self, paths: Iterable[str]) -> None:
        self.db.executemany("INSERT OR IGNORE INTO rehash VALUES (?)", ((p,) for p in paths))

    def add_files(self, files: Iterable[tuple[str, str, int]]) -> None:
        """Content files found, as ``(path, md5 of the name, size)``: taken to hold
        what their name says until hashed."""
        self.db.executemany("INSERT INTO files VALUES (?, ?, ?)", files)

    def to_hash(self, quick: bool) -> Iterator[str]:
        """The content files to hash, by path: all, or when ``quick`` those named
        by ``add_rehash`` and those whose size is not the manifest's (its last
        entry's). Read as they are hashed; results go to other tables until
        ``hashes_done``."""
        where = (
            " WHERE f.path IN (SELECT path FROM rehash) OR f.size != coalesce("
            "(SELECT bytes FROM refs r WHERE r.path = f.path ORDER BY r.rowid DESC LIMIT 1),"
            " f.size)"
            if quick
            else ""
        )
        for (rel,) in self.db.execute(f"SELECT f.path FROM files f{where} ORDER BY f.path"):
            yield rel

    def hashed(self, rel: str, md5: str, size: int) -> None:
        self.db.execute("INSERT INTO hashed VALUES (?, ?, ?)", (rel, md5, size))

    def gone(self, rel: str, error: str | None = None) -> None:
        """A content file that could not be hashed: removed since the walk, or
        unreadable (``error``)."""
        self.db.execute("INSERT INTO gone VALUES (?)", (rel,))
        if error is not None:
            self.add_unreadable(rel, error)

    def hashes_done(self) -> None:
        self.db.executescript(
            """
            UPDATE files SET (md5, size) = (
                SELECT md5, size FROM hashed h WHERE h.path = files.path
            ) WHERE path IN (SELECT path FROM hashed);
            DELETE FROM files WHERE path IN (SELECT path FROM gone);
            """
        )

    def add_unreadable(self, rel: str, error: str) -> None:
        self.db.execute("INSERT INTO unreadable VALUES (?, ?)", (rel, error))

    def add_thumb(self, rel: str) -> None:
        self.db.execute("INSERT INTO thumbs VALUES (?, ?)", (rel, rel.rpartition("/")[2][:32]))

    def file_totals(self) -> tuple[int, int]:
        count, size = self.db.execute("SELECT count(*), total(size) FROM files").fetchone()
        return int(count), int(size)

    def grouped(self, query: str) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
        """Rows of ``query`` (ordered by its first column, a path) grouped by path."""
        for rel, rows in groupby(self.db.execute(query), key=itemgetter(0)):
            yield rel, list(rows)


def _index(manifest: manifest_store.Manifest, ledger: _Ledger | None = None) -> _Index:
    """One pass over the manifest: its references go to ``ledger``, the per-property
    results (pending images, quality) are kept."""
    index = _Index()
    properties = manifest["properties"]
    for key in sorted(properties):
        prop = properties[key]  # parsed now: one property is held at a time
        index.with_missing = index.with_missing or "missing" in prop
        index.pending += _pending(key, prop)
        index.quality[key] = quality(prop)
        if ledger is not None:
            ledger.add_property(key, prop)
    if ledger is not None:
        ledger.indexed()
    return index


@dataclass
class _Index:
    """What reconciliation keeps of the manifest once its references are in the ledger."""

    pending: list[Issue] = field(default_factory=list)
    quality: dict[str, Quality] = field(default_factory=dict)
    #: Whether a property has a ``missing`` list.
    with_missing: bool = False


# -- scanning ---------------------------------------------------------------


@dataclass
class _Scan:
    temp: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)
    hashed: int = 0


def _scan(root: Path, ledger: _Ledger, *, quick: bool = False) -> _Scan:
    """Walk the store into ``ledger`` (one ``lstat`` per content file), then hash
    the content files: all of them, or when ``quick`` those the ledger names and
    those whose size is not the manifest's (see ``reconcile``)."""
    scan = _Scan()
    for rel_dir, dirs, files in _walk(root):
        checked = rel_dir.split("/", 1)[0] in _CHECKED_DIRS
        prefix = "" if rel_dir == "." else f"{rel_dir}/"
        if checked:
            scan.stray += [f"{prefix}{d.name}/" for d in dirs if d.is_symlink()]
        content: list[tuple[str, str, int]] = []
        for entry in files:
            rel = prefix + entry.name
            if entry.name.startswith(TEMP_PREFIX):
                scan.temp.append(rel)
            elif checked:
                _classify(entry, rel, scan, ledger, content)
        ledger.add_files(content)
    for rel in ledger.to_hash(quick):
        try:
            ledger.hashed(rel, *file_md5(root / rel))
            scan.hashed += 1
        except FileNotFoundError:
            ledger.gone(rel)  # removed since the walk (cleanup): absent like any other
        except OSError as exc:
            ledger.gone(rel, str(exc))
    ledger.hashes_done()
    return scan


_Entries = list[os.DirEntry[str]]


def _walk(root: Path) -> Iterator[tuple[str, _Entries, _Entries]]:
    """Each directory of the store in a stable order, ``quarantine/`` left out:
    its relative path, its directories and its other entries, by name (as
    ``os.walk`` sorts them: a symlink to a directory is a directory, not walked).

    ``full/`` and ``thumbs/`` are walked from their own paths, so either may be
    a symlink to a bigger disk; symlinks below them are not followed. A
    directory that cannot be listed is skipped, as ``os.walk`` does.
    """

    def walk(path: Path, rel: str, skip: tuple[str, ...] = ()) -> Iterator[Any]:
        try:
            with os.scandir(path) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError:
            return
        dirs = [e for e in entries if _is_dir(e)]
        yield rel, dirs, [e for e in entries if not _is_dir(e)]
        for entry in dirs:
            if not entry.is_symlink() and entry.name not in skip:
                yield from walk(path / entry.name, f"{rel}/{entry.name}".removeprefix("./"))

    yield from walk(root, ".", (*_CHECKED_DIRS, QUARANTINE_DIR))
    for top in _CHECKED_DIRS:
        if (root / top).is_dir():
            yield from walk(root / top, top)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """A directory, or a symlink to one; a symlink loop or an unreachable target is
    not (``os.walk`` lists them with the files)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _classify(
    entry: os.DirEntry[str],
    rel: str,
    scan: _Scan,
    ledger: _Ledger,
    content: list[tuple[str, str, int]],
) -> None:
    """Sort one file of ``full/`` or ``thumbs/``: content files are added to
    ``content`` as ``(path, md5 of the name, size)``, to be hashed or trusted."""
    name = _CONTENT.match(rel)
    if entry.is_symlink():
        scan.stray.append(rel)
    elif name and name["md5"].startswith(name["dir"]):
        try:
            content.append((rel, name["md5"], entry.stat(follow_symlinks=False).st_size))
        except FileNotFoundError:
            pass  # removed since the listing (cleanup): absent like any other missing file
        except OSError as exc:
            ledger.add_unreadable(rel, str(exc))
    elif _THUMB.match(rel):
        ledger.add_thumb(rel)
    else:
        scan.stray.append(rel)


# -- analysis ---------------------------------------------------------------


def _check_entries(ledger: _Ledger) -> list[Issue]:
    """Manifest side: every image entry names its md5 and has a readable file."""
    errors = []
    rows = ledger.grouped(
        "SELECT r.path, r.key, r.md5, r.bad_path, u.error, f.path IS NOT NULL FROM refs r"
        " LEFT JOIN unreadable u ON u.path = r.path LEFT JOIN files f ON f.path = r.path"
        " ORDER BY r.path, r.key, r.rowid"
    )
    for rel, entries in rows:
        keys = _keys(entries)
        where = f"property {', '.join(keys)}"
        _, _, md5, _, error, present = entries[0]
        if any(bad for *_, bad, _, _ in entries):
            message = f"{rel}: path does not name the entry's md5 {md5} ({where})"
            errors.append(Issue("bad_path", rel, message, md5, keys))
        elif error is not None:
            errors.append(Issue("unreadable", rel, f"{rel}: {error} ({where})", md5, keys))
        elif not present:
            message = f"{rel}: in the manifest ({where}), no file"
            errors.append(Issue("ghost", rel, message, md5, keys))
    unreferenced = ledger.db.execute(
        "SELECT path, error FROM unreadable WHERE path NOT IN (SELECT path FROM refs) ORDER BY path"
    )
    for rel, error in unreferenced:
        errors.append(Issue("unreadable", rel, f"{rel}: {error} (unreferenced)"))
    return errors


def _check_files(ledger: _Ledger) -> list[Issue]:
    """File side: every content file hashes to its name."""
    errors = []
    rows = ledger.grouped(
        "SELECT f.path, r.key, f.md5, f.size, r.bytes FROM files f"
        " LEFT JOIN refs r ON r.path = f.path"
        f" WHERE f.md5 != {_NAME_MD5} ORDER BY f.path, r.key"
    )
    for rel, entries in rows:
        name_md5 = rel.rpartition("/")[2][:32]
        keys = _keys(entries)
        _, _, actual, size, _ = entries[0]
        expected = max((e[4] for e in entries if e[4] is not None), default=0)
        truncated = f", truncated: {size} of {expected} bytes" if size < expected else ""
        where = f"property {', '.join(keys)}" if keys else "unreferenced"
        message = f"{rel}: MD5 of its {size} bytes is {actual}, not its name ({where}{truncated})"
        errors.append(Issue("mismatch", rel, message, name_md5, keys))
    return errors


def _orphans(ledger: _Ledger) -> list[Issue]:
    """Content files that hash to their name and that no manifest entry names."""
    rows = ledger.db.execute(
        f"SELECT path FROM files f WHERE md5 = {_NAME_MD5}"
        " AND path NOT IN (SELECT path FROM refs) ORDER BY path"
    )
    return [
        Issue(
            "orphan",
            rel,
            f"{rel}: no manifest entry names it; {ORPHAN_HINT}",
            rel.rpartition("/")[2][:32],
        )
        for (rel,) in rows
    ]


def _check_thumbs(ledger: _Ledger) -> list[Issue]:
    warnings = []
    rows = ledger.grouped(
        "SELECT path, key FROM thumb_refs WHERE path NOT IN (SELECT path FROM thumbs)"
        " ORDER BY path, key"
    )
    for rel, entries in rows:
        props = _keys(entries)
        message = f"{rel}: thumbnail in the manifest (property {', '.join(props)}), no file"
        warnings.append(Issue("missing_thumb", rel, message, None, props))
    orphans = ledger.db.execute(
        "SELECT path FROM thumbs WHERE md5 NOT IN (SELECT md5 FROM known) ORDER BY path"
    )
    for (rel,) in orphans:
        warnings.append(Issue("orphan_thumb", rel, f"{rel}: thumbnail of no manifest image"))
    return warnings


def _keys(rows: list[tuple[Any, ...]]) -> tuple[str, ...]:
    """The distinct property keys (second column) of a path's rows, sorted."""
    return tuple(sorted({row[1] for row in rows if row[1] is not None}))


def _content_path_of(image: dict[str, Any]) -> str:
    """The path ``image`` must have: its md5 as name, its own extension."""
    ext = image["path"].rpartition(".")[2]
    return f"full/{image['md5'][:2]}/{image['md5']}.{ext}"


def _pending(key: str, prop: dict[str, Any]) -> list[Issue]:
    pending = []
    stored = {image["md5"] for image in prop["images"]}
    for entry in prop.get("missing", ()):
        if entry["md5"] not in stored:
            message = (
                f"{entry['path']}: {entry['reason']} since {entry['found_at']} "
                f"(property {key}); the next crawl fetches it again"
            )
            pending.append(Issue("pending", entry["path"], message, entry["md5"], (key,)))
    return pending


# -- repair -----------------------------------------------------------------


def _repair(root: Path, errors: list[Issue]) -> list[Repair]:
    repaired: list[Repair] = []
    reasons = {e.path: e.kind for e in errors if e.kind in ("ghost", "mismatch", "bad_path")}
    with manifest_store.lock(root):
        manifest = manifest_store.load(root)
        before = json.dumps(manifest, sort_keys=True)
        quarantined = set()
        for rel, kind in sorted(reasons.items()):
            if kind == "mismatch" and (moved := _quarantine(root, rel)):
                quarantined.add(rel)
                repaired.append(Repair("quarantined", rel, moved))
        found_at = manifest_store.utc_now()
        for key, prop in sorted(manifest["properties"].items()):
            repaired += _mark_missing(root, key, prop, reasons, quarantined, found_at)
        if json.dumps(manifest, sort_keys=True) != before:
            manifest_store.save(root, manifest)
        repaired += _forget_urls(root, manifest)
    return repaired


def _quarantine(root: Path, rel: str) -> str | None:
    """Move a mismatched file to ``quarantine/``, re-hashing it first under the lock."""
    path = root / rel
    try:
        actual, _ = file_md5(path)
    except FileNotFoundError:
        return None
    if actual == path.name.partition(".")[0]:
        return None  # a good copy replaced it since the scan
    target_dir = root / QUARANTINE_DIR
    target_dir.mkdir(exist_ok=True)
    target = target_dir / path.name
    n = 0
    while target.exists():  # an earlier quarantine of the same name is kept too
        n += 1
        target = target_dir / f"{path.name}.{n}"
    os.rename(path, target)
    fsync_dir(target_dir)
    fsync_dir(path.parent)
    return target.relative_to(root).as_posix()


def _mark_missing(
    root: Path,
    key: str,
    prop: dict[str, Any],
    reasons: dict[str, str],
    quarantined: set[str],
    found_at: str,
) -> list[Repair]:
    lost: dict[str, tuple[dict[str, Any], str]] = {}
    for image in prop["images"]:
        rel = image["path"]
        if rel not in reasons:
            continue
        if rel != _content_path_of(image):
            lost[image["md5"]] = (image, "bad_path")
        elif rel in quarantined:
            lost[image["md5"]] = (image, "mismatch")
        elif not (root / rel).is_file():
            lost[image["md5"]] = (image, "ghost")
    prop["images"] = [image for image in prop["images"] if image["md5"] not in lost]
    stored = {image["md5"] for image in prop["images"]}
    repaired = []
    missing = []
    for entry in prop.get("missing", ()):
        if entry["md5"] in stored:
            repaired.append(Repair("missing_resolved", entry["path"], f"property {key}"))
        elif entry["md5"] not in lost:
            missing.append(entry)
    for md5, (image, reason) in lost.items():
        missing.append(
            {
                "md5": md5,
                "path": image["path"],
                "reason": reason,
                "found_at": found_at,
                "origins": image["origins"],
            }
        )
        repaired.append(Repair("marked_missing", image["path"], f"property {key}: {reason}"))
    if missing:
        prop["missing"] = missing
    else:
        prop.pop("missing", None)
    _regroup(prop["images"], {image.get("group") for image, _ in lost.values()} - {None})
    return repaired


def _regroup(images: list[dict[str, Any]], groups: set[Any]) -> None:
    """Give the groups that lost a member a best one again, as ``neardup.assign_groups`` would.

    Groups are not recomputed from the hashes: the thresholds are crawl
    settings, and the next crawl of the property regroups anyway.
    """
    for group in groups:
        members = [image for image in images if image.get("group") == group]
        if not members:
            continue
        best = max(members, key=quality_key)
        for image in members:
            image["group"] = f"g{best['md5'][:12]}" if len(members) > 1 else None
            image["best"] = image is best


def _forget_urls(root: Path, manifest: manifest_store.Manifest) -> list[Repair]:
    """Delete URL-index rows of missing md5s whose file is absent, so they are fetched again."""
    index = root / INDEX_PATH
    paths = {
        entry["md5"]: entry["path"]
        for prop in manifest["properties"].values()
        for entry in prop.get("missing", ())
        if not _content_exists(root, entry["md5"])
    }
    if not paths or not index.exists():
        return []
    db = sqlite3.connect(index, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=30000")
        repaired = []
        for md5, rel in sorted(paths.items()):
            deleted = db.execute("DELETE FROM urls WHERE md5 = ?", (md5,)).rowcount
            if deleted:
                repaired.append(Repair("index_rows_deleted", rel, f"{deleted} URL(s) of {md5}"))
        return repaired
    finally:
        db.close()


def _content_exists(root: Path, md5: str) -> bool:
    return any((root / f"full/{md5[:2]}/{md5}.{ext}").is_file() for ext in set(EXTENSIONS.values()))
