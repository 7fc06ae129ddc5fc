"""A full disk (ENOSPC at the write primitive) stops the crawl cleanly; the next run completes."""

from __future__ import annotations

from pathlib import Path

from phx_scraper.sandbox import dataset
from phx_scraper.sandbox.process import Sandbox
from phx_scraper.store.files import TEMP_PREFIX
from phx_scraper.store.reconcile import reconcile
from tests.conftest import run_crawl
from tests.crawl_checks import check_files, check_source

KEYS = ["sunrise", "broadway", "ivanhoe"]


def test_enospc_stops_cleanly_and_the_next_run_completes(sandbox: Sandbox, tmp_path: Path) -> None:
    csv = tmp_path / "homes.csv"
    csv.write_text("address\n" + "".join(f'"{dataset.property_by_key(k).address}"\n' for k in KEYS))
    store = tmp_path / "store"
    full = run_crawl(
        sandbox,
        store,
        "redfin",
        f"addresses={csv}",
        env={
            "PYTHONPATH": str(Path(__file__).with_name("enospc")),
            "PHX_TEST_ENOSPC_AFTER": "20",
        },
    )
    assert full.returncode == 0, full.stderr
    assert "(redfin, disk_full)" in full.log or "'finish_reason': 'disk_full'" in full.log
    assert not list(store.rglob(f"{TEMP_PREFIX}*")), "a partial file was left behind"
    for path in store.glob("full/*/*"):  # every content name holds its whole content
        assert path.stat().st_size > 0
    assert reconcile(store).errors == []
    # The manifest could not be written either: the old one (none here) is untouched.
    assert "Manifest not written, the disk is full" in full.log
    assert not (store / "manifest.json").exists()
    again = run_crawl(sandbox, store, "redfin", f"addresses={csv}")
    assert again.returncode == 0, again.stderr
    assert check_source(again.manifest, "redfin", KEYS) > 0
    check_files(store, again.manifest)
    assert reconcile(store).errors == []
