"""ImagesPipeline that stores each photo once, under the MD5 of its stored bytes.

Flow per photo URL:

1. ``media_to_download`` (Scrapy's pre-download check, called without a
   response): the URL index says whether this URL's bytes are already stored;
   if so, nothing is downloaded.
2. ``media_downloaded``: the body is validated and standardized in a worker
   thread (``store.imaging``), written atomically under
   ``full/<md5[:2]>/<md5>.<ext>``, and only then recorded in the URL index.
3. ``item_completed``: the item gets its stored images and its rejected ones,
   each with a reason; nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from scrapy import Request, signals
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.pipelines.images import ImagesPipeline
from scrapy.pipelines.media import _MediaRequestFiltered
from scrapy.utils.defer import deferred_from_coro, maybe_deferred_to_future
from twisted.internet.defer import Deferred, DeferredSemaphore, succeed
from twisted.python.failure import Failure

from phx_scraper.items import PropertyImagesItem, RejectedImage, StoredImage
from phx_scraper.middlewares.blocks import BlockedResponse
from phx_scraper.middlewares.breaker import SourceGivenUp
from phx_scraper.sources import image_hosts
from phx_scraper.store.files import (
    EXTENSIONS,
    atomic_write,
    content_path,
    md5_hex,
    store_content,
    thumb_path,
)
from phx_scraper.store.imaging import ImageRejected, ProcessedImage, Standard, process, sniff
from phx_scraper.store.quota import StoreUsage, format_size, parse_quota
from phx_scraper.store.urlindex import IndexEntry, UrlIndex

if TYPE_CHECKING:
    from typing import Self

    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from scrapy.pipelines.files import FileInfo, FileInfoOrError
    from scrapy.pipelines.media import MediaPipeline

logger = logging.getLogger(__name__)

_FORMATS = ("jpeg", "png", "webp")


class Rejected(_MediaRequestFiltered):
    """A photo not stored, with the reason the manifest records.

    It derives from the media pipeline's "filtered" exception so that Scrapy
    logs it at DEBUG without a traceback: a rejection is an expected outcome,
    reported once by ``item_completed`` (and pinned Scrapy keeps this name).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class ContentAddressedImagesPipeline(ImagesPipeline):
    def __init__(self, store_uri: str, *, crawler: Crawler) -> None:
        super().__init__(store_uri, crawler=crawler)
        if "://" in store_uri and not store_uri.startswith("file://"):
            raise NotConfigured(f"IMAGES_STORE must be a local directory, got {store_uri!r}")
        self.root = Path(store_uri.removeprefix("file://")).resolve()
        settings = crawler.settings
        image_format = settings.get("PHX_IMAGE_FORMAT", "jpeg").lower()
        if image_format not in _FORMATS:
            raise ValueError(f"PHX_IMAGE_FORMAT must be one of {', '.join(_FORMATS)}")
        self.standard = Standard(
            min_width=self.min_width,
            min_height=self.min_height,
            max_pixels=settings.getint("PHX_IMAGE_MAX_PIXELS", 60_000_000),
            max_side=settings.getint("PHX_IMAGE_MAX_SIDE", 2048),
            format=image_format,
            quality=settings.getint("PHX_IMAGE_QUALITY", 90),
            keep_icc=settings.getbool("PHX_IMAGE_KEEP_ICC"),
            thumb_sizes=tuple(int(size) for size in settings.getlist("PHX_THUMB_SIZES", [256])),
        )
        # Image work alternates between the CPU and waiting for the disk to confirm
        # writes (fsync): two threads per core keep both busy.
        workers = settings.getint("PHX_IMAGE_WORKERS") or 2 * (os.cpu_count() or 1)
        # Photos downloading or waiting for a worker: their bodies are what a crawl
        # holds in memory, so they are bounded, and downloads wait for a slot.
        inflight = settings.getint("PHX_IMAGE_INFLIGHT") or 8 * workers
        self.slots = DeferredSemaphore(inflight)
        # Items whose photos are being fetched. Listings arrive much faster than
        # photos: without this gate every item would create its photo requests at
        # once, each waiting for a slot, and memory would follow the crawl's size.
        self.item_slots = DeferredSemaphore(max(2, inflight // 8))
        # Whether this pipeline paused the engine (see ``_admit``).
        self.holding_back = False
        self.keep_originals = settings.getbool("PHX_STORE_ORIGINALS")
        self.quota = parse_quota(settings.get("PHX_STORE_QUOTA"))
        self.quota_warn = settings.getfloat("PHX_STORE_QUOTA_WARN", 0.9)
        self.usage: StoreUsage | None = None
        self.stopping = False
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="phx-image")
        self.stats = crawler.stats
        self.settings = settings
        self._hosts: dict[str, frozenset[str]] = {}
        self.index: UrlIndex | None = None
        crawler.signals.connect(self.close_index, signal=signals.spider_closed)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        cls._update_stores(crawler.settings)
        return cls(crawler.settings["IMAGES_STORE"], crawler=crawler)

    def open_spider(self, spider: Any = None) -> None:
        super().open_spider()
        self.root.mkdir(parents=True, exist_ok=True)
        self.index = UrlIndex(self.root)
        if self.quota is not None:
            # One walk at the start; from then on the size is counted as files are written.
            self.usage = StoreUsage.open(self.root, self.quota, self.quota_warn)
            self._warn_usage()

    def _warn_usage(self) -> None:
        if self.usage is not None and self.usage.take_warning():
            figures = self.usage.summary()
            logger.warning(
                "The store uses %s of its %s quota (PHX_STORE_QUOTA)",
                format_size(figures["used"]),
                format_size(figures["quota"]),
            )

    def close_index(self) -> None:
        self.executor.shutdown(wait=True)
        if self.index is not None:
            self.index.close()

    # -- requests ---------------------------------------------------------

    async def process_item(self, item: Any, spider: Any = None) -> Any:
        if not isinstance(item, PropertyImagesItem):
            return await super().process_item(item)
        self._reject_untrusted_urls(item)
        await maybe_deferred_to_future(self._admit())
        try:
            return await super().process_item(item)
        finally:
            self.item_slots.release()
            self._resume()

    def _admit(self) -> Deferred[Any]:
        """An item slot. While as many items wait for one as hold one, the engine
        is paused: no more pages are fetched (so no more items made) until the
        photos catch up, and memory does not follow the crawl's size. Scrapy's
        own limit, on the size of the responses being processed, lets thousands
        of small listing pages through."""
        admitted = self.item_slots.acquire()
        waiting = len(self.item_slots.waiting)
        self.stats.max_value("phx/backpressure/max_waiting_items", waiting)
        engine = self.crawler.engine
        if waiting >= self.item_slots.limit and not self.holding_back and engine is not None:
            engine.pause()
            self.holding_back = True
            self.stats.inc_value("phx/backpressure/pauses")
        return admitted

    def _resume(self) -> None:
        """Unpause the engine once half the waiting items have a slot."""
        engine = self.crawler.engine
        if self.holding_back and len(self.item_slots.waiting) <= self.item_slots.limit // 2:
            self.holding_back = False
            if engine is not None:
                engine.unpause()

    def _trusted(self, source: str, url: str) -> bool:
        """An http(s) URL on the source's CDNs or configured hosts."""
        allowed = self._hosts.setdefault(source, image_hosts(source, self.settings))
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and parts.netloc in allowed

    def _reject_untrusted_urls(self, item: PropertyImagesItem) -> None:
        """Only trusted photo URLs are fetched; the others are rejected, not dropped."""
        kept = []
        for photo in item.photos:
            if self._trusted(item.source, photo["url"]):
                kept.append(photo)
                continue
            item.rejected.append(
                {"url": photo["url"], "photo_id": photo["photo_id"], "reason": "host_not_allowed"}
            )
            self.stats.inc_value("phx/image/rejected/host_not_allowed")
            logger.warning("Not fetching %s photo from untrusted URL %s", item.source, photo["url"])
        item.photos = kept

    def get_media_requests(self, item: Any, info: MediaPipeline.SpiderInfo) -> list[Request]:
        if not isinstance(item, PropertyImagesItem):
            return []
        return [
            Request(
                photo["url"],
                meta={
                    "allow_offsite": True,
                    "phx_source": item.source,
                    "phx_photo_id": photo["photo_id"],
                },
            )
            for photo in item.photos
        ]

    def media_to_download(
        self, request: Request, info: MediaPipeline.SpiderInfo, *, item: Any = None
    ) -> Deferred[FileInfo | None]:
        """The pre-download check: a URL whose bytes are stored is not fetched again.

        A photo to download waits for an in-flight slot first (see ``_download_slot``).
        """
        assert self.index is not None
        if getattr(info.spider, "force", False):
            return self._download_slot(request)
        now = time.time()
        rejection = self.index.rejection(request.url)
        if rejection and now - rejection[1] <= self.expires * 86400:
            raise Rejected(rejection[0], "rejected by an earlier crawl; not fetched again")
        entry = self.index.get(request.url)
        if entry is None or now - entry.fetched_at > self.expires * 86400:
            return self._download_slot(request)
        if not (self.root / entry.path).exists():
            return self._download_slot(request)  # a ghost: fetch again
        self.stats.inc_value("phx/image/uptodate")
        return succeed(cast("FileInfo", self._file_info(request, entry, "uptodate")))

    def _download_slot(self, request: Request) -> Deferred[FileInfo | None]:
        """Fires (with None: download it) once the photo may be fetched; the slot is
        given back when its body has been stored or rejected (``_free_slot``)."""

        def taken(_: object) -> None:
            request.meta["phx_slot"] = True

        return self.slots.acquire().addCallback(taken)

    def _free_slot(self, request: Request) -> None:
        if request.meta.pop("phx_slot", False):
            self.slots.release()

    # -- download results -------------------------------------------------

    async def media_downloaded(
        self,
        response: Response,
        request: Request,
        info: MediaPipeline.SpiderInfo,
        *,
        item: Any = None,
    ) -> FileInfo:
        try:
            if response.status != 200:
                raise ImageRejected(f"http_{response.status}")
            if response.url != request.url and not self._trusted(
                request.meta["phx_source"], response.url
            ):
                # A redirect (MEDIA_ALLOW_REDIRECTS) must land on a trusted host too.
                raise ImageRejected("host_not_allowed", response.url)
            loop = asyncio.get_running_loop()
            entry, written = await loop.run_in_executor(
                self.executor, self._process_and_store, response.body, request.url
            )
        finally:
            self._free_slot(request)
        self.stats.inc_value("phx/image/stored" if written else "phx/image/deduplicated")
        return cast("FileInfo", self._file_info(request, entry, "downloaded"))

    def _process_and_store(self, body: bytes, url: str) -> tuple[IndexEntry, bool]:
        """In a worker thread: check, standardize and store ``body``, then index it."""
        try:
            processed, md5, path, written = self._write(body)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                # atomic_write removed its temp file: no partial file under a content name.
                raise ImageRejected("disk_full", str(exc)) from exc
            raise
        entry = IndexEntry(
            url=url,
            source_md5=processed.source_md5,
            md5=md5,
            path=path,
            width=processed.width,
            height=processed.height,
            bytes=len(processed.data),
            phash=processed.phash,
            dhash=processed.dhash,
            fetched_at=time.time(),
        )
        # Only now, with the file durable, does the index learn about it.
        assert self.index is not None
        self.index.put(entry)
        return entry, written

    def _write(self, body: bytes) -> tuple[ProcessedImage, str, str, bool]:
        processed = process(body, self.standard)
        md5 = md5_hex(processed.data)
        original_ext = EXTENSIONS.get(sniff(body) or "", "bin")
        if self.usage is not None:
            self._reserve(body, processed, md5, original_ext)
        if self.keep_originals:
            store_content(self.root, body, original_ext, kind="originals", md5=processed.source_md5)
        _, path, written = store_content(self.root, processed.data, processed.ext, md5=md5)
        if self.usage is not None and not written:
            self.usage.release(len(processed.data))  # another thread stored it first
        for size, thumb in processed.thumbs.items():
            target = self.root / thumb_path(md5, size)
            if written or not target.exists():
                atomic_write(target, thumb)
        return processed, md5, path, written

    def _reserve(self, body: bytes, processed: ProcessedImage, md5: str, original_ext: str) -> None:
        """Count what this image would add; refuse it, writing nothing, past the quota."""
        assert self.usage is not None
        new = [(content_path(md5, processed.ext), len(processed.data))]
        new += [(thumb_path(md5, s), len(t)) for s, t in processed.thumbs.items()]
        if self.keep_originals:
            new.append((content_path(processed.source_md5, original_ext, "originals"), len(body)))
        nbytes = sum(n for rel, n in new if not (self.root / rel).exists())
        if not self.usage.reserve(nbytes):
            raise ImageRejected("quota_exceeded", f"{format_size(nbytes)} more would exceed it")

    def media_failed(
        self, failure: Failure, request: Request, info: MediaPipeline.SpiderInfo
    ) -> Any:
        self._free_slot(request)  # the download failed
        error = failure.value
        if isinstance(error, ImageRejected):
            assert self.index is not None
            self.index.reject(request.url, error.reason, time.time())
            if error.reason == "quota_exceeded":
                self._stop_for_quota()
            elif error.reason == "disk_full":
                self._stop("disk_full", "The disk is full: closing the crawl")
            else:
                self._warn_usage()
            raise Rejected(error.reason, str(error)) from error
        if isinstance(error, BlockedResponse | SourceGivenUp):
            raise Rejected("blocked", str(error)) from error
        if isinstance(error, IgnoreRequest):
            raise Rejected("filtered", str(error)) from error
        raise Rejected("download_error", failure.getErrorMessage()) from error

    def _stop_for_quota(self) -> None:
        """Stop downloading new images, once; what is stored stays consistent."""
        assert self.usage is not None
        figures = self.usage.summary()
        self.stats.set_value("phx/quota/refused", figures["refused"])
        self.stats.set_value("phx/quota/refused_bytes", figures["refused_bytes"])
        self.stats.set_value("phx/quota/needed", figures["needed"])
        message = (
            f"The store is full (PHX_STORE_QUOTA {format_size(figures['quota'])}, "
            f"used {format_size(figures['used'])}): closing the crawl"
        )
        self._stop("quota_exceeded", message)

    def _stop(self, reason: str, message: str) -> None:
        """Stop downloading new images, once; what is stored stays consistent."""
        if self.stopping:
            return
        self.stopping = True
        logger.error("%s", message)
        assert self.crawler.engine is not None
        deferred_from_coro(self.crawler.engine.close_spider_async(reason=reason))

    def _file_info(self, request: Request, entry: IndexEntry, status: str) -> StoredImage:
        return {
            "url": request.url,
            "photo_id": request.meta.get("phx_photo_id", ""),
            "md5": entry.md5,
            "path": entry.path,
            "source_md5": entry.source_md5,
            "width": entry.width,
            "height": entry.height,
            "bytes": entry.bytes,
            "phash": entry.phash,
            "dhash": entry.dhash,
            "thumbs": {str(s): thumb_path(entry.md5, s) for s in self.standard.thumb_sizes},
            "status": status,
        }

    # -- item -------------------------------------------------------------

    def item_completed(
        self, results: list[FileInfoOrError], item: Any, info: MediaPipeline.SpiderInfo
    ) -> Any:
        if not isinstance(item, PropertyImagesItem):
            return item
        # Scrapy keeps every result of the run for a URL asked again; the URL
        # index answers that, so memory need not grow with the crawl.
        for photo in item.photos:
            info.downloaded.pop(self._fingerprinter.fingerprint(Request(photo["url"])), None)
        for photo, (ok, value) in zip(item.photos, results, strict=True):
            if ok:
                item.images.append(cast("StoredImage", value))
                continue
            assert isinstance(value, Failure)
            reason = value.value.reason if isinstance(value.value, Rejected) else "error"
            rejected: RejectedImage = {
                "url": photo["url"],
                "photo_id": photo["photo_id"],
                "reason": reason,
            }
            item.rejected.append(rejected)
            self.stats.inc_value(f"phx/image/rejected/{reason}")
            logger.warning(
                "Rejected %s photo %s of %s: %s",
                item.source,
                photo["photo_id"],
                item.canonical_address,
                value.getErrorMessage(),
            )
        return item
