"""The manifest: ``<store>/manifest.json``, what downstream tools read.

Shape (schema_version 1)::

    {"schema_version": 1, "updated_at": "...Z",
     "properties": {"<property_hash>": {
         "property_hash", "address", "canonical_address",
         "sources": {"<source>": {"status", "reason", "id", "ids", "run_id", "time",
                                 "photos_expected", "photos_stored", "facts"}},
         "images": [{"md5", "path", "thumbs", "source_md5", "width", "height", "bytes",
                     "phash", "dhash", "group", "best",
                     "origins": [{"source", "url", "photo_id", "position", "caption",
                                  "listing_id", "first_seen_run", "last_seen_run"}],
                     "first_seen_run", "last_seen_run"}],
         "rejected": [{"source", "url", "photo_id", "reason", "run_id"}]}}}

Writes are read-merge-write of what is on disk, under the manifest lock,
atomically (``store.files.atomic_write``), so an entry written by an earlier
or concurrent crawl is never lost.
"""

from __future__ import annotations

import io
import json
import os
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from phx_scraper.store.files import atomic_write
from phx_scraper.store.locks import manifest_lock
from phx_scraper.store.neardup import Thresholds, assign_groups

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"

Manifest = dict[str, Any]


class ManifestError(Exception):
    """The manifest on disk cannot be used (the message says where and why)."""


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def empty() -> Manifest:
    return {"schema_version": SCHEMA_VERSION, "updated_at": utc_now(), "properties": {}}


def load(root: Path, *, lazy: bool = False) -> Manifest:
    """The manifest on disk (an empty one when there is none).

    ``lazy``: for readers of a large store. Its properties are a read-only
    mapping that keeps where each property's line of JSON is in the file, and
    reads and parses it when asked for (a fresh copy each time), so what it
    holds follows the number of properties, not of images. It reads the file
    as it was when loaded, even once a checkpoint has replaced it (it keeps the
    file open). A manifest not written one property per line (by an older
    version) is read whole.
    """
    path = root / MANIFEST_NAME
    if lazy:
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            return empty()
        lines = _Lines.read(fh, path)
        if lines is not None:
            return lines
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return empty()
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc}); nothing was changed") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("properties"), dict):
        raise ManifestError(f"{path}: no 'properties' object; nothing was changed")
    return _checked(manifest, path)


def _checked(manifest: Manifest, path: Path) -> Manifest:
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ManifestError(
            f"{path}: schema_version {version!r}, this phx_scraper reads {SCHEMA_VERSION}"
        )
    return manifest


class _Lines(Mapping[str, dict[str, Any]]):
    """A manifest's properties as ``save`` writes them, one line of JSON each,
    read from the open file when asked for."""

    def __init__(self, path: Path, fh: BinaryIO, spans: dict[str, tuple[int, int]]) -> None:
        self.path = path
        self.spans = spans  # property_hash -> (offset, size) of its line
        self.fh = fh
        weakref.finalize(self, fh.close)

    def __getitem__(self, key: str) -> dict[str, Any]:
        offset, size = self.spans[key]
        _, value = _split(os.pread(self.fh.fileno(), size, offset).decode("utf-8"), 2)
        return _parse(self.path, key, value)

    def __contains__(self, key: object) -> bool:
        return key in self.spans  # Mapping's own would read and parse the line

    def __iter__(self) -> Iterator[str]:
        return iter(self.spans)

    def __len__(self) -> int:
        return len(self.spans)

    @classmethod
    def read(cls, fh: BinaryIO, path: Path) -> Manifest | None:
        """The manifest in ``fh`` (which it then owns) with lazy properties, or
        None when it is not in ``save``'s layout."""
        try:
            lines = _lines(fh)
            manifest = _header(lines, path)
            spans = {key: (line.offset, line.size) for key, _, line in _rows(lines)}
        except _OtherLayout:
            fh.close()
            return None
        except BaseException:
            fh.close()
            raise
        manifest["properties"] = cls(path, fh, spans)
        return manifest


def _parse(path: Path, key: str, line: str) -> dict[str, Any]:
    """One property's line of JSON, parsed."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: property {key}: not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise ManifestError(f"{path}: property {key} is not an object")
    return value


class _OtherLayout(Exception):
    """The file is not in ``save``'s layout (an older version wrote it indented)."""


class _Line(NamedTuple):
    offset: int
    size: int
    text: str


def _lines(fh: BinaryIO) -> Iterator[_Line]:
    """The lines of a file opened in binary mode, each with where it is."""
    offset = 0
    for raw in fh:
        yield _Line(offset, len(raw), raw.decode("utf-8"))
        offset += len(raw)


def _header(lines: Iterator[_Line], path: Path) -> Manifest:
    """The top-level fields before ``"properties": {`` (checked)."""
    manifest: Manifest = {}
    first = next(lines, None)
    if first is None or first.text != "{\n":
        raise _OtherLayout
    for line in lines:
        key, value = _split(line.text, 1)
        if key == "properties":
            if value != "{":
                raise _OtherLayout
            return _checked(manifest, path)
        try:
            manifest[key] = json.loads(value)
        except json.JSONDecodeError:
            raise _OtherLayout from None
    raise _OtherLayout


def _rows(lines: Iterator[_Line]) -> Iterator[tuple[str, str, _Line]]:
    """``(property_hash, JSON text, line)`` of each property line, read as they are needed."""
    for line in lines:
        if line.text == " }\n":
            if [rest.text for rest in lines] != ["}\n"]:
                raise _OtherLayout
            return
        key, value = _split(line.text, 2)
        if not (value.startswith("{") and value.endswith("}")):
            raise _OtherLayout  # an object spread over lines: indented
        yield key, value, line
    raise _OtherLayout


_DECODER = json.JSONDecoder()


def _split(line: str, indent: int) -> tuple[str, str]:
    """``("key", "value text")`` of a ``"key": value,`` line."""
    try:
        key, end = _DECODER.raw_decode(line, indent)
    except json.JSONDecodeError:
        raise _OtherLayout from None
    if not isinstance(key, str) or line[end : end + 2] != ": ":
        raise _OtherLayout
    return key, line[end + 2 :].rstrip("\n").removesuffix(",")


def save(root: Path, manifest: Manifest) -> None:
    """Write a whole manifest (as ``load`` gives it, not lazy: that one is read-only)."""
    properties = manifest["properties"]
    rows = ((key, compact(properties[key])) for key in sorted(properties))
    atomic_write(root / MANIFEST_NAME, _writer(manifest, rows))


def _writer(header: Manifest, rows: Iterable[tuple[str, str]]) -> Callable[[BinaryIO], None]:
    """What writes a manifest: ``header``'s top-level fields (``updated_at`` set to
    now), then one line per property from ``rows``.

    Each property's JSON comes from json's C encoder (an indented dump goes
    through its pure-Python one, 6x slower); ``scrapy show`` prints a property
    indented. Written in pieces: a large manifest is never held whole as text.
    """
    header["updated_at"] = utc_now()

    def write(fh: BinaryIO) -> None:
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="\n")
        text.write("{")
        for key, value in sorted(header.items()):
            if key != "properties":
                text.write(f"\n {compact(key)}: {compact(value)},")
        text.write('\n "properties": {')
        for n, (key, line) in enumerate(rows):
            text.write(f"{',' if n else ''}\n  {compact(key)}: {line}")
        text.write("\n }\n}\n")
        text.flush()
        text.detach()

    return write


def compact(value: object) -> str:
    """One line of JSON, keys sorted: how the manifest and the run files write objects."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def lock(root: Path, timeout: float = 120) -> AbstractContextManager[None]:
    """The manifest lock (see ``store.locks``): one read-merge-write at a time."""
    return manifest_lock(root, timeout)


def update(
    root: Path, records: Iterable[dict[str, Any]], thresholds: Thresholds | None = None
) -> None:
    """Merge crawl records into the manifest on disk and write it back.

    Streamed: the lines of the properties the records do not touch are copied
    from the old file to the new one as they are read, and only the touched
    ones are parsed, so a checkpoint's memory follows the crawl, not the store."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(record["property_hash"], []).append(record)
    thresholds = thresholds or Thresholds()
    path = root / MANIFEST_NAME
    with lock(root):
        try:
            with path.open("rb") as old:
                lines = _lines(old)
                header = _header(lines, path)
                rows = _merged_rows(_rows(lines), grouped, thresholds, path)
                atomic_write(path, _writer(header, rows))
            return
        except (FileNotFoundError, _OtherLayout):
            pass  # no manifest yet, or an older layout: read it whole
        manifest = load(root)
        properties = manifest["properties"]
        for key, records in grouped.items():
            properties[key] = _merged(key, properties.get(key), records, thresholds)
        save(root, manifest)


def _merged_rows(
    rows: Iterator[tuple[str, str, _Line]],
    grouped: dict[str, list[dict[str, Any]]],
    thresholds: Thresholds,
    path: Path,
) -> Iterator[tuple[str, str]]:
    """``rows`` with the records of ``grouped`` merged in, then the properties they add."""
    left = dict(grouped)
    for key, line, _ in rows:
        if key in left:
            line = compact(_merged(key, _parse(path, key, line), left.pop(key), thresholds))
        yield key, line
    for key in sorted(left):
        yield key, compact(_merged(key, None, left[key], thresholds))


def _merged(
    key: str, prop: dict[str, Any] | None, records: list[dict[str, Any]], thresholds: Thresholds
) -> dict[str, Any]:
    one: Manifest = {"properties": {key: prop} if prop is not None else {}}
    for record in records:
        merge_record(one, record)
    merged: dict[str, Any] = one["properties"][key]
    assign_groups(merged["images"], thresholds)
    return merged


def merge_record(manifest: Manifest, record: dict[str, Any]) -> None:
    """Merge one property/source record (a ``PropertyImagesItem`` as a dict)."""
    run_id = record["run_id"]
    source = record["source"]
    prop = manifest["properties"].setdefault(
        record["property_hash"],
        {
            "property_hash": record["property_hash"],
            "address": record["address"],
            "canonical_address": record["canonical_address"],
            "sources": {},
            "images": [],
            "rejected": [],
        },
    )
    prop["sources"][source] = {
        "status": record["status"],
        "reason": record.get("reason"),
        "id": record.get("source_id"),
        "ids": record.get("ids") or {},
        "run_id": run_id,
        "time": utc_now(),
        "photos_expected": record.get("photo_count"),
        "photos_listed": len(record.get("photos") or ()),
        "photos_stored": len(record.get("images") or ()),
        "facts": record.get("facts") or {},
    }
    photos = {p["url"]: p for p in record.get("photos") or ()}
    images = {image["md5"]: image for image in prop["images"]}
    for stored in record.get("images") or ():
        image = images.get(stored["md5"])
        if image is None:
            image = {
                "md5": stored["md5"],
                "path": stored["path"],
                "source_md5": stored["source_md5"],
                "width": stored["width"],
                "height": stored["height"],
                "bytes": stored["bytes"],
                "phash": stored["phash"],
                "dhash": stored["dhash"],
                "thumbs": stored["thumbs"],
                "origins": [],
                "first_seen_run": run_id,
            }
            images[stored["md5"]] = image
            prop["images"].append(image)
        image["last_seen_run"] = run_id
        _merge_origin(image, source, photos.get(stored["url"]), stored, run_id)
    prop["rejected"] = [r for r in prop["rejected"] if r["source"] != source] + [
        {**rejected, "source": source, "run_id": run_id}
        for rejected in record.get("rejected") or ()
    ]


def _merge_origin(
    image: dict[str, Any],
    source: str,
    photo: dict[str, Any] | None,
    stored: dict[str, Any],
    run_id: str,
) -> None:
    photo = photo or {}
    for origin in image["origins"]:
        if origin["source"] == source and origin["url"] == stored["url"]:
            origin["last_seen_run"] = run_id
            origin["position"] = photo.get("position", origin.get("position"))
            origin["caption"] = photo.get("caption", origin.get("caption", ""))
            return
    image["origins"].append(
        {
            "source": source,
            "url": stored["url"],
            "photo_id": stored["photo_id"],
            "position": photo.get("position"),
            "caption": photo.get("caption", ""),
            "listing_id": photo.get("listing_id"),
            "first_seen_run": run_id,
            "last_seen_run": run_id,
        }
    )
