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
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
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


@dataclass
class _Scan:
    content: dict[str, tuple[str, int]] = field(default_factory=dict)  # path -> (md5, size)
    unreadable: dict[str, str] = field(default_factory=dict)  # path -> error
    thumbs: set[str] = field(default_factory=set)
    temp: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)
    hashed: int = 0


def file_md5(path: Path) -> tuple[str, int]:
    """MD5 and size of a file, read in 1 MiB chunks (images can be large, stores larger)."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def reconcile(root: Path, *, repair: bool = False, rehash: Collection[str] | None = None) -> Report:
    """Check the store at ``root`` against its manifest; with ``repair``, fix the errors.

    Every content file is hashed, unless ``rehash`` names the only ones to hash
    (the quick check after a crawl: the files it wrote). The others are then
    taken to hold what their name says when their size is the manifest's; a
    file of another size is hashed, so truncation is still found.
    """
    if not root.is_dir() or not (
        (root / manifest_store.MANIFEST_NAME).exists() or (root / "full").is_dir()
    ):
        raise StoreNotFound(f"{root}: no store here (no {manifest_store.MANIFEST_NAME}, no full/)")
    # One pass over the manifest, read lazily: one property is parsed at a time.
    with _shape_checked(root):
        index = _index(manifest_store.load(root, lazy=True))
    sizes = None
    if rehash is not None:
        sizes = {rel: entries[-1][1]["bytes"] for rel, entries in index.refs.items()}
        sizes.update((rel, -1) for rel in rehash)  # -1: never a size, always hashed
    scan = _scan(root, sizes)
    report = Report(root=root, checked_at=manifest_store.utc_now(), repair=repair)
    report.files_checked = len(scan.content)
    report.files_hashed = scan.hashed
    report.bytes_checked = sum(size for _, size in scan.content.values())
    report.temp_files, report.stray_files = scan.temp, scan.stray
    report.errors, report.warnings = _analyse(index, scan)
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
    except (KeyError, TypeError, AttributeError) as exc:
        raise manifest_store.ManifestError(
            f"{root / manifest_store.MANIFEST_NAME}: unexpected shape ({exc!r})"
        ) from exc


# -- scanning ---------------------------------------------------------------


def _scan(root: Path, sizes: dict[str, int] | None = None) -> _Scan:
    """Walk the store; content files are hashed, or with ``sizes`` only those
    whose size is not the one given (see ``reconcile``)."""
    scan = _Scan()
    for dirpath, dirnames, filenames in _walk(root):
        base = Path(dirpath)
        rel_dir = base.relative_to(root).as_posix()
        checked = rel_dir.split("/", 1)[0] in _CHECKED_DIRS
        for name in dirnames:
            if checked and (base / name).is_symlink():
                scan.stray.append(f"{rel_dir}/{name}/")
        for name in sorted(filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if name.startswith(TEMP_PREFIX):
                scan.temp.append(rel)
            elif checked:
                _classify(root, rel, scan, sizes)
    return scan


def _walk(root: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """The store's directories in a stable order, ``quarantine/`` left out.

    ``full/`` and ``thumbs/`` are walked from their own paths, so either may be
    a symlink to a bigger disk; symlinks below them are not followed.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d not in (*_CHECKED_DIRS, QUARANTINE_DIR)]
        dirnames.sort()
        yield dirpath, dirnames, filenames
    for top in _CHECKED_DIRS:
        for dirpath, dirnames, filenames in os.walk(root / top):
            dirnames.sort()
            yield dirpath, dirnames, filenames


def _classify(root: Path, rel: str, scan: _Scan, sizes: dict[str, int] | None) -> None:
    path = root / rel
    content = _CONTENT.match(rel)
    if path.is_symlink():
        scan.stray.append(rel)
    elif content and content["md5"].startswith(content["dir"]):
        try:
            if sizes is not None and (size := path.stat().st_size) == sizes.get(rel, size):
                scan.content[rel] = (content["md5"], size)
                return
            scan.content[rel] = file_md5(path)
            scan.hashed += 1
        except FileNotFoundError:
            pass  # removed since the walk (cleanup): absent like any other missing file
        except OSError as exc:
            scan.unreadable[rel] = str(exc)
    elif _THUMB.match(rel):
        scan.thumbs.add(rel)
    else:
        scan.stray.append(rel)


# -- analysis ---------------------------------------------------------------


_Refs = dict[str, list[tuple[str, dict[str, Any]]]]  # path -> [(property_hash, image)]


@dataclass
class _Index:
    """What reconciliation needs of the manifest, gathered in one pass."""

    refs: _Refs = field(default_factory=dict)
    thumb_refs: dict[str, set[str]] = field(default_factory=dict)
    #: md5 of every image and missing image (whose thumbnails are kept).
    known: set[str] = field(default_factory=set)
    pending: list[Issue] = field(default_factory=list)
    quality: dict[str, Quality] = field(default_factory=dict)
    #: Whether a property has a ``missing`` list.
    with_missing: bool = False


def _index(manifest: manifest_store.Manifest) -> _Index:
    index = _Index()
    for key, prop in sorted(manifest["properties"].items()):
        # A missing image's thumbnails are kept for when a crawl stores it again.
        index.known.update(entry["md5"] for entry in prop.get("missing", ()))
        index.with_missing = index.with_missing or "missing" in prop
        for image in prop["images"]:
            # What the checks read of an entry, not the whole entry: one
            # property is held at a time.
            slim = {"md5": image["md5"], "path": image["path"], "bytes": image["bytes"]}
            index.refs.setdefault(image["path"], []).append((key, slim))
            index.known.add(image["md5"])
            for thumb in image["thumbs"].values():
                index.thumb_refs.setdefault(thumb, set()).add(key)
        index.pending += _pending(key, prop)
        index.quality[key] = quality(prop)
    return index


def _analyse(index: _Index, scan: _Scan) -> tuple[list[Issue], list[Issue]]:
    file_errors, orphans = _check_files(index.refs, scan)
    errors = _check_entries(index.refs, scan) + file_errors
    return errors, orphans + _check_thumbs(index.thumb_refs, index.known, scan)


def _check_entries(refs: _Refs, scan: _Scan) -> list[Issue]:
    """Manifest side: every image entry names its md5 and has a readable file."""
    errors = []
    for rel, entries in sorted(refs.items()):
        keys = _keys(entries)
        where = f"property {', '.join(keys)}"
        md5 = entries[0][1]["md5"]
        if any(rel != _content_path_of(image) for _, image in entries):
            message = f"{rel}: path does not name the entry's md5 {md5} ({where})"
            errors.append(Issue("bad_path", rel, message, md5, keys))
        elif rel in scan.unreadable:
            message = f"{rel}: {scan.unreadable[rel]} ({where})"
            errors.append(Issue("unreadable", rel, message, md5, keys))
        elif rel not in scan.content:
            message = f"{rel}: in the manifest ({where}), no file"
            errors.append(Issue("ghost", rel, message, md5, keys))
    for rel in sorted(scan.unreadable.keys() - refs.keys()):
        errors.append(Issue("unreadable", rel, f"{rel}: {scan.unreadable[rel]} (unreferenced)"))
    return errors


def _check_files(refs: _Refs, scan: _Scan) -> tuple[list[Issue], list[Issue]]:
    """File side: every content file hashes to its name and is referenced."""
    errors, orphans = [], []
    for rel, (actual, size) in sorted(scan.content.items()):
        name_md5 = rel.rpartition("/")[2][:32]
        entries = refs.get(rel, [])
        keys = _keys(entries)
        if actual != name_md5:
            expected = max((image["bytes"] for _, image in entries), default=0)
            truncated = f", truncated: {size} of {expected} bytes" if size < expected else ""
            where = f"property {', '.join(keys)}" if keys else "unreferenced"
            message = (
                f"{rel}: MD5 of its {size} bytes is {actual}, not its name ({where}{truncated})"
            )
            errors.append(Issue("mismatch", rel, message, name_md5, keys))
        elif not entries:
            message = f"{rel}: no manifest entry names it; {ORPHAN_HINT}"
            orphans.append(Issue("orphan", rel, message, name_md5))
    return errors, orphans


def _check_thumbs(thumb_refs: dict[str, set[str]], known: set[str], scan: _Scan) -> list[Issue]:
    warnings = []
    for rel, keys in sorted(thumb_refs.items()):
        if rel not in scan.thumbs:
            props = tuple(sorted(keys))
            message = f"{rel}: thumbnail in the manifest (property {', '.join(props)}), no file"
            warnings.append(Issue("missing_thumb", rel, message, None, props))
    for rel in sorted(scan.thumbs):
        if rel.rpartition("/")[2][:32] not in known:
            warnings.append(Issue("orphan_thumb", rel, f"{rel}: thumbnail of no manifest image"))
    return warnings


def _keys(entries: list[tuple[str, dict[str, Any]]]) -> tuple[str, ...]:
    return tuple(sorted({key for key, _ in entries}))


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
