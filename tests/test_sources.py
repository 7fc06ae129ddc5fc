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


def test_the_dataset_exercises_every_variant_of_sources_md() -> None:
    """The all-sources crawl above proves each variant parses: make sure each one is there."""
    homes = dataset.PROPERTIES
    zillow = [p.zillow for p in homes if p.zillow]
    redfin = [p.redfin for p in homes if p.redfin]
    assert {z.layout for z in zillow} == {"component", "page", "apollo"}
    assert any(z.autocomplete_empty for z in zillow)
    assert {r.api for r in redfin} == {"ok", "refused_403", "refused_code"}
    assert {r.embedded for r in redfin if r.api != "ok"} == {"text", "body"}
    assert not all(r.row_id for r in redfin) and not all(r.exact_match for r in redfin)
    assert any(r.earlier for r in redfin)
    assert {p.parcel.layout for p in homes if p.parcel} == {"real", "total"}
    assert any(len(p.mls) > 1 for p in homes) and any(p.unit for p in homes)


@needs_chromium
def test_shared_photo_is_one_group_with_the_right_best_member(all_crawl: Crawl) -> None:
    shared = next(s for s in dataset.shared_pictures() if len(s.photos) == 3 and s.identical)
    entry = all_crawl.manifest["properties"][property_hash(shared.key)]
    wanted = set(shared.photos)
    members = [
        image
        for image in entry["images"]
        if {(o["source"], o["photo_id"]) for o in image["origins"]} & wanted
    ]
    # Zillow and Redfin gave the same bytes: one file; Phoenix MLS's original: another.
    assert len(members) == 2
    identical = next(i for i in members if len(i["origins"]) == 2)
    assert {(o["source"], o["photo_id"]) for o in identical["origins"]} == set(shared.identical)
    assert members[0]["group"] is not None and members[0]["group"] == members[1]["group"]
    best = [i for i in members if i["best"]]
    assert len(best) == 1 and best[0]["width"] == max(i["width"] for i in members)
    assert not [i for i in entry["images"] if i["group"] == best[0]["group"] and i not in members]


@needs_chromium
def test_browser_requests_survive_the_jobdir(all_crawl: Crawl) -> None:
    assert "Unable to serialize" not in all_crawl.log


def test_sources_subset(sandbox: Sandbox, tmp_path: Path) -> None:
    key = dataset.PROPERTIES[0].key
    crawl = run_crawl(
        sandbox,
        tmp_path / "store",
        "all",
        f"address={dataset.property_by_key(key).address}",
        "sources=maricopa,redfin",
    )
    assert crawl.returncode == 0, crawl.stderr
    assert set(crawl.manifest["properties"][property_hash(key)]["sources"]) == {
        "maricopa",
        "redfin",
    }


def test_missing_browser_is_one_clear_line(sandbox: Sandbox, tmp_path: Path) -> None:
    crawl = run_crawl(
        sandbox,
        tmp_path / "store",
        "phoenix_mls",
        f"address={dataset.PROPERTIES[0].address}",
        settings={"PHX_BROWSER_EXECUTABLE": "/nonexistent/chromium"},
    )
    assert crawl.returncode == 2
    assert crawl.stderr.strip().splitlines()[-1] == (
        "error: PHX_BROWSER_EXECUTABLE='/nonexistent/chromium' does not exist; "
        "install Debian's chromium (apt-get install chromium) or fix the path"
    )
    assert not (tmp_path / "store").exists()
