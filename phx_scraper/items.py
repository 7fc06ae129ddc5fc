"""Records that cross component boundaries: spider -> pipeline -> manifest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

#: Outcomes of one property on one source.
STATUSES = ("ok", "no_match", "no_photos", "blocked", "failed")


class Photo(TypedDict):
    """One photo as the source lists it, with the URL of the variant chosen."""

    photo_id: str
    url: str
    position: int
    caption: str
    listing_id: str | None


class StoredImage(TypedDict):
    """What the pipeline stored for one photo (or found already stored)."""

    url: str
    photo_id: str
    md5: str
    path: str
    source_md5: str
    width: int
    height: int
    bytes: int
    phash: str
    dhash: str
    thumbs: dict[str, str]  # size -> relative path
    status: str  # downloaded | uptodate


class RejectedImage(TypedDict):
    url: str
    photo_id: str
    reason: str


@dataclass
class PropertyImagesItem:
    """One property on one source: its outcome and every photo it lists."""

    run_id: str
    source: str
    property_hash: str
    address: str
    canonical_address: str
    status: str
    source_id: str | None = None
    reason: str | None = None
    photo_count: int | None = None  # the count the source announces, when it does
    photos: list[Photo] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    ids: dict[str, Any] = field(default_factory=dict)  # other source ids (listing ids...)
    # Filled by the images pipeline.
    images: list[StoredImage] = field(default_factory=list)
    rejected: list[RejectedImage] = field(default_factory=list)
