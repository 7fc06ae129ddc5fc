"""Marks a JOBDIR as in use while a crawl runs (see ``phx_scraper.jobdir``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scrapy import signals
from scrapy.exceptions import NotConfigured

from phx_scraper.jobdir import mark_running, mark_stopped

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler


class JobdirGuard:
    def __init__(self, jobdir: str) -> None:
        self.jobdir = jobdir

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        jobdir = crawler.settings.get("JOBDIR")
        if not jobdir:
            raise NotConfigured
        guard = cls(jobdir)
        crawler.signals.connect(guard.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(guard.spider_closed, signal=signals.spider_closed)
        return guard

    def spider_opened(self) -> None:
        mark_running(self.jobdir)

    def spider_closed(self) -> None:
        # Sent after the scheduler saved its queue: the JOBDIR is whole again.
        mark_stopped(self.jobdir)
