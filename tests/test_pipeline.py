"""The images pipeline against the replica: force, originals, untrusted hosts."""

from __future__ import annotations

import hashlib
from pathlib import Path

from scrapy import Spider
from scrapy.utils.test import get_crawler

from phx_scraper.items import PropertyImagesItem
from phx_scraper.pipelines.images import ContentAddressedImagesPipeline
from phx_scraper.sandbox import dataset
from phx_scraper.sandbox.process import Sandbox
from phx_scraper.store.history import scan_runs
from tests.conftest import run_crawl
from tests.crawl_checks import check_files, check_source

KEYS = ["sunrise", "caminito", "ivanhoe"]


def csv_of(tmp_path: Path, keys: list[str]) -> Path:
    path = tmp_path / "homes.csv"
    rows = "".join(f'"{dataset.property_by_key(k).address}"\n' for k in keys)
    path.write_text("address\n" + rows)
    return path


def image_paths(sandbox: Sandbox) -> list[str]:
    return sorted(r["path"] for r in sandbox.requests("redfin") if r["path"].startswith("/photo/"))


def test_force_downloads_again_and_writes_nothing_new(sandbox: Sandbox, tmp_path: Path) -> None:
    store = tmp_path / "store"
    addresses = f"addresses={csv_of(tmp_path, KEYS)}"
    sandbox.clear_requests()
    assert run_crawl(sandbox, store, "redfin", addresses).returncode == 0
    first = image_paths(sandbox)
    files = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in store.glob("full/*/*")}
    sandbox.clear_requests()
    crawl = run_crawl(sandbox, store, "redfin", addresses, "force=1")
    assert crawl.returncode == 0, crawl.stderr
    assert image_paths(sandbox) == first and first
    assert {p: p.stat().st_ino for p in store.glob("full/*/*")} == {
        p: inode for p, (inode, _) in files.items()
    }
    assert check_source(crawl.manifest, "redfin", KEYS) > 0
    check_files(store, crawl.manifest)


def test_originals_are_kept_by_their_own_md5(sandbox: Sandbox, tmp_path: Path) -> None:
    store = tmp_path / "store"
    crawl = run_crawl(
        sandbox,
        store,
        "redfin",
        f"addresses={csv_of(tmp_path, KEYS[:1])}",
        settings={"PHX_STORE_ORIGINALS": "True"},
    )
    assert crawl.returncode == 0, crawl.stderr
    originals = {p.stem: p for p in store.glob("originals/*/*")}
    for name, path in originals.items():
        assert hashlib.md5(path.read_bytes()).hexdigest() == name
    images = [i for e in crawl.manifest["properties"].values() for i in e["images"]]
    assert set(originals) == {i["source_md5"] for i in images}
    # The originals carry their metadata; the store's files do not.
    check_files(store, crawl.manifest)


def test_untrusted_photo_urls_are_rejected_not_fetched(tmp_path: Path) -> None:
    crawler = get_crawler(
        Spider, {"IMAGES_STORE": str(tmp_path), "PHX_ZILLOW_BASE_URL": "http://127.0.0.1:9"}
    )
    pipeline = ContentAddressedImagesPipeline.from_crawler(crawler)
    urls = [
        "https://photos.zillowstatic.com/fp/a-cc_ft_1536.jpg",
        "http://127.0.0.1:9/fp/b-cc_ft_1536.jpg",
        "https://evil.example/fp/c.jpg",
        "file:///etc/passwd",
        "ftp://photos.zillowstatic.com/fp/d.jpg",
    ]
    item = PropertyImagesItem(
        run_id="00000000",
        source="zillow",
        property_hash="abcd1234",
        address="x",
        canonical_address="X",
        status="ok",
        photos=[
            {"photo_id": str(i), "url": u, "position": i, "caption": "", "listing_id": None}
            for i, u in enumerate(urls)
        ],
    )
    pipeline._reject_untrusted_urls(item)
    assert [p["url"] for p in item.photos] == urls[:2]
    assert [(r["url"], r["reason"]) for r in item.rejected] == [
        (u, "host_not_allowed") for u in urls[2:]
    ]


def test_items_waiting_for_photos_pause_the_engine_until_the_photos_catch_up(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Listing pages answer at once and photos slowly: without backpressure every
    property's item would wait in memory. The engine is paused instead, and every
    photo is still stored."""
    keys = [p.key for p in dataset.PROPERTIES if p.redfin]
    store = tmp_path / "store"
    sandbox.set_fault("redfin", "cdn_slow:0.05")
    try:
        crawl = run_crawl(
            sandbox,
            store,
            "redfin",
            f"addresses={csv_of(tmp_path, keys)}",
            # 2 item slots: paused while 2 items wait for one.
            settings={"PHX_IMAGE_INFLIGHT": "8", "PHX_IMAGE_WORKERS": "1"},
        )
    finally:
        sandbox.clear_faults("redfin")
    assert crawl.returncode == 0, crawl.stderr
    [run] = scan_runs(store).runs
    stats = run.record["stats"]
    assert stats["phx/backpressure/pauses"] >= 1
    # At most the 2 that paused it plus the listing pages already in flight
    # (8 per domain); without the pause, most of the crawl's items.
    assert stats["phx/backpressure/max_waiting_items"] <= 2 + 8 < len(keys)
    assert check_source(crawl.manifest, "redfin", keys) > 0
    check_files(store, crawl.manifest)
