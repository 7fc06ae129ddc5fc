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
from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

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


def load(root: Path) -> Manifest:
    path = root / MANIFEST_NAME
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
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ManifestError(
            f"{path}: schema_version {version!r}, this phx_scraper reads {SCHEMA_VERSION}"
        )
    return manifest


def save(root: Path, manifest: Manifest) -> None:
    manifest["updated_at"] = utc_now()

    def write(fh: BinaryIO) -> None:
        # One property per line, each encoded by json's C encoder (an indented
        # dump goes through its pure-Python one, 6x slower), and written in
        # pieces: a large manifest is never held whole as text as well.
        # ``scrapy show`` prints a property indented.
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="\n")
        text.write("{")
        for key, value in sorted(manifest.items()):
            if key != "properties":
                text.write(f"\n {_compact(key)}: {_compact(value)},")
        text.write('\n "properties": {')
        for n, (key, prop) in enumerate(sorted(manifest["properties"].items())):
            text.write(f"{',' if n else ''}\n  {_compact(key)}: {_compact(prop)}")
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
) -> Manifest:
    """Merge crawl records into the manifest on disk and write it back."""
    with lock(root):
        manifest = load(root)
        touched = set()
        for record in records:
            merge_record(manifest, record)
            touched.add(record["property_hash"])
        for key in touched:
            assign_groups(manifest["properties"][key]["images"], thresholds or Thresholds())
        save(root, manifest)
    return manifest


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
