"""Crawls stopped at any moment (SIGKILL, Ctrl-C once or twice, SIGTERM) and resumed with
the same command end with the uninterrupted crawl's store."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from phx_scraper.sandbox import dataset
from phx_scraper.sandbox.process import Sandbox
from phx_scraper.store.reconcile import reconcile
from phx_scraper.store.urlindex import INDEX_PATH
from tests.conftest import FAST, ROOT, Crawl, run_crawl
from tests.crawl_checks import check_files

KEYS = ["sunrise", "caminito", "rancho_vista", "ivanhoe", "elgin", "kent"]
ARGS = ("sources=zillow,redfin,maricopa",)
SETTINGS = {"PHX_BROWSER_SOURCES": "", "CONCURRENT_REQUESTS_PER_DOMAIN": "2"}


def md5_sets(manifest: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    sets: dict[tuple[str, str], set[str]] = {}
    for key, entry in manifest["properties"].items():
        for image in entry["images"]:
            for origin in image["origins"]:
                sets.setdefault((key, origin["source"]), set()).add(image["md5"])
    return sets


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "homes.csv"
    path.write_text(
        "address\n" + "".join(f'"{dataset.property_by_key(k).address}"\n' for k in KEYS)
    )
    return path


@pytest.fixture(scope="module")
def reference(sandbox: Sandbox, csv: Path) -> Crawl:
    crawl = run_crawl(
        sandbox, csv.parent / "reference", "all", f"addresses={csv}", *ARGS, settings=SETTINGS
    )
    assert crawl.returncode == 0, crawl.stderr
    return crawl


def kill_at(
    sandbox: Sandbox, store: Path, csv: Path, delay: float, signals: tuple[int, ...]
) -> None:
    settings = {
        **FAST,
        **SETTINGS,
        **sandbox.settings(),
        "IMAGES_STORE": str(store),
        "JOBDIR": str(store.parent / "job"),
    }
    command = [sys.executable, "-m", "scrapy", "crawl", "all", "-a", f"addresses={csv}"]
    command += [arg for a in ARGS for arg in ("-a", a)]
    for key, value in settings.items():
        command += ["-s", f"{key}={value}"]
    env = {**os.environ, "PHX_MARICOPA_TOKEN": sandbox.token}
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(delay)
    for sig in signals:
        if proc.poll() is None:
            os.kill(proc.pid, sig)
            time.sleep(0.2)
    proc.wait(timeout=120)


STOPS = {
    **{f"sigkill-{seed}": (seed, (signal.SIGKILL,)) for seed in range(10)},
    "ctrl-c": (11, (signal.SIGINT,)),
    "ctrl-c-twice": (12, (signal.SIGINT, signal.SIGINT)),
    "sigterm": (13, (signal.SIGTERM,)),
}


@pytest.mark.parametrize("stop", STOPS)
def test_stop_then_resume(
    sandbox: Sandbox, csv: Path, reference: Crawl, tmp_path: Path, stop: str
) -> None:
    seed, signals = STOPS[stop]
    store = tmp_path / "store"
    sandbox.set_fault("zillow", "cdn_slow:0.05")
    try:
        kill_at(sandbox, store, csv, random.Random(seed).uniform(0.8, 4.0), signals)
    finally:
        sandbox.clear_faults("zillow")
    indexed: set[str] = set()
    if (store / INDEX_PATH).exists():
        with sqlite3.connect(store / INDEX_PATH) as db:
            indexed = {url for (url,) in db.execute("SELECT url FROM urls")}
    sandbox.clear_requests()
    resumed = run_crawl(
        sandbox,
        store,
        "all",
        f"addresses={csv}",
        *ARGS,
        settings={**SETTINGS, "JOBDIR": str(tmp_path / "job")},
    )
    assert resumed.returncode == 0, resumed.stderr
    assert md5_sets(resumed.manifest) == md5_sets(reference.manifest)
    check_files(store, resumed.manifest)
    report = reconcile(store)
    assert report.errors == [] and report.warnings == []
    fetched = {
        base + r["path"] for source, base in sandbox.urls.items() for r in sandbox.requests(source)
    }
    assert not fetched & indexed, "an image stored before the kill was downloaded again"


def test_damaged_jobdir_is_one_clear_line(sandbox: Sandbox, csv: Path, tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    (job / "spider.state").write_bytes(b"not a pickle")
    crawl = run_crawl(
        sandbox,
        tmp_path / "store",
        "all",
        f"addresses={csv}",
        *ARGS,
        settings={**SETTINGS, "JOBDIR": str(job)},
    )
    assert crawl.returncode == 2
    assert crawl.stderr.strip().splitlines()[-1].startswith(f"error: JOBDIR {job} is damaged")
    assert not (tmp_path / "store").exists()
