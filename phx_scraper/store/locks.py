"""Cross-process, cross-host locks on a store, built on filelock's leases.

- the **store lock**: shared by crawls, exclusive for cleanup and repair;
- the **manifest lock**: one writer at a time for the read-merge-write;
- **property locks**: one process extracts a property/source pair at a time;
  a crawl that finds a pair locked skips it and says so;
- the **history lock**: one pruning of ``runs/`` at a time.

Every lock is a ``filelock.SoftFileLease``: a marker file naming its holder
(PID, host, process start) that a heartbeat thread in the holder refreshes
every third of the lease. A contender decides whether a held lock can be
taken over by who holds it:

- a holder on **this host** is judged by its PID: dead (or its PID reused by
  another process) means the lock is taken at once, alive means never, even
  when it is suspended (Ctrl-Z) and its heartbeat is not running;
- a holder on **another host** (a store on a shared filesystem) cannot be
  checked from here: its lock is taken only after its marker has gone
  unrefreshed for a whole lease (``PHX_LOCK_LEASE``, which every process on a
  store must agree on), as observed on the contender's own clock.

The store lock is made of such leases: a crawl holds a *reader* lease of its
own, taken while it briefly holds the *gate*; cleanup and repair hold the gate
and wait until every reader lease is released or taken over.

For humans and messages, every holder also writes an owner record next to the
lock (``<lock>.owner.<host>.<pid>.json``: PID, host, process start time,
acquisition time, mode). A record left by a dead holder on this host, or by a
holder whose lock was taken over, is removed with a warning naming it; a
malformed or empty record is reported and ignored. A wait has a timeout and
its message names the holders.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import LeaseCompromise, LeaseSettingsMismatch, SoftFileLease, Timeout
from filelock._filesystem import pin_inode
from filelock._identity import host_name, owner_is_stale
from filelock._soft import MALFORMED_LOCK_AGE_THRESHOLD, read_lock_file

from phx_scraper.store.files import atomic_write

logger = logging.getLogger(__name__)

LOCKS_DIR = "locks"
HOST = socket.gethostname()
#: Seconds a holder on another host may go without a heartbeat before its lock
#: is taken over (the ``PHX_LOCK_LEASE`` default).
DEFAULT_LEASE = 30.0
POLL = 0.05
_lease_seconds = DEFAULT_LEASE


def lease_seconds() -> float:
    """The lease of this process's locks (``PHX_LOCK_LEASE``)."""
    return _lease_seconds


def parse_lease(value: object) -> float:
    """``PHX_LOCK_LEASE`` as seconds; ValueError saying what is wrong."""
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 1):
        raise ValueError(f"PHX_LOCK_LEASE={value!r}: expected a number of seconds, at least 1")
    return seconds


def configure(settings: Any) -> None:
    """Use the ``PHX_LOCK_LEASE`` of these settings for every lock of this process.

    Every process on a store must use the same lease; a process that meets a
    lease of another length stops with an error saying so.
    """
    global _lease_seconds
    _lease_seconds = parse_lease(settings.get("PHX_LOCK_LEASE", DEFAULT_LEASE))


class LockError(Exception):
    """A lock cannot be taken; the message says why and names who holds it."""


class LockTimeout(LockError):
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


class Lease(SoftFileLease):
    """A lease whose holder on this host is judged by its PID, not its heartbeat.

    ``SoftFileLease`` takes over any lease left unrefreshed for its duration;
    on this host liveness can be checked, so a running holder keeps its lock
    even while suspended. Holders elsewhere follow the heartbeat rule.
    """

    def _try_break_stale_lock(self) -> None:
        peer = self._read_peer()
        if peer is not None:
            owner = peer[0]
            if owner.hostname == host_name() and not owner_is_stale(
                owner.pid, owner.hostname, owner.start
            ):
                return
        elif self._break_empty_marker():
            return
        super()._try_break_stale_lock()

    def _break_empty_marker(self) -> bool:
        """An empty marker is a holder killed between creating it and writing its
        record. filelock leaves empty markers alone (its older versions held them
        empty), so one would block the lock for ever; every holder of ours writes
        a record, so an empty marker still empty after filelock's grace for a
        record being written is taken over, as filelock does with a half-written one."""
        with suppress(OSError, ValueError), pin_inode(self._lock_path) as pinned:
            content, marker = read_lock_file(self._lock_path)
            if content != "" or pinned not in {None, marker.st_ino}:
                return False
            if self._marker_unchanged_for(marker) >= MALFORMED_LOCK_AGE_THRESHOLD:
                logger.warning(
                    "Took over %s: left empty by a holder killed while taking it", self.lock_file
                )
                self._take_over(marker, None)
            return True
        return False


def _lease(path: Path, on_lost: Callable[[LeaseCompromise], None] | None) -> Lease:
    return Lease(
        path,
        lease_duration=_lease_seconds,
        on_compromise=on_lost,
        thread_local=False,  # taken in one thread, released in another
        poll_interval=POLL,
    )


def _alive(record: dict[str, Any]) -> bool:
    pid = int(record.get("pid", -1))
    if record.get("host") != HOST:
        return True  # judged by the lease's heartbeat, not from here
    if not pid_alive(pid):
        return False
    start = record.get("process_start")
    return start is None or _process_start(pid) in (None, start)


def _owner_path(lock: Path, host: str, pid: int) -> Path:
    return lock.with_name(f"{lock.name}.owner.{host}.{pid}.json")


def _records(lock: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
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
        yield path, record


def _reclaimed(lock: Path, path: Path, record: dict[str, Any], why: str) -> None:
    logger.warning(
        "Reclaimed %s left by %s PID %s on %s (acquired %s)",
        lock.name,
        why,
        record.get("pid"),
        record.get("host"),
        record.get("acquired_at"),
    )
    with suppress(OSError):
        path.unlink()


def holders(lock: Path) -> list[dict[str, Any]]:
    """Holders of ``lock`` by their records; removes (and warns about) dead ones here."""
    found = []
    for path, record in _records(lock):
        if _alive(record):
            found.append(record)
        else:
            _reclaimed(lock, path, record, "dead")
    return found


def describe(records: list[dict[str, Any]]) -> str:
    return (
        ", ".join(
            f"PID {r.get('pid')} on {r.get('host')} ({r.get('mode')}, since {r.get('acquired_at')})"
            for r in records
        )
        or "another process"
    )


def _claim(lock: Path, mode: str) -> Path:
    """Write this process's owner record for ``lock``, which it now holds.

    A record of a mode that cannot hold the lock with this one is stale: its
    holder died, or stopped refreshing its lease and was taken over.
    """
    pid = os.getpid()
    mine = _owner_path(lock, HOST, pid)
    for path, record in _records(lock):
        if path == mine:
            continue
        if not _alive(record):
            _reclaimed(lock, path, record, "dead")
        elif mode == "exclusive" or record.get("mode") == "exclusive":
            _reclaimed(lock, path, record, "unresponsive (heartbeat stopped)")
    record = {
        "pid": pid,
        "host": HOST,
        "process_start": _process_start(pid),
        "acquired_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": mode,
    }
    atomic_write(mine, json.dumps(record).encode())
    return mine


@contextmanager
def _owned(lock: Path, mode: str) -> Iterator[None]:
    mine = _claim(lock, mode)
    try:
        yield
    finally:
        with suppress(OSError):
            mine.unlink()


def _lock_path(root: Path, name: str) -> Path:
    path = root / LOCKS_DIR / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _lost(what: str, then: Callable[[], None] | None) -> Callable[[LeaseCompromise], None]:
    def report(compromise: LeaseCompromise) -> None:
        logger.error(
            "Lost %s (%s): another process took it over after this one stopped refreshing it",
            what,
            compromise.reason,
        )
        if then is not None:
            then()

    return report


def _acquire(lease: Lease, deadline: float, message: Callable[[], str]) -> None:
    try:
        lease.acquire(timeout=max(0.0, deadline - time.monotonic()))
    except Timeout:
        raise LockTimeout(message()) from None
    except LeaseSettingsMismatch as exc:
        raise LockError(f"{exc} (PHX_LOCK_LEASE)") from None


@contextmanager
def store_lock(
    root: Path,
    exclusive: bool,
    timeout: float = 60,
    on_lost: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Shared (crawls) or exclusive (cleanup, repair) hold on the whole store.

    ``on_lost`` runs (in the heartbeat thread) if the hold is taken over.
    """
    path = _lock_path(root, "store.lock")
    readers = path.with_name("store.readers")
    readers.mkdir(exist_ok=True)
    mode = "exclusive" if exclusive else "shared"
    deadline = time.monotonic() + timeout

    def busy() -> str:
        return (
            f"{root}: the store is locked by {describe(holders(path))}; "
            f"gave up after {timeout:.0f}s"
        )

    report = _lost(f"the {mode} store lock", on_lost)
    gate = _lease(path.with_name("store.gate"), report)
    _acquire(gate, deadline, busy)
    hold = gate
    try:
        if exclusive:
            # New readers wait at the gate; wait for the ones inside to leave.
            for marker in sorted(readers.glob("*.lease")):
                reader = _lease(marker, None)
                _acquire(reader, deadline, busy)
                reader.release()
        else:
            name = f"{HOST}.{os.getpid()}.{time.monotonic_ns():x}.lease"
            hold = _lease(readers / name, report)
            _acquire(hold, deadline, busy)
    except BaseException:
        gate.release()  # not held after all: a timed-out cleanup must not block crawls
        raise
    if hold is not gate:
        gate.release()  # a reader is inside: the gate only guarded its way in
    try:
        with _owned(path, mode):
            yield
    finally:
        hold.release()


@contextmanager
def _exclusive(root: Path, name: str, what: str, timeout: float) -> Iterator[None]:
    path = _lock_path(root, name)
    held = _lease(path, _lost(f"the {what} lock", None))
    _acquire(
        held,
        time.monotonic() + timeout,
        lambda: (
            f"{root}: the {what} is locked by {describe(holders(path))}; "
            f"gave up after {timeout:.0f}s"
        ),
    )
    try:
        with _owned(path, "exclusive"):
            yield
    finally:
        held.release()


def manifest_lock(root: Path, timeout: float = 120) -> AbstractContextManager[None]:
    """One read-merge-write of ``manifest.json`` at a time."""
    return _exclusive(root, "manifest.lock", "manifest", timeout)


def history_lock(root: Path, timeout: float = 60) -> AbstractContextManager[None]:
    """One pruning of the run history (``runs/``) at a time."""
    return _exclusive(root, "runs.lock", "run history", timeout)


@dataclass(frozen=True)
class Busy:
    """Who holds a property/source pair another crawl asked for."""

    holders: str
    #: Held from another host only: the lease is taken over if its heartbeat stops.
    remote: bool


class PropertyLocks:
    """Per property/source locks held by one crawl, taken without waiting."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.held: dict[tuple[str, str], Lease] = {}
        #: Leases asked for and found held: kept, as a lease held from another
        #: host is taken over only once seen unrefreshed for a whole lease.
        self.waiting: dict[tuple[str, str], Lease] = {}

    def _path(self, property_hash: str, source: str) -> Path:
        return _lock_path(self.root, f"properties/{property_hash}.{source}.lock")

    def try_acquire(self, property_hash: str, source: str) -> Busy | None:
        """None when acquired; else who holds the pair."""
        key = (property_hash, source)
        path = self._path(property_hash, source)
        lease = self.waiting.pop(key, None) or _lease(path, _lost(f"the lock on {path.name}", None))
        try:
            lease.acquire(blocking=False)
        except LeaseSettingsMismatch as exc:
            raise LockError(f"{exc} (PHX_LOCK_LEASE)") from None
        except Timeout:
            self.waiting[key] = lease
            records = holders(path)
            remote = bool(records) and all(r.get("host") != HOST for r in records)
            return Busy(describe(records), remote)
        _claim(path, "exclusive")
        self.held[key] = lease
        return None

    def wait(self, keys: list[tuple[str, str]], timeout: float) -> list[tuple[str, str]]:
        """Try ``keys`` again until each is acquired or ``timeout`` passes (blocks).

        Long enough a wait (more than a lease) takes over every lease whose
        holder on another host stopped refreshing it. Returns those acquired.
        """
        deadline = time.monotonic() + timeout
        left = list(keys)
        while True:
            left = [key for key in left if self.try_acquire(*key) is not None]
            if not left or time.monotonic() >= deadline:
                return [key for key in keys if key not in left]
            time.sleep(POLL * 4)

    def holders(self, property_hash: str, source: str) -> str:
        return describe(holders(self._path(property_hash, source)))

    def release(self, property_hash: str, source: str) -> None:
        lease = self.held.pop((property_hash, source), None)
        if lease is not None:
            with suppress(OSError):
                _owner_path(self._path(property_hash, source), HOST, os.getpid()).unlink()
            lease.release()

    def release_all(self) -> None:
        for key in list(self.held):
            self.release(*key)
        self.waiting.clear()
