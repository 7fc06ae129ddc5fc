"""The whole replica crawled by ``all``: every source, every property, exactly its photos."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from phx_scraper.sandbox import dataset
from phx_scraper.sandbox.process import Sandbox
from phx_scraper.store.schema import validate
from tests.conftest import CHROMIUM, Crawl, run_crawl
from tests.crawl_checks import check_files, check_source, property_hash

DEMO_CSV = Path(dataset.__file__).with_name("demo_addresses.csv")
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")


@pytest.fixture(scope="module")
def all_crawl(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Crawl:
    root = tmp_path_factory.mktemp("all")
    crawl = run_crawl(
        sandbox,
        root / "store",
        "all",
        f"addresses={DEMO_CSV}",
        settings={"PHX_BROWSER_SOURCES": "phoenix_mls", "JOBDIR": str(root / "job")},
    )
    assert crawl.returncode == 0, crawl.stderr
    return crawl


@needs_chromium
@pytest.mark.parametrize("source", dataset.SOURCES)
def test_every_property_has_exactly_its_photos(all_crawl: Crawl, source: str) -> None:
    manifest = all_crawl.manifest
    assert check_source(manifest, source) > 0
    assert validate(manifest) == []


@needs_chromium
def test_files_and_manifest_agree_and_one_run_wrote_everything(all_crawl: Crawl) -> None:
    manifest = all_crawl.manifest
    check_files(all_crawl.store, manifest)
    run_ids = {
        outcome["run_id"]
        for entry in manifest["properties"].values()
        for outcome in entry["sources"].values()
    }
    assert len(run_ids) == 1
    assert len(list((all_crawl.store / "runs").glob("*.reconcile.json"))) == 1


@needs_chromium
@pytest.mark.parametrize("source", ["maricopa", "phoenix_mls"])
def test_facts(all_crawl: Crawl, source: str) -> None:
    for prop in dataset.PROPERTIES:
        outcome = all_crawl.manifest["properties"][property_hash(prop.key)]["sources"][source]
        if outcome["status"] == "ok":
            expected = dataset.expected_facts(source, prop.key)
            facts = {k: v for k, v in outcome["facts"].items() if k in expected}
            assert facts == expected, prop.key


@needs_chromium
def test_sources_ran_concurrently(all_crawl: Crawl, sandbox: Sandbox) -> None:
    """Each source's first request comes before any source has finished its pages."""
    firsts = {s: min(r["t"] for r in sandbox.requests(s)) for s in dataset.SOURCES}
    lasts = {s: max(r["t"] for r in sandbox.requests(s)) for s in dataset.SOURCES}
    assert max(firsts.values()) < min(lasts.values())


@needs_chromium
def test_token_never_written(all_crawl: Crawl, sandbox: Sandbox) -> None:
    assert any(r["has_authorization"] for r in sandbox.requests("maricopa"))
    job = all_crawl.store.parent / "job"
    found = subprocess.run(
        ["grep", "-rl", sandbox.token, str(all_crawl.store), str(job)],
        capture_output=True,
        text=True,
    )
    assert found.stdout == ""
    assert sandbox.token not in all_crawl.log


def test_maricopa_without_token_uses_arcgis(sandbox: Sandbox, tmp_path: Path) -> None:
    sandbox.clear_requests()
    crawl = run_crawl(
        sandbox,
        tmp_path / "store",
        "maricopa",
        f"addresses={DEMO_CSV}",
        env={"PHX_MARICOPA_TOKEN": ""},
    )
    assert crawl.returncode == 0, crawl.stderr
    assert check_source(crawl.manifest, "maricopa") > 0
    assert not any(r["has_authorization"] for r in sandbox.requests("maricopa"))
    assert not [r for r in sandbox.requests("maricopa") if r["path"].startswith("/search/")]


def outcome_of(crawl: Crawl, key: str, source: str) -> dict[str, Any]:
    entry: dict[str, Any] = crawl.manifest["properties"][property_hash(key)]
    return entry["sources"][source]


@needs_chromium
def test_zillow_through_the_browser(sandbox: Sandbox, tmp_path: Path) -> None:
    keys = [p.key for p in dataset.PROPERTIES[:6]]
    csv = tmp_path / "some.csv"
    csv.write_text("address\n" + "".join(f'"{dataset.property_by_key(k).address}"\n' for k in keys))
    crawl = run_crawl(
        sandbox,
        tmp_path / "store",
        "zillow",
        f"addresses={csv}",
        settings={"PHX_BROWSER_SOURCES": "zillow"},
    )
    assert crawl.returncode == 0, crawl.stderr
    assert "scrapy-playwright" in crawl.log
    assert check_source(crawl.manifest, "zillow", keys) > 0


def test_mls_without_a_browser_is_blocked_not_empty(sandbox: Sandbox, tmp_path: Path) -> None:
    key = dataset.PROPERTIES[0].key
    crawl = run_crawl(
        sandbox,
        tmp_path / "store",
        "phoenix_mls",
        f"address={dataset.property_by_key(key).address}",
        settings={"PHX_BROWSER_SOURCES": ""},
    )
    assert crawl.returncode == 0, crawl.stderr
    outcome = outcome_of(crawl, key, "phoenix_mls")
    assert (outcome["status"], outcome["reason"]) == ("blocked", "waf_403")
    assert crawl.manifest["properties"][property_hash(key)]["images"] == []
