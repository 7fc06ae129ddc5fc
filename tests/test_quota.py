"""store/quota.py: sizes, the store's usage and the quota checks."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from phx_scraper.sandbox import dataset
from phx_scraper.sandbox.process import Sandbox
from phx_scraper.store.quota import (
    StoreUsage,
    format_size,
    measure,
    parse_quota,
    parse_size,
)
from phx_scraper.store.reconcile import reconcile
from tests.conftest import run_crawl
from tests.crawl_checks import check_files, check_source


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("20GB", 20_000_000_000),
        ("500MB", 500_000_000),
        ("500 mb", 500_000_000),
        ("1.5GB", 1_500_000_000),
        ("2TB", 2_000_000_000_000),
        ("64KB", 64_000),
        ("1KiB", 1024),
        ("3MiB", 3 * 1024**2),
        ("20GiB", 20 * 1024**3),
        ("1TiB", 1024**4),
        ("4096", 4096),
        ("4096B", 4096),
        (" 7 GB ", 7_000_000_000),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GB", "20XB", "twenty GB", "-5GB", "20 G B", "1e9", "0MB"])
def test_parse_size_errors_name_the_setting(text: str) -> None:
    with pytest.raises(ValueError, match=r"^PHX_STORE_QUOTA: "):
        parse_size(text)
    with pytest.raises(ValueError, match=r"^OTHER_SETTING: "):
        parse_size(text, "OTHER_SETTING")


def test_parse_quota_unset_is_no_limit() -> None:
    assert parse_quota(None) is None
    assert parse_quota("") is None
    assert parse_quota("  ") is None
    assert parse_quota("1GB") == 1_000_000_000


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (999, "999 B"), (1000, "1.0 KB"), (1_234_567, "1.2 MB"), (20 * 10**9, "20.0 GB")],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text
    assert format_size(5 * 10**12) == "5.0 TB"


def write(root: Path, rel: str, size: int) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def test_measure_counts_images_thumbnails_and_originals_only(tmp_path: Path) -> None:
    write(tmp_path, "full/ab/ab" + "0" * 30 + ".jpg", 1000)
    write(tmp_path, "full/cd/cd" + "0" * 30 + ".png", 500)
    write(tmp_path, "thumbs/256/ab" + "0" * 30 + ".jpg", 100)
    write(tmp_path, "originals/ef/ef" + "0" * 30 + ".jpg", 2000)
    # Not counted: temp files of writes in progress, and everything outside the three trees.
    write(tmp_path, "full/ab/.tmp-ab.jpg.1.ff", 7000)
    write(tmp_path, "manifest.json", 9000)
    write(tmp_path, "runs/1a2b3c4d.json", 9000)
    write(tmp_path, "index/urls.sqlite", 9000)
    write(tmp_path, "quarantine/ab" + "0" * 30 + ".jpg", 9000)
    assert measure(tmp_path) == 3600
    assert StoreUsage.open(tmp_path, quota=10_000).used == 3600


def test_measure_of_an_empty_or_missing_store(tmp_path: Path) -> None:
    assert measure(tmp_path) == 0
    assert measure(tmp_path / "nowhere") == 0


def test_would_exceed_reserve_release_and_needed() -> None:
    usage = StoreUsage(used=900, quota=1000)
    assert not usage.would_exceed(100)
    assert usage.would_exceed(101)
    assert usage.needed(100) == 0 and usage.needed(250) == 150
    assert usage.reserve(60)
    assert usage.used == 960
    assert not usage.reserve(50)  # refused: the store is unchanged, the refusal counted
    assert usage.used == 960 and (usage.refused, usage.refused_bytes) == (1, 50)
    usage.release(60)  # the file was there already: nothing written
    assert usage.used == 900
    usage.add(40)
    assert usage.used == 940
    assert usage.summary() == {
        "quota": 1000,
        "used": 940,
        "warn": 0.9,
        "warn_level_crossed": True,
        "refused": 1,
        "refused_bytes": 50,
        "needed": 0,
    }
    assert not usage.reserve(70)
    assert usage.summary()["needed"] == 60  # 940 + 120 refused - 1000


def test_no_quota_never_exceeds_nor_warns() -> None:
    usage = StoreUsage(used=10**15)
    assert not usage.would_exceed(10**15)
    assert usage.reserve(10**15)
    assert not usage.warn_level_crossed and not usage.take_warning()
    assert usage.needed(10**15) == 0


def test_the_warning_is_given_once() -> None:
    usage = StoreUsage(used=0, quota=1000, warn=0.8)
    assert usage.reserve(799) and not usage.warn_level_crossed
    assert not usage.take_warning()
    assert usage.reserve(1) and usage.warn_level_crossed
    assert usage.take_warning()
    assert usage.reserve(100)
    assert not usage.take_warning()


def test_a_store_already_above_the_warning_level_warns_at_open(tmp_path: Path) -> None:
    write(tmp_path, "full/ab/ab" + "0" * 30 + ".jpg", 950)
    usage = StoreUsage.open(tmp_path, quota=1000)
    assert usage.warn_level_crossed and usage.take_warning()
    assert not usage.take_warning()


@pytest.mark.parametrize("warn", [0, -0.5, 1.5])
def test_warn_level_must_be_a_fraction(warn: float) -> None:
    with pytest.raises(ValueError, match=r"^PHX_STORE_QUOTA_WARN: "):
        StoreUsage(used=0, quota=1000, warn=warn)


def test_reserve_is_atomic_across_threads() -> None:
    """Worker threads racing for the last room take exactly the quota, never more."""
    usage = StoreUsage(used=0, quota=10_000)
    granted = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        granted.append(sum(usage.reserve(7) for _ in range(2000)))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 10_000 // 7
    assert usage.used == 7 * (10_000 // 7) <= 10_000
    assert usage.refused == 8 * 2000 - 10_000 // 7


def test_quota_hit_mid_crawl_leaves_a_consistent_store_and_the_next_run_completes(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    keys = ["sunrise", "broadway", "ivanhoe"]
    csv = tmp_path / "homes.csv"
    csv.write_text("address\n" + "".join(f'"{dataset.property_by_key(k).address}"\n' for k in keys))
    store = tmp_path / "store"
    full = run_crawl(
        sandbox, store, "redfin", f"addresses={csv}", settings={"PHX_STORE_QUOTA": "3MB"}
    )
    assert full.returncode == 0, full.stderr
    assert "(redfin, quota_exceeded)" in full.log
    assert "store full (PHX_STORE_QUOTA)" in full.log
    outcomes = [e["sources"]["redfin"] for e in full.manifest["properties"].values()]
    assert any(o["reason"] == "quota_exceeded" for o in outcomes)
    check_files(store, full.manifest)
    assert reconcile(store).errors == []
    assert sum(f.stat().st_size for f in store.glob("full/*/*")) <= 3_000_000
    again = run_crawl(sandbox, store, "redfin", f"addresses={csv}")
    assert again.returncode == 0, again.stderr
    assert check_source(again.manifest, "redfin", keys) > 0
