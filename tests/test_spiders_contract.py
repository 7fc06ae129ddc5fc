"""The contract every spider keeps (after gallery-dl's test_extractor.py)."""

from __future__ import annotations

import ast
import inspect
import logging
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from scrapy import Request
from scrapy.spiderloader import SpiderLoader
from scrapy.utils.project import get_project_settings
from scrapy.utils.test import get_crawler

from phx_scraper.sources import SOURCES
from phx_scraper.spiders.base import PropertySpider

SETTINGS = get_project_settings()
LOADER = SpiderLoader.from_settings(SETTINGS)
NAMES = sorted(LOADER.list())
ADDRESS = "4560 E Sunrise Dr, Phoenix, AZ 85044"


def fake_urls() -> dict[str, str]:
    """A distinct unreachable prefix per URL setting, to see where each request goes."""
    return {
        setting: f"http://{setting.lower().replace('_', '-')}.invalid/prefix"
        for source in SOURCES.values()
        for setting in source.url_settings
    }


def test_every_source_has_a_spider_and_all_exists() -> None:
    assert set(NAMES) == {*SOURCES, "all"}


@pytest.mark.parametrize("name", NAMES)
def test_spider_is_documented_and_named(name: str) -> None:
    cls = LOADER.load(name)
    assert issubclass(cls, PropertySpider)
    assert cls.name == name
    assert cls.__doc__ and cls.__doc__.strip()
    assert cls.sources and set(cls.sources) <= set(SOURCES)
    for source in cls.sources:
        assert callable(getattr(cls, f"{source}_start", None)), f"{name}: no {source}_start"


def string_constants(tree: ast.AST) -> Iterator[str]:
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    constants = [node for node in ast.walk(tree) if isinstance(node, ast.Constant)]
    yield from (c.value for c in constants if isinstance(c.value, str) and id(c) not in docstrings)


@pytest.mark.parametrize("name", NAMES)
def test_no_url_is_written_in_the_spider_code(name: str) -> None:
    path = Path(inspect.getfile(LOADER.load(name)))
    hard_coded = [s for s in string_constants(ast.parse(path.read_text())) if "://" in s]
    assert hard_coded == []


@pytest.mark.parametrize("name", NAMES)
def test_construction_sends_nothing_and_first_requests_use_settings(
    name: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    settings = {**fake_urls(), "PHX_BROWSER_SOURCES": "", "IMAGES_STORE": str(tmp_path)}
    crawler = get_crawler(LOADER.load(name), settings)
    with caplog.at_level(logging.DEBUG):
        spider = crawler.spidercls.from_crawler(crawler, address=ADDRESS)
    assert isinstance(spider, PropertySpider)
    assert "Crawled" not in caplog.text
    requests = collect_start(spider)
    assert len(requests) == len(spider.sources)
    prefixes = tuple(fake_urls().values())
    assert all(r.url.startswith(prefixes) for r in requests), [r.url for r in requests]
    for request in requests:
        assert request.meta["phx"]["property_hash"] in spider.targets


def collect_start(spider: PropertySpider) -> list[Request]:
    """Drain ``spider.start()``; it awaits nothing, so no event loop is needed."""
    requests = []
    start = spider.start()
    while True:
        step = cast("Coroutine[Any, Any, Request]", start.__anext__())
        try:
            step.send(None)
        except StopIteration as done:
            requests.append(done.value)
        except StopAsyncIteration:
            return requests
