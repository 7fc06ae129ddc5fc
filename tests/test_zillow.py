"""Zillow end to end against the replica: exact photo ids at the widest variant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phx_scraper.sandbox import dataset
from phx_scraper.sandbox.process import Sandbox
from tests.conftest import run_crawl
from tests.crawl_checks import check_files, check_source

DEMO_CSV = Path(dataset.__file__).with_name("demo_addresses.csv")


def image_requests(sandbox: Sandbox) -> list[str]:
    return [r["path"] for r in sandbox.requests("zillow") if r["path"].startswith("/fp/")]


@pytest.fixture(scope="module")
def zillow_store(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("zillow") / "store"
    sandbox.clear_requests()
    crawl = run_crawl(
        sandbox, store, "zillow", f"addresses={DEMO_CSV}", settings={"PHX_BROWSER_SOURCES": ""}
    )
    assert crawl.returncode == 0, crawl.stderr
    return store


def test_every_property_has_exactly_its_photos(zillow_store: Path) -> None:
    manifest = json.loads((zillow_store / "manifest.json").read_text())
    assert check_source(manifest, "zillow") > 50
    check_files(zillow_store, manifest)


def test_only_the_chosen_variants_are_fetched_once_each(
    zillow_store: Path, sandbox: Sandbox
) -> None:
    fetched = image_requests(sandbox)
    expected = {
        photo.path
        for prop in dataset.PROPERTIES
        for photo in dataset.expected_photos("zillow", prop.key)
    }
    assert sorted(fetched) == sorted(expected)
    assert not [r for r in sandbox.requests("zillow") if "/h_n/" in r["path"]]


def test_second_crawl_downloads_nothing(zillow_store: Path, sandbox: Sandbox) -> None:
    before = json.loads((zillow_store / "manifest.json").read_text())
    sandbox.clear_requests()
    crawl = run_crawl(
        sandbox,
        zillow_store,
        "zillow",
        f"addresses={DEMO_CSV}",
        settings={"PHX_BROWSER_SOURCES": ""},
    )
    assert crawl.returncode == 0, crawl.stderr
    # Only photos whose rejection may be transient (a cut transfer) are tried again.
    retried = {
        photo.path
        for prop in dataset.PROPERTIES
        for photo in dataset.expected_photos("zillow", prop.key)
        if photo.fault in ("truncated", "empty")
    }
    assert retried and sorted(image_requests(sandbox)) == sorted(retried)
    after = json.loads((zillow_store / "manifest.json").read_text())
    md5s = {h: {i["md5"] for i in e["images"]} for h, e in before["properties"].items()}
    assert {h: {i["md5"] for i in e["images"]} for h, e in after["properties"].items()} == md5s
