"""Near-duplicate groups within one property, from perceptual hashes.

Two images are near-duplicates when both their pHash and their dHash are
within the thresholds (Hamming distance of the 64-bit hashes): the same photo
from Zillow at 1536 px and from Phoenix MLS at 3000 px. Groups never span
properties; every file is kept, and the group's best member (highest
resolution, then least compressed) is marked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Thresholds:
    phash: int = 10
    dhash: int = 12


def distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def quality_key(image: dict[str, Any]) -> tuple[int, float, str]:
    pixels = image["width"] * image["height"]
    return (pixels, image["bytes"] / max(pixels, 1), image["md5"])


def assign_groups(images: list[dict[str, Any]], thresholds: Thresholds) -> None:
    """Set ``group`` (None when alone) and ``best`` on every image of a property."""
    parent = list(range(len(images)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(images):
        for j in range(i + 1, len(images)):
            b = images[j]
            if (
                distance(a["phash"], b["phash"]) <= thresholds.phash
                and distance(a["dhash"], b["dhash"]) <= thresholds.dhash
            ):
                parent[find(i)] = find(j)
    members: dict[int, list[dict[str, Any]]] = {}
    for i, image in enumerate(images):
        members.setdefault(find(i), []).append(image)
    for group in members.values():
        best = max(group, key=quality_key)
        group_id = f"g{best['md5'][:12]}" if len(group) > 1 else None
        for image in group:
            image["group"] = group_id
            image["best"] = image is best
