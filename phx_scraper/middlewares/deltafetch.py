"""Incremental crawls: scrapy-deltafetch, made to work with Scrapy 2.19 and this store.

Three changes to ``scrapy_deltafetch.DeltaFetch`` (see ../shared/scrapy-notes.md):

- ``process_spider_output`` is asynchronous (2.1.0 does not load on Scrapy >= 2.16);
- a page counts as done only once its item's images are stored and the item
  reached the manifest on disk (the manifest extension's ``manifest_saved``
  signal, sent after each checkpoint), and only when nothing in
  it may still come (status ``ok``, no rejection that a retry could fix) —
  not when the page merely yields an item;
- keys are stable source ids (``zillow:<zpid>``, ``redfin:<property id>``,
  ``maricopa:<APN>``, ``phoenix_mls:<MLS#>``) set by the spiders as
  ``meta["deltafetch_key"]``, kept in one database under the store
  (``index/deltafetch/pairs.db``) shared by every spider; a corrupt database
  is reported and rebuilt from the manifest, never silently wiped.

``-a force=1`` visits everything; ``-a refresh_days=N`` (default
``PHX_REFRESH_DAYS``) visits pages last completed more than N days ago.
"""

from __future__ import annotations

import dbm
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy import Request, signals
from scrapy.exceptions import NotConfigured
from scrapy_deltafetch import DeltaFetch

from phx_scraper.extensions.manifest import manifest_saved
from phx_scraper.store import manifest as manifest_store
from phx_scraper.store.urlindex import PERMANENT_REASONS

if TYPE_CHECKING:
    from typing import Self

    from scrapy import Spider
    from scrapy.crawler import Crawler
    from scrapy.http import Response

logger = logging.getLogger(__name__)

DB_DIR = "index/deltafetch"
DB_NAME = "pairs.db"


def pair_key(source: str, source_id: str) -> str:
    return f"{source}:{source_id}"


class ItemConfirmedDeltaFetch(DeltaFetch):
    def __init__(self, root: Path, refresh_days: float, crawler: Crawler) -> None:
        super().__init__(str(root / DB_DIR), reset=False, stats=crawler.stats)
        self.root = root
        self.refresh_days = refresh_days
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        if not settings.getbool("DELTAFETCH_ENABLED"):
            raise NotConfigured
        root = Path(settings["IMAGES_STORE"]).resolve()
        ext = cls(root, settings.getfloat("PHX_REFRESH_DAYS"), crawler)
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(ext.manifest_saved, signal=manifest_saved)
        return ext

    def spider_opened(self, spider: Spider) -> None:
        path = Path(self.dir) / DB_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        days = getattr(spider, "refresh_days", None)
        if days is not None:
            self.refresh_days = float(days)
        try:
            self.db = dbm.open(str(path), "c")  # noqa: SIM115 (closed on spider_closed)
        except Exception as exc:
            logger.warning(
                "The deltafetch database %s cannot be read (%s); rebuilding it from the manifest",
                path,
                exc,
            )
            for leftover in path.parent.glob(f"{DB_NAME}*"):
                leftover.unlink()
            self.db = dbm.open(str(path), "n")  # noqa: SIM115 (closed on spider_closed)
            self.rebuild()

    def rebuild(self) -> None:
        try:
            manifest = manifest_store.load(self.root)
        except manifest_store.ManifestError as exc:
            logger.warning("Not rebuilt: %s", exc)
            return
        for entry in manifest["properties"].values():
            for source, outcome in entry["sources"].items():
                if outcome["status"] == "ok" and outcome.get("id"):
                    when = datetime.strptime(outcome["time"], "%Y-%m-%dT%H:%M:%SZ")
                    self.db[pair_key(source, outcome["id"])] = str(when.timestamp())
        if self.stats:
            self.stats.set_value("phx/deltafetch/rebuilt", 1)

    async def process_spider_output(
        self, response: Response, result: AsyncIterator[Any], spider: Spider | None = None
    ) -> AsyncIterator[Any]:
        async for r in result:
            if isinstance(r, Request) and self._skip(r, self.crawler.spider):
                continue
            yield r

    def _skip(self, request: Request, spider: Spider | None) -> bool:
        key = request.meta.get("deltafetch_key")
        if not key or getattr(spider, "force", False) or not self._is_enabled_for_request(request):
            return False
        seen = self.db.get(key.encode())
        if seen is None:
            return False
        age_days = (time.time() - float(seen)) / 86400
        if age_days > self.refresh_days:
            return False
        phx = request.meta["phx"]
        logger.info(
            "%s: %s complete %.1f days ago; not visited again (force=1 or refresh_days to)",
            phx["source"],
            key,
            age_days,
        )
        skipped = getattr(spider, "skipped", None)
        if skipped is not None:
            skipped.add((phx["property_hash"], phx["source"]))
        if self.stats:
            self.stats.inc_value("phx/skipped/complete")
        return True

    def manifest_saved(self, records: list[dict[str, Any]]) -> None:
        """Recorded only now: the images are stored and the manifest on disk has them."""
        final = PERMANENT_REASONS | {"host_not_allowed"}
        for record in records:
            if record["status"] != "ok" or not record["source_id"]:
                continue
            if any(r["reason"] not in final for r in record["rejected"]):
                continue  # something a later run may still get
            self.db[pair_key(record["source"], record["source_id"])] = str(time.time())
            if self.stats:
                self.stats.inc_value("phx/deltafetch/stored")
        sync = getattr(self.db, "sync", None)
        if sync is not None:
            sync()
