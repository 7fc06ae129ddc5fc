"""Incremental crawls: complete property/source pairs are skipped, and only those."""

from __future__ import annotations

from pathlib import Path

from phx_scraper.middlewares.deltafetch import DB_DIR, DB_NAME
from phx_scraper.sandbox import dataset
from phx_scraper.sandbox.process import Sandbox
from tests.conftest import Crawl, run_crawl
from tests.crawl_checks import check_source

KEYS = ["sunrise", "broadway", "ivanhoe"]


def crawl(
    sandbox: Sandbox, tmp_path: Path, *args: str, settings: dict[str, str] | None = None
) -> Crawl:
    csv = tmp_path / "homes.csv"
    csv.write_text("address\n" + "".join(f'"{dataset.property_by_key(k).address}"\n' for k in KEYS))
    result = run_crawl(
        sandbox, tmp_path / "store", "redfin", f"addresses={csv}", *args, settings=settings
    )
    assert result.returncode == 0, result.stderr
    return result


def visited(sandbox: Sandbox) -> list[str]:
    return [r["path"] for r in sandbox.requests("redfin") if "initialInfo" in r["path"]]


def test_complete_pairs_are_skipped_until_refresh_or_force(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    first = crawl(sandbox, tmp_path)
    before = first.manifest
    sandbox.clear_requests()
    second = crawl(sandbox, tmp_path)
    assert visited(sandbox) == []
    assert "skipped: 3 property/source pairs complete in an earlier run" in second.log
    assert second.manifest["properties"] == before["properties"] | second.manifest["properties"]
    assert check_source(second.manifest, "redfin", KEYS) > 0
    sandbox.clear_requests()
    crawl(sandbox, tmp_path, "refresh_days=0")
    assert len(visited(sandbox)) == 3
    sandbox.clear_requests()
    crawl(sandbox, tmp_path, "force=1")
    assert len(visited(sandbox)) == 3


def test_a_pair_is_done_only_when_its_images_are_stored(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.set_fault("redfin", "cdn_503:2")
    try:
        first = crawl(sandbox, tmp_path, settings={"RETRY_TIMES": "0"})
    finally:
        sandbox.clear_faults("redfin")
    assert "'phx/image/rejected/http_503': 2" in first.log
    unfinished = [
        e
        for e in first.manifest["properties"].values()
        if any(r["reason"] == "http_503" for r in e["rejected"])
    ]
    sandbox.clear_requests()
    crawl(sandbox, tmp_path)
    # Only the properties whose photos did not all arrive are visited again.
    assert 1 <= len(visited(sandbox)) == len(unfinished) < len(KEYS)


def test_corrupt_database_is_rebuilt_from_the_manifest(sandbox: Sandbox, tmp_path: Path) -> None:
    crawl(sandbox, tmp_path)
    for path in (tmp_path / "store" / DB_DIR).glob(f"{DB_NAME}*"):
        path.write_bytes(b"garbage, not a dbm file" * 10)
    sandbox.clear_requests()
    result = crawl(sandbox, tmp_path)
    assert "cannot be read" in result.log and "rebuilding it from the manifest" in result.log
    assert visited(sandbox) == []
