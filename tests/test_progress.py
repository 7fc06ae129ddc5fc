"""The progress log line (extensions/progress.py): on a fake clock, then during a real crawl."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from scrapy import Request, Spider
from scrapy.exceptions import NotConfigured
from scrapy.http import HtmlResponse
from scrapy.utils.test import get_crawler

from phx_scraper.extensions.progress import ProgressLog
from phx_scraper.items import PropertyImagesItem
from phx_scraper.middlewares.breaker import CircuitBreakerMiddleware
from phx_scraper.sandbox import dataset
from phx_scraper.sandbox.process import Sandbox
from tests.conftest import run_crawl

T0 = 1_750_000_000.0
#: Until the project enables it in settings.py, a crawl test asks for it.
EXTENSIONS = {
    "phx_scraper.extensions.progress.ProgressLog": 600,
    "phx_scraper.extensions.manifest.ManifestWriter": 500,
}


def item(source: str, property_hash: str) -> PropertyImagesItem:
    return PropertyImagesItem(
        run_id="r",
        source=source,
        property_hash=property_hash,
        address="a",
        canonical_address="A",
        status="ok",
    )


def progress(tmp_path: Path, clock: list[float], **settings: object) -> ProgressLog:
    crawler = get_crawler(Spider, {"IMAGES_STORE": str(tmp_path), **settings})
    ext = ProgressLog(crawler, clock=lambda: clock[0])
    ext.started = T0
    ext.properties = 4
    ext.sources = ("redfin", "zillow")
    return ext


def test_line_counts_pairs_images_and_a_source_backing_off(tmp_path: Path) -> None:
    clock = [T0 + 60]
    ext = progress(tmp_path, clock)
    stats = ext.crawler.stats
    assert stats is not None
    spider = Spider("all")
    for key in ("aaaaaaaa", "bbbbbbbb"):
        ext.item_scraped(item("zillow", key), spider)
        stats.inc_value("item_scraped_count")
    ext.item_scraped(item("redfin", "aaaaaaaa"), spider)
    stats.inc_value("item_scraped_count")
    stats.set_value("phx/image/stored", 30)
    stats.set_value("phx/image/deduplicated", 2)
    stats.set_value("phx/image/uptodate", 5)
    stats.set_value("phx/image/rejected/truncated", 1)
    stats.set_value("phx/image/rejected/too_small", 2)
    # Redfin answers 503: the breaker opens its slot for 300 s.
    breaker = CircuitBreakerMiddleware(
        ext.crawler,
        failures=1,
        cooldown=300,
        clock=lambda: clock[0],
        random=lambda: 0.0,
        failure_exceptions=(),
    )
    request = Request("https://www.redfin.com/x", meta={"phx": {"source": "redfin"}})
    breaker.process_response(request, HtmlResponse(request.url, status=503, request=request))
    ext.breaker = breaker

    until = time.strftime("%H:%M:%S", time.localtime(T0 + 360))
    assert ext.line() == (
        "Progress: 3/8 property/source pairs (38%), 1/4 properties complete; "
        "images 30 stored, 2 deduplicated, 5 up to date, 3 rejected (too_small 2, truncated 1); "
        f"redfin 1/4 backing off until {until} (in 5m00s), zillow 2/4 ok; "
        "about 5m00s left"  # 100 s at the pace so far, but redfin waits 300 s
    )
    clock[0] = T0 + 360
    breaker.breaker.admit("www.redfin.com")  # cooldown over: the probe goes out
    assert "redfin 1/4 probing, zillow 2/4 ok; about 10m00s left" in ext.line()


def test_given_up_is_read_from_the_stats_without_the_breaker(tmp_path: Path) -> None:
    ext = progress(tmp_path, [T0])
    assert ext.crawler.stats is not None
    ext.crawler.stats.set_value("phx/breaker/redfin/given_up", 1)
    assert ext.line().endswith("redfin 0/4 given up, zillow 0/4 ok; time left unknown"), ext.line()


def test_interval_zero_turns_it_off() -> None:
    with pytest.raises(NotConfigured):
        ProgressLog.from_crawler(get_crawler(Spider, {"PHX_PROGRESS_INTERVAL": 0}))


LINE = re.compile(
    r"\[phx_scraper\.extensions\.progress\] INFO: Progress: (\d+)/(\d+) property/source pairs "
    r".*, (\d+)/(\d+) properties complete; images \d+ stored, .*; "
    r"maricopa \d+/\d+ ok, redfin \d+/\d+ \w.*; (about \S+ left|time left unknown|finishing)$"
)


def test_progress_lines_during_a_crawl(sandbox: Sandbox, tmp_path: Path) -> None:
    keys = ("broadway", "apache", "monterey")
    addresses = tmp_path / "homes.csv"
    rows = [f'"{dataset.property_by_key(key).address}"\n' for key in keys]
    addresses.write_text("address\n" + "".join(rows))
    sandbox.set_fault("redfin", "slow:0.5")
    try:
        crawl = run_crawl(
            sandbox,
            tmp_path / "store",
            "all",
            f"addresses={addresses}",
            "sources=maricopa,redfin",
            settings={
                "PHX_PROGRESS_INTERVAL": "0.5",
                "EXTENSIONS": json.dumps(EXTENSIONS),
                "PHX_BROWSER_SOURCES": "",
            },
        )
    finally:
        sandbox.clear_faults("redfin")
    assert crawl.returncode == 0, crawl.stderr
    found = [LINE.search(line) for line in crawl.log.splitlines() if "Progress:" in line]
    lines = [m for m in found if m]
    assert len(lines) >= 2 and len(lines) == len(found), crawl.log
    assert {(m[2], m[4]) for m in lines} == {("6", "3")}
    done = [int(m[1]) for m in lines]
    assert done == sorted(done) and done[-1] > done[0]

    quiet = run_crawl(
        sandbox,
        tmp_path / "quiet",
        "all",
        f"address={dataset.property_by_key('monterey').address}",
        "sources=maricopa",
        settings={
            "PHX_PROGRESS_INTERVAL": "0.1",
            "EXTENSIONS": json.dumps(EXTENSIONS),
            "LOG_LEVEL": "WARNING",
        },
    )
    assert quiet.returncode == 0, quiet.stderr
    assert "Progress:" not in quiet.log
