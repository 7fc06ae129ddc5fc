"""The shared base of every source spider: addresses in, one item per property and source out.

A source module (``zillow.py``...) defines a spider class with ``source`` and
a ``<source>_start(address)`` hook that yields the first request for one
property; its callbacks are named after the source so that ``all`` can
inherit every source at once. Everything else — address input, run ids,
outcome items, errbacks, browser requests — lives here.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import scrapy
from scrapy.http import Response
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.defer import maybe_deferred_to_future
from twisted.internet import threads

from phx_scraper.addresses import Address, load_from_args
from phx_scraper.browser import browser_settings, browser_sources
from phx_scraper.items import Photo, PropertyImagesItem
from phx_scraper.middlewares.blocks import BlockedResponse
from phx_scraper.middlewares.breaker import SourceGivenUp
from phx_scraper.store.locks import PropertyLocks, lease_seconds

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings
    from twisted.python.failure import Failure

logger = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


RUN_ID = re.compile(r"[0-9a-f]{8}")


def number(value: Any) -> Any:
    """``"2,145"`` -> ``2145``: sites print numbers for people; the manifest keeps numbers."""
    if isinstance(value, str):
        digits = value.replace(",", "").replace("$", "").strip()
        if digits.isdigit():
            return int(digits)
    return value


def parse_days(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        days = float(value)
    except ValueError:
        days = -1
    if days < 0:
        raise ValueError(f"-a refresh_days={value!r}: expected a number of days (0 or more)")
    return days


def parse_flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"-a {name}={value!r}: expected 1/0, true/false or yes/no")


class PropertySpider(scrapy.Spider):
    """Base of the source spiders. Arguments: ``addresses`` (CSV path) or ``address``."""

    #: The sources this spider crawls (one for a source spider, four for ``all``).
    sources: tuple[str, ...] = ()

    def __init__(
        self,
        *args: Any,
        addresses: str | None = None,
        address: str | None = None,
        force: str | None = None,
        run_id: str | None = None,
        refresh_days: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        given = {
            "addresses": addresses,
            "address": address,
            "force": force,
            "run_id": run_id,
            "refresh_days": refresh_days,
        }
        #: The spider's -a arguments, for the run record (secrets are redacted there).
        self.arguments: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        batch = load_from_args(addresses=addresses, address=address)
        for warning in batch.warnings:
            logger.warning("%s", warning)
        self.targets: dict[str, Address] = {a.property_hash: a for a in batch.addresses}
        self.force = parse_flag("force", force)
        self.refresh_days = parse_days(refresh_days)
        #: (property_hash, source) pairs left to another crawl holding their lock.
        self.skipped: set[tuple[str, str]] = set()
        self.property_locks: PropertyLocks | None = None
        if run_id is not None and not RUN_ID.fullmatch(run_id):
            raise ValueError(f"-a run_id={run_id!r}: expected 8 hex characters")
        self.run_id = run_id or secrets.token_hex(4)

    @classmethod
    def update_settings(cls, settings: BaseSettings) -> None:
        super().update_settings(settings)
        if browser_sources(settings) & set(cls.sources):
            settings.setdict(browser_settings(settings), priority="spider")

    async def start(self) -> AsyncIterator[Any]:
        logger.info(
            "Run %s: %d properties on %s", self.run_id, len(self.targets), ", ".join(self.sources)
        )
        locks = self.property_locks = PropertyLocks(Path(self.settings["IMAGES_STORE"]))
        remote: list[tuple[str, str]] = []
        for address in self.targets.values():
            for source in self.sources:
                busy = locks.try_acquire(address.property_hash, source)
                if busy is None:
                    for request in getattr(self, f"{source}_start")(address):
                        yield request
                elif busy.remote:
                    remote.append((address.property_hash, source))
                else:
                    self.skip_locked(address.property_hash, source, busy.holders)
        if remote:
            # A crawl on another host has these pairs. Its lease is taken over if its
            # heartbeat stops for a whole lease: wait that long (off the reactor) to know.
            wait = lease_seconds() * 1.5
            logger.info(
                "%d pairs are held by crawls on other hosts; waiting up to %.0fs for them",
                len(remote),
                wait,
            )
            taken = await maybe_deferred_to_future(threads.deferToThread(locks.wait, remote, wait))
            for key, source in remote:
                if (key, source) in taken:
                    for request in getattr(self, f"{source}_start")(self.targets[key]):
                        yield request
                else:
                    self.skip_locked(key, source, locks.holders(key, source))

    def skip_locked(self, key: str, source: str, holder: str) -> None:
        """Another crawl on this store is extracting the pair: it will write the
        outcome; doing it twice at once helps nobody."""
        logger.info("%s: skipping %s, %s has it", source, self.targets[key].canonical, holder)
        self.skipped.add((key, source))
        self.crawler.stats.inc_value("phx/skipped/locked")

    # -- helpers for source modules ---------------------------------------

    def setting(self, name: str) -> str:
        value = self.settings.get(name)
        if not value:
            raise ValueError(f"setting {name} is empty")
        return str(value).rstrip("/")

    def uses_browser(self, source: str) -> bool:
        return source in browser_sources(self.settings)

    def request(
        self,
        url: str,
        source: str,
        address: Address,
        callback: Any,
        **meta: Any,
    ) -> scrapy.Request:
        """A page or API request on behalf of one property and source.

        Not deduplicated by Scrapy's dupefilter: after an unclean stop a
        JOBDIR's ``requests.seen`` can list requests whose answers were lost,
        which would leave their property unfinished for good. What is done is
        known from the store instead (deltafetch keys, the URL index).
        """
        return scrapy.Request(
            url,
            callback=callback,
            errback=self.request_failed,
            dont_filter=True,
            meta={"phx": {"source": source, "property_hash": address.property_hash}, **meta},
        )

    def target(self, response: Response) -> tuple[str, Address]:
        phx = response.meta["phx"]
        return phx["source"], self.targets[phx["property_hash"]]

    @staticmethod
    def block_kind(response: Response, expected_css: str) -> str | None:
        """The block a page still shows, when the content we came for is absent.

        Used where the spider accepts an error status (a browser page whose
        first answer is a WAF challenge): the status alone says nothing then.
        """
        if response.status < 400 or response.css(expected_css):
            return None
        return str(response.meta.get("phx_block") or f"http_{response.status}")

    def outcome(
        self,
        source: str,
        address: Address,
        status: str,
        *,
        photos: Iterable[Photo] = (),
        **fields: Any,
    ) -> PropertyImagesItem:
        """The one item per property and source that says how it went."""
        photos = list(photos)
        if status == "ok" and not photos:
            status = "no_photos"
        return PropertyImagesItem(
            run_id=self.run_id,
            source=source,
            property_hash=address.property_hash,
            address=address.raw,
            canonical_address=address.canonical,
            status=status,
            photos=photos,
            **fields,
        )

    def request_failed(self, failure: Failure) -> Iterable[PropertyImagesItem]:
        request = failure.request  # type: ignore[attr-defined]
        phx = request.meta["phx"]
        address = self.targets[phx["property_hash"]]
        status = "failed"
        if isinstance(failure.value, BlockedResponse):
            retries = request.meta.get("phx_block_retries", 0)
            if retries < self.settings.getint("PHX_BLOCK_RETRIES"):
                # The circuit breaker holds this domain's requests during its
                # cooldown: asking again waits for it instead of hammering.
                meta = {**request.meta, "phx_block_retries": retries + 1}
                yield request.replace(meta=meta)
                return
            status, reason = "blocked", failure.value.kind
        elif isinstance(failure.value, SourceGivenUp):
            status, reason = "blocked", "breaker_gave_up"
        elif isinstance(failure.value, HttpError):
            reason = f"http_{failure.value.response.status}"
        else:
            reason = type(failure.value).__name__
        logger.warning(
            "%s: %s failed for %s: %s", phx["source"], request.url, address.canonical, reason
        )
        yield self.outcome(phx["source"], address, status, reason=reason)
