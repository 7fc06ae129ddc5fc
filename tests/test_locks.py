"""store/locks.py, and three crawls at once on one store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phx_scraper.sandbox import dataset
from phx_scraper.sandbox.process import Sandbox
from phx_scraper.store import locks
from phx_scraper.store.history import scan_runs
from phx_scraper.store.locks import (
    HOST,
    LockTimeout,
    PropertyLocks,
    holders,
    manifest_lock,
    store_lock,
)
from phx_scraper.store.reconcile import reconcile
from tests.conftest import FAST, ROOT, run_crawl
from tests.crawl_checks import check_files, check_source, property_hash

HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from phx_scraper.store import locks
    locks.configure({{"PHX_LOCK_LEASE": sys.argv[2]}})
    with locks.{name}(Path(sys.argv[1]){args}):
        print("held", flush=True)
        time.sleep(60)
    """
)
OTHER_HOST = "otherhost"


def on_other_host(argv: list[str]) -> list[str]:
    """``argv`` run under another host name (a UTS namespace): to filelock and to
    our owner records, a holder on a host whose PIDs cannot be checked from here."""
    if subprocess.run(["unshare", "--uts", "true"], capture_output=True).returncode:
        pytest.skip("needs unshare --uts (root) to run a holder under another host name")
    return ["unshare", "--uts", "sh", "-c", f'hostname {OTHER_HOST} && exec "$@"', "sh", *argv]


def hold(
    root: Path, name: str, args: str = "", lease: float = 30, other_host: bool = False
) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", HOLD.format(name=name, args=args), str(root), str(lease)]
    proc = subprocess.Popen(
        on_other_host(argv) if other_host else argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


@pytest.fixture
def lease() -> Iterator[float]:
    """A 2-second lease for this process (holders get the same)."""
    locks.configure({"PHX_LOCK_LEASE": 2})
    yield 2.0
    locks.configure({})


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_live_holder_is_never_broken_and_is_named(tmp_path: Path) -> None:
    proc = hold(tmp_path, "manifest_lock")
    try:
        with (
            pytest.raises(LockTimeout, match=rf"locked by PID {proc.pid} on {HOST}"),
            manifest_lock(tmp_path, timeout=0.3),
        ):
            pass
    finally:
        proc.kill()
        proc.wait()
    # The kernel released the dead holder's lock; its record is reclaimed.
    with manifest_lock(tmp_path, timeout=5):
        pass


def test_dead_pid_record_is_reclaimed_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lock = tmp_path / "locks" / "manifest.lock"
    lock.parent.mkdir()
    pid = dead_pid()
    record = lock.with_name(f"manifest.lock.owner.{HOST}.{pid}.json")
    record.write_text(json.dumps({"pid": pid, "host": HOST, "acquired_at": "then"}))
    assert holders(lock) == []
    assert not record.exists()
    assert f"left by dead PID {pid} on {HOST}" in caplog.text


@pytest.mark.parametrize("content", ["", "{not json", "[]", '{"host": "x"}'])
def test_malformed_and_empty_records_are_ignored(tmp_path: Path, content: str) -> None:
    lock = tmp_path / "locks" / "store.lock"
    lock.parent.mkdir()
    lock.with_name(f"store.lock.owner.{os.getpid() + 1}.json").write_text(content)
    assert holders(lock) == []
    with store_lock(tmp_path, exclusive=True, timeout=2):
        assert [r["pid"] for r in holders(lock)] == [os.getpid()]


@pytest.mark.parametrize("content", ["", "filelock/2 half-writ"])
@pytest.mark.parametrize(
    ("name", "take"),
    [
        ("manifest.lock", lambda root: manifest_lock(root, timeout=10)),
        ("store.gate", lambda root: store_lock(root, exclusive=True, timeout=10)),
    ],
)
def test_a_marker_left_empty_or_half_written_by_a_kill_is_taken_over(
    tmp_path: Path, name: str, take: Any, content: str
) -> None:
    # A holder killed between creating its lease marker and writing it: no
    # record says who it was, and nothing will ever refresh or remove it.
    marker = tmp_path / "locks" / name
    marker.parent.mkdir()
    marker.write_text(content)
    started = time.monotonic()
    with take(tmp_path):
        waited = time.monotonic() - started
    assert 1.5 < waited < 9  # not at once: a live holder may still be writing it


def test_crawls_share_the_store_cleanup_waits(tmp_path: Path) -> None:
    proc = hold(tmp_path, "store_lock", ", exclusive=False")
    try:
        with store_lock(tmp_path, exclusive=False, timeout=2):
            pass
        with (
            pytest.raises(LockTimeout, match="the store is locked by PID"),
            store_lock(tmp_path, exclusive=True, timeout=0.3),
        ):
            pass
    finally:
        proc.kill()
        proc.wait()
    with store_lock(tmp_path, exclusive=True, timeout=5):
        pass


def test_a_cleanup_that_gave_up_lets_crawls_in(tmp_path: Path) -> None:
    proc = hold(tmp_path, "store_lock", ", exclusive=False")
    try:
        with (
            pytest.raises(LockTimeout, match="the store is locked by PID") as caught,
            store_lock(tmp_path, exclusive=True, timeout=0.3),
        ):
            pass
        # The would-be cleanup let go of the gate, not just its last reference
        # (``caught`` keeps the failed attempt's frames alive): a crawl gets in.
        with store_lock(tmp_path, exclusive=False, timeout=0.5):
            assert caught.traceback
    finally:
        end(proc)


def test_property_lock_is_taken_by_one_process(tmp_path: Path) -> None:
    mine = PropertyLocks(tmp_path)
    assert mine.try_acquire("abcd1234", "zillow") is None
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from phx_scraper.store.locks import "
            "PropertyLocks; print(PropertyLocks(Path(sys.argv[1])).try_acquire('abcd1234',"
            " 'zillow'))",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert other.stdout.strip() == (
        f"Busy(holders='PID {os.getpid()} on {HOST} (exclusive, since "
        f"{holders(mine._path('abcd1234', 'zillow'))[0]['acquired_at']})', remote=False)"
    )
    mine.release_all()


HOLD_PAIRS = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from phx_scraper.store import locks
    locks.configure({"PHX_LOCK_LEASE": sys.argv[2]})
    held = locks.PropertyLocks(Path(sys.argv[1]))
    for key in json.loads(sys.argv[3]) + json.loads(sys.argv[4]):
        assert held.try_acquire(key, "zillow") is None
    for key in json.loads(sys.argv[4]):
        held.release(key, "zillow")
    print("held", flush=True)
    time.sleep(60)
    """
)


def hold_pairs_elsewhere(
    root: Path, lease: float, keys: list[str], released: tuple[str, ...] = ()
) -> subprocess.Popen[str]:
    """A crawl on another host holding the zillow pairs of ``keys`` (and having
    taken and released those of ``released``)."""
    argv = [sys.executable, "-c", HOLD_PAIRS, str(root), str(lease)]
    argv += [json.dumps(keys), json.dumps(list(released))]
    proc = subprocess.Popen(on_other_host(argv), cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def stopped(proc: subprocess.Popen[str]) -> float:
    """Freeze ``proc`` (its heartbeat stops with it); the monotonic time it happened."""
    os.kill(proc.pid, signal.SIGSTOP)
    return time.monotonic()


def end(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()


@pytest.mark.parametrize(
    ("name", "args", "take"),
    [
        ("manifest_lock", "", lambda root, t: locks.manifest_lock(root, timeout=t)),
        # A crawl on the other host shares the store; cleanup wants it whole.
        (
            "store_lock",
            ", exclusive=False",
            lambda root, t: locks.store_lock(root, exclusive=True, timeout=t),
        ),
        (
            "store_lock",
            ", exclusive=True",
            lambda root, t: locks.store_lock(root, exclusive=False, timeout=t),
        ),
    ],
)
def test_other_host_holder_is_broken_only_after_its_heartbeat_stops(
    tmp_path: Path,
    lease: float,
    caplog: pytest.LogCaptureFixture,
    name: str,
    args: str,
    take: Any,
) -> None:
    proc = hold(tmp_path, name, args, lease=lease, other_host=True)
    try:
        # Twice the lease: the holder's heartbeat keeps its lock.
        with (
            pytest.raises(LockTimeout, match=rf"locked by PID {proc.pid} on {OTHER_HOST}"),
            take(tmp_path, 2 * lease),
        ):
            pass
        frozen = stopped(proc)
        with take(tmp_path, 4 * lease):
            waited = time.monotonic() - frozen
        assert lease * 0.95 <= waited < 3 * lease
        assert (
            f"left by unresponsive (heartbeat stopped) PID {proc.pid} on {OTHER_HOST}"
            in caplog.text
        )
    finally:
        end(proc)


def test_a_lease_of_another_length_is_an_error_not_a_takeover(tmp_path: Path) -> None:
    proc = hold(tmp_path, "manifest_lock", lease=2, other_host=True)
    try:
        locks.configure({"PHX_LOCK_LEASE": 3})
        with (
            pytest.raises(
                locks.LockError, match=r"must agree on lease_duration \(PHX_LOCK_LEASE\)"
            ),
            locks.manifest_lock(tmp_path, timeout=5),
        ):
            pass
    finally:
        locks.configure({})
        end(proc)


def test_suspended_holder_on_this_host_is_never_broken(tmp_path: Path, lease: float) -> None:
    proc = hold(tmp_path, "manifest_lock", lease=lease)
    try:
        stopped(proc)  # Ctrl-Z: no heartbeat, but its PID is alive here
        with (
            pytest.raises(LockTimeout, match=rf"locked by PID {proc.pid} on {HOST}"),
            locks.manifest_lock(tmp_path, timeout=2 * lease),
        ):
            pass
    finally:
        end(proc)
    # Dead on this host: taken at once, without waiting for the lease.
    started = time.monotonic()
    with locks.manifest_lock(tmp_path, timeout=lease):
        assert time.monotonic() - started < lease / 2


def test_property_pairs_of_a_frozen_other_host_crawl_are_taken_after_a_lease(
    tmp_path: Path, lease: float
) -> None:
    proc = hold_pairs_elsewhere(tmp_path, lease, ["aaaa"], released=("bbbb",))
    mine = locks.PropertyLocks(tmp_path)
    try:
        busy = mine.try_acquire("aaaa", "zillow")
        assert busy is not None and busy.remote
        assert f"PID {proc.pid} on {OTHER_HOST}" in busy.holders
        assert mine.try_acquire("bbbb", "zillow") is None  # released by its holder
        assert mine.wait([("aaaa", "zillow")], 2 * lease) == []  # refreshed: kept
        frozen = stopped(proc)
        assert mine.wait([("aaaa", "zillow")], 4 * lease) == [("aaaa", "zillow")]
        assert time.monotonic() - frozen >= lease * 0.95
    finally:
        mine.release_all()
        end(proc)


def test_crawl_takes_over_pairs_of_a_frozen_crawl_on_another_host(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    keys = [p.key for p in dataset.PROPERTIES[:2]]
    proc = hold_pairs_elsewhere(store, 2, [property_hash(keys[0])])
    try:
        stopped(proc)
        crawl = run_crawl(
            sandbox,
            store,
            "zillow",
            *[f"address={dataset.property_by_key(k).address}" for k in keys[:1]],
            settings={"PHX_LOCK_LEASE": "2", "PHX_BROWSER_SOURCES": ""},
        )
    finally:
        end(proc)
    assert crawl.returncode == 0, crawl.stderr
    assert "1 pairs are held by crawls on other hosts; waiting up to 3s" in crawl.log
    assert f"left by unresponsive (heartbeat stopped) PID {proc.pid} on {OTHER_HOST}" in crawl.log
    assert check_source(crawl.manifest, "zillow", keys[:1]) > 0


def test_a_crawl_whose_store_lease_is_taken_over_stops_with_lock_lost(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    log = tmp_path / "crawl.log"
    keys = [p.key for p in dataset.PROPERTIES[:4]]
    csv = tmp_path / "homes.csv"
    csv.write_text("address\n" + "".join(f'"{dataset.property_by_key(k).address}"\n' for k in keys))
    settings = {
        **FAST,
        **sandbox.settings(),
        "IMAGES_STORE": str(store),
        "LOG_FILE": str(log),
        "PHX_LOCK_LEASE": "2",
    }
    command = [sys.executable, "-m", "scrapy", "crawl", "redfin", "-a", f"addresses={csv}"]
    for key, value in settings.items():
        command += ["-s", f"{key}={value}"]
    sandbox.set_fault("redfin", "cdn_slow:0.2")  # still downloading when frozen
    cleanup = None
    crawl = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(store.glob("full/*/*.jpg")):
            assert time.monotonic() < deadline and crawl.poll() is None
            time.sleep(0.05)
        stopped(crawl)  # its heartbeat stops: to another host, it looks dead
        # Cleanup on another host takes the store once the crawl's lease is stale.
        cleanup = hold(store, "store_lock", ", exclusive=True", lease=2, other_host=True)
        os.kill(crawl.pid, signal.SIGCONT)
        _, stderr = crawl.communicate(timeout=120)
    finally:
        sandbox.clear_faults("redfin")
        if crawl.poll() is None:
            end(crawl)
        if cleanup is not None:
            end(cleanup)
    text = log.read_text()
    assert "Lost the shared store lock" in text, stderr
    (run,) = scan_runs(store).runs
    assert run.record["finish_reason"] == "lock_lost"


def test_three_crawls_at_once_give_the_union(sandbox: Sandbox, tmp_path: Path) -> None:
    store = tmp_path / "store"
    keys = [p.key for p in dataset.PROPERTIES[:9]]
    groups = [keys[0:5], keys[2:7], keys[4:9]]  # overlapping address files
    procs = []
    for n, group in enumerate(groups):
        csv = tmp_path / f"homes{n}.csv"
        csv.write_text(
            "address\n" + "".join(f'"{dataset.property_by_key(k).address}"\n' for k in group)
        )
        command = [
            sys.executable,
            "-m",
            "scrapy",
            "crawl",
            "all",
            "-a",
            f"addresses={csv}",
            "-a",
            "sources=zillow,redfin,maricopa",
        ]
        settings = {
            **FAST,
            **sandbox.settings(),
            "IMAGES_STORE": str(store),
            "PHX_BROWSER_SOURCES": "",
            "LOG_FILE": str(tmp_path / f"crawl{n}.log"),
        }
        for key, value in settings.items():
            command += ["-s", f"{key}={value}"]
        env = {**os.environ, "PHX_MARICOPA_TOKEN": sandbox.token}
        procs.append(subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE))
    for proc in procs:
        assert proc.wait(timeout=300) == 0
    manifest = json.loads((store / "manifest.json").read_text())
    for source in ("zillow", "redfin", "maricopa"):
        assert check_source(manifest, source, keys) > 0
    check_files(store, manifest)
    report = reconcile(store)
    assert report.errors == [] and report.warnings == []
