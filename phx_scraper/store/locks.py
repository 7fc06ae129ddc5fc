"""Cross-process locks on a store, built on the filelock package.

- the **store lock**: shared by crawls, exclusive for cleanup and repair
  (``filelock.ReadWriteLock``, an SQLite transaction);
- the **manifest lock**: one writer at a time for the read-merge-write
  (``filelock.FileLock``, fcntl);
- **property locks**: one process extracts a property/source pair at a time;
  a crawl that finds a pair locked skips it and says so.

The kernel releases fcntl locks and SQLite transactions when their holder
dies, so a dead holder never blocks anyone: what it leaves is its owner
record. Every holder writes one next to the lock (``<lock>.owner.<pid>.json``:
PID, host, process start time, acquisition time, mode) for humans and for
messages; a record whose PID is dead on this host is removed with a warning
naming it, a live holder is never broken, and a malformed or empty record is
reported and ignored. A wait has a timeout and its message names the holders.

Limitation: on a filesystem shared between hosts, fcntl and SQLite locking
depend on the filesystem; a holder on another host is named in messages but
its liveness cannot be checked from here.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from filelock import FileLock, ReadWriteLock, Timeout

from phx_scraper.store.files import atomic_write

logger = logging.getLogger(__name__)

LOCKS_DIR = "locks"
HOST = socket.gethostname()


class LockTimeout(Exception):
    """Waited too long for a lock; the message names who holds it."""


def _process_start(pid: int) -> str | None:
    """The process start time in clock ticks since boot (tells a reused PID apart)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """Is a process with this PID running on this host?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _alive(record: dict[str, Any]) -> bool:
    pid = int(record.get("pid", -1))
    if record.get("host") != HOST:
        return True  # cannot tell from here: never broken
    if not pid_alive(pid):
        return False
    start = record.get("process_start")
    return start is None or _process_start(pid) in (None, start)


def _owner_path(lock: Path, pid: int) -> Path:
    return lock.with_name(f"{lock.name}.owner.{pid}.json")


def holders(lock: Path) -> list[dict[str, Any]]:
    """Live holders of ``lock``; removes (and warns about) records of dead ones."""
    found = []
    for path in sorted(lock.parent.glob(f"{lock.name}.owner.*.json")):
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict) or "pid" not in record:
                raise ValueError("no pid")
        except (OSError, ValueError) as exc:
            logger.warning("Ignoring malformed lock owner record %s (%s)", path, exc)
            with suppress(OSError):
                path.unlink()
            continue
        if _alive(record):
            found.append(record)
            continue
        logger.warning(
            "Reclaimed %s left by dead PID %s on %s (acquired %s)",
            lock.name,
            record.get("pid"),
            record.get("host"),
            record.get("acquired_at"),
        )
        with suppress(OSError):
            path.unlink()
    return found


def describe(records: list[dict[str, Any]]) -> str:
    return (
        ", ".join(
            f"PID {r.get('pid')} on {r.get('host')} ({r.get('mode')}, since {r.get('acquired_at')})"
            for r in records
        )
        or "another process"
    )


@contextmanager
def _owned(lock: Path, mode: str) -> Iterator[None]:
    holders(lock)  # clears what dead holders left
    pid = os.getpid()
    record = {
        "pid": pid,
        "host": HOST,
        "process_start": _process_start(pid),
        "acquired_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": mode,
    }
    path = _owner_path(lock, pid)
    atomic_write(path, json.dumps(record).encode())
    try:
        yield
    finally:
        with suppress(OSError):
            path.unlink()


def _lock_path(root: Path, name: str) -> Path:
    path = root / LOCKS_DIR / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def store_lock(root: Path, exclusive: bool, timeout: float = 60) -> Iterator[None]:
    """Shared (crawls) or exclusive (cleanup, repair) hold on the whole store."""
    path = _lock_path(root, "store.lock")
    lock = ReadWriteLock(path, is_singleton=False)
    mode = "exclusive" if exclusive else "shared"
    try:
        if exclusive:
            lock.acquire_write(timeout=timeout)
        else:
            lock.acquire_read(timeout=timeout)
    except Timeout:
        raise LockTimeout(
            f"{root}: the store is locked by {describe(holders(path))}; "
            f"gave up after {timeout:.0f}s"
        ) from None
    try:
        with _owned(path, mode):
            yield
    finally:
        lock.release()
        lock.close()


@contextmanager
def manifest_lock(root: Path, timeout: float = 120) -> Iterator[None]:
    path = _lock_path(root, "manifest.lock")
    lock = FileLock(path)
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise LockTimeout(
            f"{root}: the manifest is locked by {describe(holders(path))}; "
            f"gave up after {timeout:.0f}s"
        ) from None
    try:
        with _owned(path, "exclusive"):
            yield
    finally:
        lock.release()


class PropertyLocks:
    """Per property/source locks held by one crawl, taken without waiting."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.held: dict[tuple[str, str], FileLock] = {}

    def try_acquire(self, property_hash: str, source: str) -> str | None:
        """None when acquired; else who holds the pair."""
        path = _lock_path(self.root, f"properties/{property_hash}.{source}.lock")
        lock = FileLock(path)
        try:
            lock.acquire(blocking=False)
        except Timeout:
            return describe(holders(path))
        self.held[(property_hash, source)] = lock
        return None

    def release(self, property_hash: str, source: str) -> None:
        lock = self.held.pop((property_hash, source), None)
        if lock is not None:
            lock.release()

    def release_all(self) -> None:
        for key in list(self.held):
            self.release(*key)
