"""Progress while crawling: one INFO line every ``PHX_PROGRESS_INTERVAL`` seconds.

In the spirit of Scrapy's ``LogStats``, for a crawl that may take hours::

    Progress: 12/20 property/source pairs (60%), 2/5 properties complete; images 150 stored,
    10 deduplicated, 40 up to date, 2 rejected; maricopa 5/5 ok, redfin 2/5 backing off
    until 10:32:05 (in 4m10s), zillow 5/5 ok; about 1m20s left

(one line in the log). A pair is one property on one source, and is done when
its item is scraped (``item_scraped_count``); the total is
``len(spider.targets) * len(spider.sources)``. Image figures are the images
pipeline's stats (``phx/image/...``). A source's state comes from the circuit
breaker middleware when it runs (``ok``, ``probing``, ``backing off until …``,
``given up``), else from its stats. The time left is the pace so far applied
to the pairs left, and never less than the longest cooldown of a source with
pairs left. ``-s LOG_LEVEL=WARNING`` silences it; ``PHX_PROGRESS_INTERVAL``
``0`` turns it off.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from scrapy import Spider, signals
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import create_looping_call

from phx_scraper.items import PropertyImagesItem
from phx_scraper.middlewares.breaker import CircuitBreakerMiddleware, State

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

REJECTED_PREFIX = "phx/image/rejected/"
#: Breaker states from best to worst: a source shows its worst slot's.
_SEVERITY = (State.CLOSED, State.HALF_OPEN, State.OPEN, State.GIVEN_UP)


class ProgressLog:
    def __init__(
        self,
        crawler: Crawler,
        interval: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.crawler = crawler
        self.interval = interval
        # Wall-clock time, as the breaker's cooldown ends are.
        self.clock = clock
        self.started = clock()
        self.properties = 0
        self.sources: tuple[str, ...] = ()
        self.done: dict[str, set[str]] = defaultdict(set)  # source -> property hashes
        self.breaker: CircuitBreakerMiddleware | None = None
        self.task: Any = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        interval = crawler.settings.getfloat("PHX_PROGRESS_INTERVAL", 30.0)
        if interval <= 0:
            raise NotConfigured("PHX_PROGRESS_INTERVAL is 0")
        ext = cls(crawler, interval)
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.item_scraped, signal=signals.item_scraped)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        return ext

    def spider_opened(self, spider: Spider) -> None:
        self.started = self.clock()
        self.properties = len(getattr(spider, "targets", ()))
        self.sources = tuple(getattr(spider, "sources", ()))
        self.breaker = find_breaker(self.crawler)
        self.task = create_looping_call(self.log, spider)
        self.task.start(self.interval, now=False)

    def item_scraped(self, item: Any, spider: Spider) -> None:
        if isinstance(item, PropertyImagesItem):
            self.done[item.source].add(item.property_hash)

    def spider_closed(self, spider: Spider) -> None:
        if self.task is not None and self.task.running:
            self.task.stop()

    def log(self, spider: Spider) -> None:
        logger.info("%s", self.line(), extra={"spider": spider})

    def line(self) -> str:
        stats = self.crawler.stats
        assert stats is not None
        now = self.clock()
        total = self.properties * len(self.sources)
        done = min(int(stats.get_value("item_scraped_count", 0)), total)
        complete = (
            len(set.intersection(*(self.done[s] for s in self.sources))) if self.sources else 0
        )
        rejected = {
            key.removeprefix(REJECTED_PREFIX): value
            for key, value in stats.get_stats().items()
            if key.startswith(REJECTED_PREFIX) and value
        }
        states = self.source_states()
        parts = [
            f"Progress: {done}/{total} property/source pairs ({_percent(done, total)}), "
            f"{complete}/{self.properties} properties complete",
            f"images {stats.get_value('phx/image/stored', 0)} stored, "
            f"{stats.get_value('phx/image/deduplicated', 0)} deduplicated, "
            f"{stats.get_value('phx/image/uptodate', 0)} up to date, "
            f"{sum(rejected.values())} rejected" + (f" ({_pairs(rejected)})" if rejected else ""),
            ", ".join(
                f"{source} {len(self.done[source])}/{self.properties} "
                + _describe(*states.get(source, (State.CLOSED, None)), now)
                for source in self.sources
            ),
            self.time_left(done, total, states, now),
        ]
        return "; ".join(p for p in parts if p)

    def time_left(
        self, done: int, total: int, states: dict[str, tuple[State, float | None]], now: float
    ) -> str:
        if done >= total:
            return "finishing"
        cooling = [
            until - now
            for source, (state, until) in states.items()
            if state is State.OPEN and until and len(self.done[source]) < self.properties
        ]
        if not done:
            return f"at least {_duration(max(cooling))} left" if cooling else "time left unknown"
        pace = (now - self.started) / done * (total - done)
        return f"about {_duration(max([pace, *cooling]))} left"

    def source_states(self) -> dict[str, tuple[State, float | None]]:
        """Per source: its worst slot's breaker state and, when open, the cooldown's end."""
        middleware = self.breaker
        if middleware is None:
            stats = self.crawler.stats
            assert stats is not None
            return {
                source: (State.GIVEN_UP, None)
                for source in self.sources
                if stats.get_value(f"phx/breaker/{source}/given_up")
            }
        states: dict[str, tuple[State, float | None]] = {}
        # The middleware maps slots to sources in ``_sources``; read here, never written.
        names: dict[str, str] = getattr(middleware, "_sources", {})
        for slot, entry in middleware.breaker.slots.items():
            source = names.get(slot, slot)
            state, until = states.get(source, (State.CLOSED, None))
            if _SEVERITY.index(entry.state) > _SEVERITY.index(state):
                state, until = entry.state, None
            if entry.state is state is State.OPEN:
                until = max(until or 0.0, entry.open_until)
            states[source] = (state, until)
        return states


def find_breaker(crawler: Crawler) -> CircuitBreakerMiddleware | None:
    """The crawl's circuit breaker middleware, if it runs (``PHX_BREAKER_ENABLED``)."""
    downloader = getattr(crawler.engine, "downloader", None)
    middlewares = downloader.middleware.middlewares if downloader is not None else ()
    return next((m for m in middlewares if isinstance(m, CircuitBreakerMiddleware)), None)


def _describe(state: State, until: float | None, now: float) -> str:
    if state is State.OPEN and until is not None:
        clock = time.strftime("%H:%M:%S", time.localtime(until))
        return f"backing off until {clock} (in {_duration(until - now)})"
    return {
        State.CLOSED: "ok",
        State.HALF_OPEN: "probing",
        State.OPEN: "backing off",
        State.GIVEN_UP: "given up",
    }[state]


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def _pairs(counts: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counts.items()))


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
