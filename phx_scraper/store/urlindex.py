"""URL index: which stored file a URL's bytes became, so nothing is fetched twice.

An SQLite database in WAL mode under the store (``index/urls.sqlite``): each
row is committed on its own, so a kill -9 loses at most the row being written,
and a row is only written after its file is durable.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS urls (
    url TEXT PRIMARY KEY,
    source_md5 TEXT NOT NULL,
    md5 TEXT NOT NULL,
    path TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    phash TEXT NOT NULL,
    dhash TEXT NOT NULL,
    fetched_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS urls_source_md5 ON urls (source_md5);
CREATE TABLE IF NOT EXISTS rejected (
    url TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    rejected_at REAL NOT NULL
);
"""

#: Rejections decided by the bytes themselves: fetching the URL again would
#: give the same answer. Others (truncated, empty, HTTP and network errors)
#: may be transient and are retried by the next crawl.
PERMANENT_REASONS = frozenset({"not_an_image", "corrupt", "too_small", "too_many_pixels"})

INDEX_PATH = "index/urls.sqlite"
_SELECT = "SELECT url, source_md5, md5, path, width, height, bytes, phash, dhash, fetched_at"


@dataclass(frozen=True)
class IndexEntry:
    url: str
    source_md5: str
    md5: str
    path: str
    width: int
    height: int
    bytes: int
    phash: str
    dhash: str
    fetched_at: float


class UrlIndex:
    def __init__(self, root: Path) -> None:
        path = root / INDEX_PATH
        path.parent.mkdir(parents=True, exist_ok=True)
        # Used from the reactor thread and the image worker threads; sqlite3
        # serializes access itself, writes are tiny.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(_SCHEMA)

    def get(self, url: str) -> IndexEntry | None:
        row = self._db.execute(f"{_SELECT} FROM urls WHERE url = ?", (url,)).fetchone()
        return IndexEntry(*row) if row else None

    def put(self, entry: IndexEntry) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO urls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            dataclasses.astuple(entry),
        )

    def reject(self, url: str, reason: str, at: float) -> None:
        if reason in PERMANENT_REASONS:
            self._db.execute("INSERT OR REPLACE INTO rejected VALUES (?, ?, ?)", (url, reason, at))

    def rejection(self, url: str) -> tuple[str, float] | None:
        row = self._db.execute(
            "SELECT reason, rejected_at FROM rejected WHERE url = ?", (url,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def find_source_md5(self, source_md5: str) -> IndexEntry | None:
        """Any entry whose downloaded bytes had this MD5 (the same bytes at another URL)."""
        row = self._db.execute(
            f"{_SELECT} FROM urls WHERE source_md5 = ? LIMIT 1", (source_md5,)
        ).fetchone()
        return IndexEntry(*row) if row else None

    def close(self) -> None:
        self._db.close()


def paths_fetched_since(root: Path, since: float) -> Iterator[str]:
    """The stored paths of URLs fetched at or after ``since`` (a ``time.time()``), as
    read; nothing when the store has no index. Read-only: it never creates one."""
    path = root / INDEX_PATH
    if not path.exists():
        return
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        db.execute("PRAGMA busy_timeout=30000")
        for (rel,) in db.execute("SELECT DISTINCT path FROM urls WHERE fetched_at >= ?", (since,)):
            yield rel
    finally:
        db.close()
