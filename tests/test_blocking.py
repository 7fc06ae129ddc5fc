"""Blocks against the replica: detected, counted, backed off from, never taken for "no photos"."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from phx_scraper.sandbox import dataset
from phx_scraper.sandbox.process import Sandbox
from tests.conftest import Crawl, run_crawl
from tests.crawl_checks import check_source, property_hash

KEYS = ["sunrise", "caminito", "broadway"]
SOURCES = "zillow,redfin,maricopa"
BREAKER = {
    "PHX_BROWSER_SOURCES": "",
    "CONCURRENT_REQUESTS_PER_DOMAIN": "1",
    "PHX_BREAKER_FAILURES": "3",
    "PHX_BREAKER_COOLDOWN": "3",
    "PHX_BREAKER_MAX_COOLDOWN": "6",
    "PHX_BREAKER_MAX_TRIPS": "3",
}


@pytest.fixture
def faulty(sandbox: Sandbox) -> Iterator[Sandbox]:
    sandbox.clear_requests()
    yield sandbox
    sandbox.clear_faults()


def crawl(sandbox: Sandbox, tmp_path: Path, **settings: str) -> Crawl:
    csv = tmp_path / "homes.csv"
    csv.write_text("address\n" + "".join(f'"{dataset.property_by_key(k).address}"\n' for k in KEYS))
    return run_crawl(
        sandbox,
        tmp_path / "store",
        "all",
        f"addresses={csv}",
        f"sources={SOURCES}",
        settings={**BREAKER, **settings},
    )


def run_record(crawl: Crawl) -> dict[str, Any]:
    records = [p for p in (crawl.store / "runs").glob("*.json") if p.stem.count(".") == 0]
    record: dict[str, Any] = json.loads(max(records, key=lambda p: p.stat().st_mtime).read_text())
    return record


def pages(sandbox: Sandbox, source: str) -> list[dict[str, Any]]:
    cdn = ("/fp/", "/photo/", "/az/", "/arcgis/rest/services/Aerials")
    return [r for r in sandbox.requests(source) if not r["path"].startswith(cdn)]


def test_blocked_source_waits_out_the_cooldown_while_the_others_go_on(
    faulty: Sandbox, tmp_path: Path
) -> None:
    faulty.set_fault("redfin", "block:3")
    result = crawl(faulty, tmp_path)
    assert result.returncode == 0, result.stderr
    for source in SOURCES.split(","):
        assert check_source(result.manifest, source, KEYS) > 0
    redfin = pages(faulty, "redfin")
    blocked = [r for r in redfin if r["fault"] == "block"]
    assert len(blocked) == 3
    # Held for the cooldown, not hammered (a request already queued for the
    # connection before the trip may still leave: the pause follows it).
    after = [r["t"] for r in redfin if r["t"] >= blocked[-1]["t"]]
    gap, resumed = max((b - a, b) for a, b in pairwise(after))
    assert gap >= 2.9  # the 3 s cooldown, within timer granularity
    # The other sources kept going while Redfin was held.
    for source in ("zillow", "maricopa"):
        times = [r["t"] for r in faulty.requests(source)]
        assert any(blocked[-1]["t"] < t < resumed for t in times), source
    figures = run_record(result)["breaker"]["redfin"]
    assert (figures["blocks"], figures["trips"], figures["given_up"]) == (3, 1, 0)
    assert figures["block_rate"] == pytest.approx(3 / figures["requests"])


def test_source_blocked_for_good_ends_blocked_in_bounded_time(
    faulty: Sandbox, tmp_path: Path
) -> None:
    faulty.set_fault("zillow", "block")
    started = time.monotonic()
    result = crawl(
        faulty,
        tmp_path,
        PHX_BREAKER_COOLDOWN="1",
        PHX_BREAKER_MAX_COOLDOWN="2",
        PHX_BREAKER_MAX_TRIPS="2",
    )
    assert time.monotonic() - started < 90
    assert result.returncode == 0, result.stderr
    for key in KEYS:
        outcome = result.manifest["properties"][property_hash(key)]["sources"]["zillow"]
        assert outcome["status"] == "blocked", outcome
    assert check_source(result.manifest, "redfin", KEYS) > 0
    assert check_source(result.manifest, "maricopa", KEYS) > 0
    assert run_record(result)["breaker"]["zillow"]["given_up"] == 1
    assert "zillow       blocks" in result.log


def test_429_retry_after_is_waited(faulty: Sandbox, tmp_path: Path) -> None:
    faulty.set_fault("maricopa", "429:1:2")
    result = crawl(faulty, tmp_path)
    assert result.returncode == 0, result.stderr
    times = [r["t"] for r in faulty.requests("maricopa")]
    limited = next(r["t"] for r in faulty.requests("maricopa") if r["status"] == 429)
    # The pause follows the 429 (a request already queued for the connection may leave first).
    after = [t for t in times if t >= limited]
    assert max(b - a for a, b in pairwise(after[:3])) >= 1.9  # timer granularity
    assert check_source(result.manifest, "maricopa", KEYS) > 0


def test_saved_state_keeps_the_next_run_away_until_it_expires(
    faulty: Sandbox, tmp_path: Path
) -> None:
    faulty.set_fault("redfin", "block")
    first = crawl(faulty, tmp_path, PHX_BREAKER_MAX_TRIPS="1", PHX_BREAKER_COOLDOWN="4")
    assert first.returncode == 0, first.stderr
    state = json.loads((first.store / "state" / "breaker.json").read_text())
    (slot,) = [s for s in state["slots"] if s.startswith("127.0.0.2")]
    open_until = state["slots"][slot]["open_until"]
    faulty.clear_faults()
    faulty.clear_requests()
    second = crawl(faulty, tmp_path, PHX_BREAKER_COOLDOWN="4")
    assert second.returncode == 0, second.stderr
    assert min(r["t"] for r in faulty.requests("redfin")) >= open_until
    assert check_source(second.manifest, "redfin", KEYS) > 0
    # An expired state is ignored: the next run goes straight to the site.
    state["slots"][slot]["open_until"] = time.time() - 1
    (first.store / "state" / "breaker.json").write_text(json.dumps(state))
    faulty.clear_requests()
    started = time.time()
    third = crawl(faulty, tmp_path)
    assert third.returncode == 0, third.stderr
    assert min(r["t"] for r in faulty.requests("redfin")) - started < 5
