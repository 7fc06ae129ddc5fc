"""The store's report (store/report.py) and ``scrapy report``, opened in headless Chromium.

A crawl of the replica gives a demo-like store; the report must open from
disk with no network, show every property with one thumbnail per stored
image, and filter by address. A synthetic 1,000-home manifest checks that the
page draws one page of cards, not all of them.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from PIL import Image

from phx_scraper.browser import CHROMIUM_ARGS
from phx_scraper.sandbox import dataset
from phx_scraper.sandbox.process import Sandbox
from phx_scraper.store import manifest as manifest_store
from phx_scraper.store.files import content_path, md5_hex, thumb_path
from phx_scraper.store.history import write_run
from phx_scraper.store.report import PAGE_SIZE, block_chart, write_report
from tests.conftest import CHROMIUM, ROOT, run_crawl, store_command
from tests.crawl_checks import property_hash

RUN_ID = "0e1e2e3e"
#: Plain, a source without a match, rejected photos of three kinds, no photos.
KEYS = ("broadway", "glenrosa", "page_ave", "kent", "no_photos")
ARGS = CHROMIUM_ARGS


def scrapy_report(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return store_command("report", store, *args)


@pytest.fixture(scope="module")
def store(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    addresses = tmp / "homes.csv"
    rows = [f'"{dataset.property_by_key(key).address}"\n' for key in KEYS]
    addresses.write_text("address\n" + "".join(rows))
    crawl = run_crawl(
        sandbox,
        tmp / "store",
        "all",
        f"addresses={addresses}",
        "sources=maricopa,redfin,zillow",
        f"run_id={RUN_ID}",
        settings={"PHX_BROWSER_SOURCES": ""},
    )
    assert crawl.returncode == 0, crawl.stderr
    assert len(crawl.manifest["properties"]) == len(KEYS)
    done = scrapy_report(crawl.store, "--run", RUN_ID)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"Report: {(crawl.store / 'report.html').as_uri()}",
        f"Run report: {(crawl.store / 'runs' / f'{RUN_ID}.report.html').as_uri()}",
    ]
    return crawl.store


def embedded_data(path: Path) -> dict[str, Any]:
    found = re.search(
        r'<script type="application/json" id=phx-data>(.*?)</script>', path.read_text()
    )
    assert found is not None
    data: dict[str, Any] = json.loads(found[1])
    return data


def test_report_command_writes_the_page_and_the_run_copy(store: Path) -> None:
    manifest = json.loads((store / "manifest.json").read_text())
    latest, copy = store / "report.html", store / "runs" / f"{RUN_ID}.report.html"
    for path, root in ((latest, ""), (copy, "../")):
        text = path.read_text()
        data = embedded_data(path)
        assert data["root"] == root
        shown = {p["k"]: p for p in data["properties"]}
        assert shown.keys() == manifest["properties"].keys()
        for key, prop in manifest["properties"].items():
            images = len(shown[key]["i"]) + sum(len(g) for g in shown[key]["g"])
            assert images == len(prop["images"])
        # Nothing but the store's own files, by relative paths.
        links = re.findall(r'(?:src|href)="([^"]*)"', text)
        assert links and all(not urlsplit(link).scheme for link in links)
        assert f'href="{root}runs/{RUN_ID}.report.html"' in text
    assert re.search(r"<svg class=chart role=img", latest.read_text())

    assert scrapy_report(store, "--run", "ffffffff").returncode == 1
    missing = scrapy_report(store.parent / "no-store")
    assert missing.returncode == 2 and "no manifest" in missing.stderr


def test_run_section_lists_runs_and_draws_breaker_figures(tmp_path: Path) -> None:
    manifest_store.save(tmp_path, manifest_store.empty())
    breaker = {
        "redfin": {
            "requests": 40,
            "blocks": 10,
            "block_rate": 0.25,
            "trips": 2,
            "open_seconds": 660,
            "given_up": True,
        },
        "zillow": {"requests": 12, "blocks": 0, "block_rate": 0.0},
    }
    for n, run_id in enumerate(("1a2b3c4d", "5e6f7a8b")):
        write_run(
            tmp_path,
            {
                "run_id": run_id,
                "spider": "all",
                "sources": {},
                "arguments": {},
                "started_at": f"2026-11-25T10:0{n}:00Z",
                "finished_at": f"2026-11-25T10:0{n}:30Z",
                "finish_reason": "finished",
                "breaker": breaker,
            },
        )
    write_report(tmp_path, "1a2b3c4d")
    text = write_report(tmp_path).read_text()  # the newest run, no copy
    assert "<h2>Run 5e6f7a8b</h2>" in text
    assert '<a href="runs/1a2b3c4d.report.html">1a2b3c4d</a>' in text
    assert "<td>5e6f7a8b (this report)</td>" in text  # no copy of its own: no link
    chart = block_chart(breaker)
    assert chart.count("class=rate") == 2 and "width=45.0 height=16 class=rate" in chart
    assert "25 % (10 of 40)" in chart and "2, open 660 s, given up" in chart
    assert "width=100.0 height=16 class=trips" in chart
    assert "No block or breaker" in block_chart({})


# -- in the browser -----------------------------------------------------------


@dataclass
class Visit:
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


def in_browser(drive: Callable[[Any, Visit], None]) -> Visit:
    """Run ``drive(page, visit)`` in headless Chromium, recording console errors and requests."""
    playwright = pytest.importorskip("playwright.sync_api")
    visit = Visit()

    def run() -> None:
        with playwright.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.on(
                    "console",
                    lambda m: visit.errors.append(m.text) if m.type == "error" else None,
                )
                page.on("pageerror", lambda e: visit.errors.append(str(e)))
                page.on("request", lambda r: visit.requests.append(r.url))
                drive(page, visit)
            finally:
                browser.close()

    # Playwright's sync API refuses to run inside pytest-twisted's asyncio loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(run).result(timeout=120)
    return visit


LOAD_ALL_IMAGES = """async () => {
  const images = [...document.images];
  for (const img of images) img.loading = "eager";
  await Promise.all(images.map(img => img.decode().catch(() => null)));
  return images.map(img => img.naturalWidth);
}"""


def local_file(url: str) -> Path:
    parts = urlsplit(url)
    assert parts.scheme == "file", url
    return Path(unquote(parts.path))


def cards(page: Any) -> list[str]:
    return list(page.eval_on_selector_all("article.prop", "els => els.map(e => e.dataset.key)"))


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
@pytest.mark.parametrize("name", ["report.html", f"runs/{RUN_ID}.report.html"])
def test_report_opens_from_disk_with_every_property(store: Path, name: str) -> None:
    manifest = json.loads((store / "manifest.json").read_text())
    props = manifest["properties"]

    def drive(page: Any, visit: Visit) -> None:
        page.goto((store / name).as_uri())
        page.wait_for_selector("article.prop")
        assert sorted(cards(page)) == sorted(props)
        for key, prop in props.items():
            card = f'article.prop[data-key="{key}"]'
            assert page.locator(f"{card} img").count() == len(prop["images"])
            groups = {i["group"] for i in prop["images"] if i["group"]}
            assert page.locator(f"{card} .group").count() == len(groups)
            assert page.locator(f"{card} .best").count() == len(groups)
            rejected = page.locator(f"{card} details.rejected summary")
            if prop["rejected"]:
                assert rejected.inner_text() == f"{len(prop['rejected'])} rejected"
            else:
                assert rejected.count() == 0
        # Every thumbnail and every full image it opens is a file of the store.
        for url in page.eval_on_selector_all(
            "a.thumb", "els => els.flatMap(a => [a.href, a.querySelector('img').src])"
        ):
            path = local_file(url)
            assert path.is_file() and path.resolve().is_relative_to(store), url
        page.fill("#search", "broadway tempe")
        assert cards(page) == [property_hash("broadway")]
        page.fill("#search", "no such street")
        assert cards(page) == []
        assert "Page 1 of 1 · 0 of 5 properties" in page.inner_text("#position")
        page.fill("#search", property_hash("kent"))
        assert cards(page) == [property_hash("kent")]
        page.fill("#search", "")
        assert len(cards(page)) == len(props)
        run_link = page.locator(f'#runs a:text("{RUN_ID}")')
        assert local_file(run_link.evaluate("a => a.href")).is_file()
        # Every thumbnail loads (lazy ones too, once asked for).
        sizes = page.evaluate(LOAD_ALL_IMAGES)
        assert len(sizes) == sum(len(p["images"]) for p in props.values()) and all(sizes)
        if name == "report.html":
            (ROOT / "test-artifacts").mkdir(exist_ok=True)
            page.screenshot(path=str(ROOT / "test-artifacts" / "report.png"), full_page=True)

    visit = in_browser(drive)
    assert visit.errors == []
    assert visit.requests and all(url.startswith("file://") for url in visit.requests)


def synthetic_store(root: Path, properties: int = 1000, per_property: int = 4) -> list[str]:
    """A manifest of ``properties`` homes sharing ``per_property`` real image files."""
    images = []
    for n in range(per_property):
        buffer = io.BytesIO()
        Image.new("RGB", (320, 240), (40 * n, 120, 200)).save(buffer, "JPEG")
        data = buffer.getvalue()
        md5 = md5_hex(data)
        for rel in (content_path(md5, "jpg"), thumb_path(md5, 256)):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        origin = {"source": "zillow", "url": f"https://photos.zillowstatic.com/fp/{n}.jpg"}
        images.append(
            {
                "md5": md5,
                "path": content_path(md5, "jpg"),
                "thumbs": {"256": thumb_path(md5, 256)},
                "width": 320,
                "height": 240,
                "bytes": len(data),
                "group": None,
                "best": True,
                "origins": [{**origin, "photo_id": str(n), "position": n, "last_seen_run": "r"}],
            }
        )
    manifest = manifest_store.empty()
    addresses = [f"{n} E Synthetic Rd, Phoenix, AZ 85044" for n in range(properties)]
    addresses[-1] = '</script><img src=x onerror="alert(1)"> & "Quoted" Ln, Mesa, AZ 85210'
    for n, address in enumerate(addresses):
        manifest["properties"][f"{n:08x}"] = {
            "property_hash": f"{n:08x}",
            "address": address,
            "canonical_address": address.upper(),
            "sources": {"zillow": {"status": "ok", "photos_expected": per_property}},
            "images": images,
            "rejected": [],
        }
    manifest_store.save(root, manifest)
    return addresses


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_a_thousand_properties_draw_one_page(tmp_path: Path) -> None:
    addresses = synthetic_store(tmp_path)
    started = time.monotonic()
    path = write_report(tmp_path)
    assert time.monotonic() - started < 5

    def drive(page: Any, visit: Visit) -> None:
        started = time.monotonic()
        page.goto(path.as_uri())
        page.wait_for_selector("article.prop")
        assert time.monotonic() - started < 5
        first = cards(page)
        assert len(first) == PAGE_SIZE and page.locator("article.prop img").count() <= 4 * 25
        assert "Page 1 of 40 · 1000 properties" in page.inner_text("#position")
        page.click("#next")
        assert len(cards(page)) == PAGE_SIZE and not set(cards(page)) & set(first)
        assert "Page 2 of 40" in page.inner_text("#position")
        page.fill("#search", "onerror")
        assert cards(page) == [f"{len(addresses) - 1:08x}"]
        assert page.inner_text("article.prop h3") == addresses[-1]

    visit = in_browser(drive)
    assert visit.errors == []
    assert all(url.startswith("file://") for url in visit.requests)


def test_the_page_data_is_written_property_by_property(tmp_path: Path) -> None:
    addresses = synthetic_store(tmp_path, properties=6)
    props = manifest_store.load(tmp_path)["properties"]
    before = {p.name for p in tmp_path.iterdir()}

    def written() -> tuple[str, dict[str, Any]]:
        path = write_report(tmp_path, "r")
        found = re.search(
            r'<script type="application/json" id=phx-data>(.*?)</script>', path.read_text()
        )
        assert found is not None
        return found[1], embedded_data(path)

    text, data = written()
    # The pieces join into exactly the compact JSON one dump of the data gives.
    dumped = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    assert text == dumped.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    assert data == embedded_data(tmp_path / "runs" / "r.report.html") | {"root": ""}
    order = sorted(props, key=lambda k: (props[k]["canonical_address"], k))
    assert [p["k"] for p in data["properties"]] == order
    assert {p["a"] for p in data["properties"]} == set(addresses)
    assert all([i["t"] for i in p["i"]] == [256] * 4 for p in data["properties"])
    assert "6 properties · 24 images" in (tmp_path / "report.html").read_text()
    # The temporary file of the records leaves nothing in the store.
    assert {p.name for p in tmp_path.iterdir()} == before | {"report.html", "runs"}
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["r.report.html"]

    assert written() == (text, data)
    # A thumbnail the store lost: its image is shown full size.
    lost = data["properties"][0]["i"][1]["m"]
    (tmp_path / thumb_path(lost, 256)).unlink()
    _, data = written()
    for prop in data["properties"]:
        assert [i["t"] for i in prop["i"]] == [None if i["m"] == lost else 256 for i in prop["i"]]
    assert {p.name for p in tmp_path.iterdir()} == before | {"report.html", "runs"}
