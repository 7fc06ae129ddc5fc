"""The replica's request log: one JSON line per request, for tests to assert on.

Fields: ``t`` (epoch seconds), ``source``, ``method``, ``path`` (path + query
as received), ``user_agent``, ``has_cookie``, ``has_authorization``, ``status``
(null when the connection was dropped), ``bytes`` (body length sent), ``fault``
(the fault mode that shaped the answer, or null). Header values that carry
credentials (Authorization, Cookie) are never written, only their presence.
Each line is appended and flushed on its own, so a reader sees whole lines
while the server runs; control endpoints (``/__sandbox__/``) are not logged.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, TextIO


class RequestLog:
    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._fh: TextIO | None = path.open("a", encoding="utf-8") if path else None

    def write(self, entry: dict[str, Any]) -> None:
        if self._fh is None:
            return
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self._lock:
            self._fh.write(line)
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read(path: Path, source: str | None = None) -> list[dict[str, Any]]:
    """Parse a request log; a half-written last line is skipped."""
    entries = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if source is None or entry.get("source") == source:
            entries.append(entry)
    return entries
