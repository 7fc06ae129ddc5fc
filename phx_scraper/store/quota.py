"""The store's quota: how many bytes of images it may hold, and how many it holds.

``PHX_STORE_QUOTA`` bounds the bytes under ``full/``, ``thumbs/`` and
``originals/`` (file sizes; temp files of writes in progress are not
counted). ``StoreUsage`` walks those directories once, when a crawl opens
the store, and is then kept up to date by the writers (``reserve`` before a
write, ``release`` when the write turned out not to be needed): measuring the
tree per image would cost more than storing it. Cleanup takes the store lock
exclusively, so nothing removes files while a crawl counts them.

Sizes are written as a number and a unit: ``B``, ``KB``, ``MB``, ``GB``,
``TB`` (1000-based, as disks are sold) or ``KiB``, ``MiB``, ``GiB``, ``TiB``
(1024-based); units are case-insensitive, a bare number is bytes.
"""

from __future__ import annotations

import contextlib
import re
import threading
from pathlib import Path
from typing import Any

from phx_scraper.store.files import TEMP_PREFIX
from phx_scraper.store.reconcile import _walk

QUOTA_SETTING = "PHX_STORE_QUOTA"
WARN_SETTING = "PHX_STORE_QUOTA_WARN"
DEFAULT_WARN = 0.9
#: The directories whose bytes count against the quota.
COUNTED_DIRS = ("full", "thumbs", "originals")

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[a-z]*)")


def parse_size(text: str, setting: str = QUOTA_SETTING) -> int:
    """``"20GB"`` -> ``20_000_000_000``; a ValueError naming ``setting`` otherwise."""
    match = _SIZE.fullmatch(str(text).strip().lower())
    if not match or match["unit"] not in _UNITS:
        raise ValueError(
            f"{setting}: cannot read {text!r} as a size; write a number and a unit: "
            "B, KB, MB, GB, TB (1000-based) or KiB, MiB, GiB, TiB (1024-based), e.g. 20GB"
        )
    size = int(float(match["number"]) * _UNITS[match["unit"]])
    if size <= 0:
        raise ValueError(f"{setting}: {text!r} is no room at all; leave it unset for no limit")
    return size


def parse_quota(value: Any, setting: str = QUOTA_SETTING) -> int | None:
    """The quota setting's value in bytes; None (no limit) when unset or empty."""
    if value is None or str(value).strip() == "":
        return None
    return parse_size(value, setting)


def format_size(nbytes: int) -> str:
    """``1234567`` -> ``"1.2 MB"`` (1000-based, as ``parse_size`` reads it back)."""
    size = float(nbytes)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1000:
            return f"{nbytes} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def measure(root: Path) -> int:
    """Bytes of the files under ``full/``, ``thumbs/`` and ``originals/`` (one walk)."""
    total = 0
    for rel_dir, _, entries in _walk(root):
        if rel_dir.split("/", 1)[0] not in COUNTED_DIRS:
            continue
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX):
                continue
            with contextlib.suppress(FileNotFoundError):  # removed since the walk listed it
                total += entry.stat(follow_symlinks=False).st_size
    return total


class StoreUsage:
    """Bytes the store holds, against an optional quota; safe to share between threads.

    ``quota=None`` means no limit: nothing would exceed it, no warning level.
    """

    def __init__(self, used: int, quota: int | None = None, warn: float = DEFAULT_WARN) -> None:
        if not 0 < warn <= 1:
            raise ValueError(f"{WARN_SETTING}: {warn!r} is not a fraction in (0, 1], e.g. 0.9")
        self.quota = quota
        self.warn = warn
        self._used = used
        self._warned = False
        self.refused = 0  # writes refused by reserve()
        self.refused_bytes = 0
        self._lock = threading.Lock()

    @classmethod
    def open(cls, root: Path, quota: int | None = None, warn: float = DEFAULT_WARN) -> StoreUsage:
        """Measure the store once (``measure``); later changes go through ``add``/``reserve``."""
        return cls(measure(root), quota, warn)

    @property
    def used(self) -> int:
        return self._used

    @property
    def warn_level_crossed(self) -> bool:
        """The store holds at least ``warn`` x quota bytes."""
        return self.quota is not None and self._used >= self.warn * self.quota

    def add(self, nbytes: int) -> None:
        """Count ``nbytes`` written without a reservation."""
        with self._lock:
            self._used += nbytes

    def release(self, nbytes: int) -> None:
        """Give back a reservation that was not written (the file existed after all)."""
        with self._lock:
            self._used -= nbytes

    def would_exceed(self, nbytes: int) -> bool:
        return self.quota is not None and self._used + nbytes > self.quota

    def reserve(self, nbytes: int) -> bool:
        """Count ``nbytes`` about to be written, unless they would exceed the quota.

        Check and count are one step, so two worker threads cannot both take
        the last room. A refusal is counted for the summary (``refused``,
        ``refused_bytes``) and the store is unchanged.
        """
        with self._lock:
            if self.would_exceed(nbytes):
                self.refused += 1
                self.refused_bytes += nbytes
                return False
            self._used += nbytes
            return True

    def take_warning(self) -> bool:
        """True once per ``StoreUsage`` when the warning level is reached, so one warning is logged.

        Call it after ``open`` (the store may already be above the level) and
        after each successful ``reserve``.
        """
        with self._lock:
            if self._warned or not self.warn_level_crossed:
                return False
            self._warned = True
            return True

    def needed(self, nbytes: int) -> int:
        """Bytes to free (or to add to the quota) before ``nbytes`` more fit; 0 when they fit."""
        if self.quota is None:
            return 0
        return max(0, self._used + nbytes - self.quota)

    def summary(self) -> dict[str, Any]:
        """Figures for the run record: quota, used, warn, refused writes and the room needed."""
        with self._lock:
            return {
                "quota": self.quota,
                "used": self._used,
                "warn": self.warn,
                "warn_level_crossed": self.warn_level_crossed,
                "refused": self.refused,
                "refused_bytes": self.refused_bytes,
                "needed": self.needed(self.refused_bytes),
            }
