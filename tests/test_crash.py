"""A crawl killed with SIGKILL leaves orphans at most; the next crawl completes the store."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from phx_scraper.sandbox import dataset
from phx_scraper.sandbox.process import Sandbox
from phx_scraper.store.reconcile import reconcile
from phx_scraper.store.urlindex import INDEX_PATH
from tests.conftest import FAST, ROOT, run_crawl
from tests.crawl_checks import check_files, check_source

KEYS = ["sunrise", "elgin", "ivanhoe", "caminito"]


def _stored(store: Path) -> int:
    return sum(1 for p in store.glob("full/*/*") if not p.name.startswith(".tmp-"))


def _indexed(store: Path) -> int:
    """Rows the crawl has committed to the URL index so far (read-only, WAL)."""
    if not (store / INDEX_PATH).exists():
        return 0
    db = sqlite3.connect(f"file:{store / INDEX_PATH}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM urls").fetchone()[0])
    except sqlite3.OperationalError:  # the schema is not created yet
        return 0
    finally:
        db.close()


def test_kill_between_image_writes_and_manifest(sandbox: Sandbox, tmp_path: Path) -> None:
    store = tmp_path / "store"
    csv = tmp_path / "homes.csv"
    csv.write_text("address\n" + "".join(f'"{dataset.property_by_key(k).address}"\n' for k in KEYS))
    # Slow images: the crawl is still downloading when it is killed.
    sandbox.set_fault("redfin", "cdn_slow:0.2")
    try:
        settings = {**FAST, **sandbox.settings(), "IMAGES_STORE": str(store)}
        command = [sys.executable, "-m", "scrapy", "crawl", "redfin", "-a", f"addresses={csv}"]
        for key, value in settings.items():
            command += ["-s", f"{key}={value}"]
        proc = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while not (_stored(store) >= 5 and _indexed(store) >= 1):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        sandbox.clear_faults("redfin")
    stored_before = {p.stem for p in store.glob("full/*/*") if not p.name.startswith(".tmp-")}
    report = reconcile(store)
    assert report.errors == [] and report.exit_code == 0
    with sqlite3.connect(store / INDEX_PATH) as db:
        indexed = {urlsplit(url).path for (url,) in db.execute("SELECT url FROM urls")}
    assert indexed
    sandbox.clear_requests()
    crawl = run_crawl(sandbox, store, "redfin", f"addresses={csv}")
    assert crawl.returncode == 0, crawl.stderr
    assert check_source(crawl.manifest, "redfin", KEYS) > 0
    assert stored_before <= check_files(store, crawl.manifest)
    # What the URL index knew before the kill was not downloaded again (a file
    # made durable just before the kill, not yet indexed, is fetched and deduplicated).
    fetched = {r["path"] for r in sandbox.requests("redfin") if r["path"].startswith("/photo/")}
    assert fetched and not fetched & indexed
    after = reconcile(store)
    assert after.errors == [] and after.warnings == []  # temp leftovers are not orphans
