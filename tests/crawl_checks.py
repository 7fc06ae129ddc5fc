"""Assertions shared by the crawl tests: the store against the sandbox's dataset."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PIL import Image

from phx_scraper.addresses import canonicalize
from phx_scraper.sandbox import dataset
from phx_scraper.store.files import TEMP_PREFIX

#: The reason the store gives for each fault the replica's CDN serves.
FAULT_REASONS = {
    "truncated": "truncated",
    "html_as_jpeg": "not_an_image",
    "empty": "empty",
    "bomb": "too_many_pixels",
    "too_small": "too_small",
}


def property_hash(key: str) -> str:
    return canonicalize(dataset.property_by_key(key).address).property_hash


def origins(entry: dict[str, Any], source: str) -> list[dict[str, Any]]:
    return [o for image in entry["images"] for o in image["origins"] if o["source"] == source]


def check_source(manifest: dict[str, Any], source: str, keys: list[str] | None = None) -> int:
    """Every property has exactly the expected photos of ``source``; returns how many."""
    checked = 0
    for prop in dataset.PROPERTIES:
        if keys is not None and prop.key not in keys:
            continue
        entry = manifest["properties"][property_hash(prop.key)]
        outcome = entry["sources"][source]
        assert outcome["status"] == dataset.expected_status(source, prop.key), (prop.key, outcome)
        assert outcome["id"] == dataset.expected_source_id(source, prop.key), prop.key
        expected = dataset.expected_photos(source, prop.key)
        good = {p.photo_id: p for p in expected if p.fault is None}
        found = origins(entry, source)
        assert sorted(o["photo_id"] for o in found) == sorted(good), prop.key
        for origin in found:
            want = good[origin["photo_id"]]
            if want.path:
                url = urlsplit(origin["url"])
                assert url.path + (f"?{url.query}" if url.query else "") == want.path
            assert origin["position"] == want.position
            assert origin["listing_id"] == want.listing_id
            assert origin["caption"] == want.caption
        rejected = {r["photo_id"]: r["reason"] for r in entry["rejected"] if r["source"] == source}
        assert rejected == {p.photo_id: FAULT_REASONS[p.fault] for p in expected if p.fault}
        checked += len(good)
    return checked


def check_files(store: Path, manifest: dict[str, Any]) -> set[str]:
    """Every stored file is named by its MD5, and manifest and files agree exactly."""
    files = {
        p.relative_to(store).as_posix(): p
        for p in (store / "full").glob("*/*")
        if not p.name.startswith(TEMP_PREFIX)  # a killed writer's leftovers, not content
    }
    for path in files.values():
        assert hashlib.md5(path.read_bytes()).hexdigest() == path.stem
        with Image.open(path) as image:  # no photographer's location or camera data kept
            assert not image.getexif() and "icc_profile" not in image.info, path
    named = {image["path"] for e in manifest["properties"].values() for image in e["images"]}
    assert named == set(files)
    return {path.stem for path in files.values()}
