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
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TextIO

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
    mapping that keeps each property as its line of JSON and parses it when
    asked for (a fresh copy each time), so what a crawl reads costs the text,
    not the objects (about 6 times more). A manifest not written one property
    per line (by an older version) is read whole.
    """
    path = root / MANIFEST_NAME
    if lazy:
        try:
            with path.open(encoding="utf-8") as fh:
                lines = _Lines.read(fh, path)
        except FileNotFoundError:
            return empty()
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
    """A manifest's properties as ``save`` writes them, one line of JSON each."""

    _DECODER = json.JSONDecoder()

    def __init__(self, path: Path, lines: dict[str, str]) -> None:
        self.path = path
        self.lines = lines

    def __getitem__(self, key: str) -> dict[str, Any]:
        try:
            value = json.loads(self.lines[key])
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{self.path}: property {key}: not valid JSON ({exc})") from exc
        if not isinstance(value, dict):
            raise ManifestError(f"{self.path}: property {key} is not an object")
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self.lines)

    def __len__(self) -> int:
        return len(self.lines)

    @classmethod
    def read(cls, fh: TextIO, path: Path) -> Manifest | None:
        """The manifest in ``fh`` with lazy properties, or None when it is not in
        ``save``'s layout."""
        manifest: Manifest = {}
        lines: dict[str, str] = {}
        if fh.readline() != "{\n":
            return None
        for line in fh:
            parsed = cls.split(line, 1)
            if parsed is None:
                return None
            key, value = parsed
            if key == "properties":
                if value != "{":
                    return None
                break
            try:
                manifest[key] = json.loads(value)
            except json.JSONDecodeError:
                return None
        else:
            return None
        for line in fh:
            if line == " }\n":
                break
            parsed = cls.split(line, 2)
            if parsed is None:
                return None
            lines[parsed[0]] = parsed[1]
        else:
            return None
        if fh.read() != "}\n":
            return None
        manifest["properties"] = cls(path, lines)
        return _checked(manifest, path)

    @classmethod
    def split(cls, line: str, indent: int) -> tuple[str, str] | None:
        """``("key", "value text")`` of a ``"key": value,`` line, or None."""
        try:
            key, end = cls._DECODER.raw_decode(line, indent)
        except json.JSONDecodeError:
            return None
        if not isinstance(key, str) or line[end : end + 2] != ": ":
            return None
        return key, line[end + 2 :].rstrip("\n").removesuffix(",")


def save(root: Path, manifest: Manifest) -> None:
    manifest["updated_at"] = utc_now()
    properties = manifest["properties"]

    def write(fh: BinaryIO) -> None:
        # One property per line, each encoded by json's C encoder (an indented
        # dump goes through its pure-Python one, 6x slower), and written in
        # pieces: a large manifest is never held whole as text as well.
        # ``scrapy show`` prints a property indented. A lazy manifest's lines
        # are written as read.
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="\n")
        text.write("{")
        for key, value in sorted(manifest.items()):
            if key != "properties":
                text.write(f"\n {_compact(key)}: {_compact(value)},")
        text.write('\n "properties": {')
        for n, key in enumerate(sorted(properties)):
            if isinstance(properties, _Lines):
                line = properties.lines[key]
            else:
                line = _compact(properties[key])
            text.write(f"{',' if n else ''}\n  {_compact(key)}: {line}")
        text.write("\n }\n}\n")
        text.flush()
        text.detach()

    atomic_write(root / MANIFEST_NAME, write)


def _compact(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def lock(root: Path, timeout: float = 120) -> AbstractContextManager[None]:
    """The manifest lock (see ``store.locks``): one read-merge-write at a time."""
    return manifest_lock(root, timeout)


def update(
    root: Path, records: Iterable[dict[str, Any]], thresholds: Thresholds | None = None
) -> None:
    """Merge crawl records into the manifest on disk and write it back.

    Only the properties the records touch are parsed; the others are copied
    as text, so a checkpoint's memory follows the crawl, not the store."""
    with lock(root):
        manifest = load(root, lazy=True)
        properties = manifest["properties"]
        touched: Manifest = {"properties": {}}
        for record in records:
            key = record["property_hash"]
            if key not in touched["properties"] and key in properties:
                touched["properties"][key] = properties[key]
            merge_record(touched, record)
        for prop in touched["properties"].values():
            assign_groups(prop["images"], thresholds or Thresholds())
        if isinstance(properties, _Lines):
            lines = dict(properties.lines)
            lines.update((key, _compact(prop)) for key, prop in touched["properties"].items())
            manifest["properties"] = _Lines(properties.path, lines)
        else:
            properties.update(touched["properties"])
        save(root, manifest)


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
