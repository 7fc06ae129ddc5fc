"""store/locks.py, and three crawls at once on one store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from phx_scraper.sandbox import dataset
from phx_scraper.sandbox.process import Sandbox
from phx_scraper.store.locks import (
    HOST,
    LockTimeout,
    PropertyLocks,
    holders,
    manifest_lock,
    store_lock,
)
from phx_scraper.store.reconcile import reconcile
from tests.conftest import FAST, ROOT
from tests.crawl_checks import check_files, check_source

HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from phx_scraper.store.locks import {name}
    with {name}(Path(sys.argv[1]){args}):
        print("held", flush=True)
        time.sleep(60)
    """
)


def hold(root: Path, name: str, args: str = "") -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(name=name, args=args), str(root)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


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
    record = lock.with_name(f"manifest.lock.owner.{pid}.json")
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
    assert other.stdout.strip() == "another process"
    mine.release_all()


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
