"""A circuit breaker per download slot: stop sending to a site that blocks us, wait, probe, resume.

One state machine (:class:`Breaker`) per download slot, keyed as AutoThrottle
keys its delays: ``meta["download_slot"]`` or the downloader's
``get_slot_key()`` (the host). Slots map to sources through the request meta
(``meta["phx"]["source"]``, or ``meta["phx_source"]`` on photo requests)::

    closed --PHX_BREAKER_FAILURES consecutive failures--> open --cooldown over--> half-open
    half-open --the one probe succeeds--> closed
    half-open --the probe fails--> open again, longer cooldown
    the PHX_BREAKER_MAX_TRIPS-th trip --> given up for this run

Failures are blocks (:func:`~phx_scraper.middlewares.blocks.detect_block`),
408, 429, 5xx and the network errors RetryMiddleware retries
(``RETRY_EXCEPTIONS``). Any other answer, a 404 included, is a success and
resets the count. The cooldown of trip *n* is ``PHX_BREAKER_COOLDOWN * 2**(n-1)``
plus up to 20 % jitter, capped at ``PHX_BREAKER_MAX_COOLDOWN``; a
``Retry-After`` longer than that wins. A site asking for more than the cap is
given up for this run rather than held for longer.

A block response becomes :class:`BlockedResponse` (with ``meta["phx_block"]``
set), so the request's errback, or the images pipeline for photos, gets it
instead of a page that looks empty. Requests to a given-up slot fail with
:class:`SourceGivenUp`. A request that asked for the status itself
(``handle_httpstatus_list``, as HttpErrorMiddleware reads it) gets the
response, with ``meta["phx_block"]`` as a hint, and the breaker does not count
it: its callback knows better (Redfin's API refuses a few homes with a 403).

How requests are held
---------------------
A request for an open slot waits inside ``process_request``, an ``async``
method that sleeps until the cooldown is over (in steps of at most
``HOLD_POLL`` seconds) and then asks the breaker again; once admitted it goes
on to the downloader unchanged. This is the one mechanism that works for both
kinds of requests. Handing a request back to the engine would re-schedule a
spider request, but a photo request has no scheduler: ImagesPipeline downloads
it with ``engine.download_async()``, which re-downloads a returned request at
once, in a loop.

While held, a request is taken out of ``Downloader.active``. That set is what
``CONCURRENT_REQUESTS`` limits, and the engine stops pulling requests for
every domain when it is full, so held requests would stall the whole crawl.
Taken out, they cost nothing but memory, and the other slots keep full speed.
A ``spider_idle`` handler keeps the spider open while requests are held. When
the spider closes or the crawl stops, held requests are released with
:class:`SourceGivenUp` (within ``HOLD_POLL`` seconds): their property is
"blocked" in this run, not silently lost, and shutdown does not wait out a
cooldown.

Requests already handed to the downloader before a trip (waiting in the
slot's queue for its delay) still go out: there is no hook between a slot's
queue and the wire. Their blocks are counted but do not change the state.
Scrapy's default ``DownloaderAwarePriorityQueue`` keeps those queues short.

Position: priority 650, between RedirectMiddleware (600) and CookiesMiddleware
(700). It sees every answer before RedirectMiddleware and RetryMiddleware (550)
act on it: a 302 to Redfin's rate-limit page is a block before it is followed
(followed, every property's redirect would point to the same URL and the
dupefilter would drop all but the first, silently); a redirect answering a
probe is a success; each attempt's 429 or 5xx counts, and a block is not
retried into the wall. Bodies are still compressed there:
:func:`~phx_scraper.middlewares.blocks.detect_block` decodes the first 64 KiB
itself. Below CookiesMiddleware, released requests get the cookies the probe
received; below MaricopaTokenMiddleware (890), a held request carries no token
and the token is already off when a block is raised.

Settings (read in ``from_crawler``): ``PHX_BREAKER_ENABLED`` (True),
``PHX_BREAKER_FAILURES`` (3 consecutive failures trip a slot),
``PHX_BREAKER_COOLDOWN`` (300 s, the first cooldown), ``PHX_BREAKER_MAX_COOLDOWN``
(3600 s) and ``PHX_BREAKER_MAX_TRIPS`` (4). A probe unanswered after twice
``DOWNLOAD_TIMEOUT`` is presumed lost and another one is let through.

Stats, per source: ``phx/requests/<source>/count``, ``phx/block/<source>/count``,
``phx/block/<source>/kind/<kind>``, ``phx/block/<source>/rate`` (blocks per
request), ``phx/breaker/<source>/trips``, ``phx/breaker/<source>/open_seconds`` and
``phx/breaker/<source>/given_up`` (0/1); :meth:`CircuitBreakerMiddleware.summary`
gives the same per source for the run summary.

State is saved to ``<IMAGES_STORE>/state/breaker.json`` on every transition
and when the spider closes. When the spider opens, a slot still cooling down
starts open, so no request reaches a site that just blocked us.
"""

from __future__ import annotations

import json
import logging
import math
import random as _random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import DontCloseSpider, IgnoreRequest, NotConfigured
from scrapy.utils.asyncio import sleep as scrapy_sleep
from scrapy.utils.httpobj import urlparse_cached
from scrapy.utils.misc import load_object

from phx_scraper.middlewares.blocks import BlockedResponse, detect_block, parse_retry_after
from phx_scraper.store.files import atomic_write

if TYPE_CHECKING:
    from typing import Self

    from scrapy import Request
    from scrapy.core.downloader import Downloader
    from scrapy.core.engine import ExecutionEngine
    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from scrapy.settings import BaseSettings

__all__ = ["BlockedResponse", "Breaker", "CircuitBreakerMiddleware", "SourceGivenUp"]

logger = logging.getLogger(__name__)

#: ``request.meta`` key set to the block kind on a request whose answer was a block.
BLOCK_KEY = "phx_block"
#: ``request.meta`` key marking the one probe request of a half-open slot.
PROBE_KEY = "_phx_breaker_probe"
#: Longest sleep of a held request between two looks at its slot.
HOLD_POLL = 5.0
#: Where the state lives, relative to IMAGES_STORE.
STATE_FILE = Path("state") / "breaker.json"
STATE_VERSION = 1


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    GIVEN_UP = "given_up"


class Decision(Enum):
    PASS = "pass"
    PROBE = "probe"
    WAIT = "wait"
    GIVE_UP = "give_up"


@dataclass(frozen=True)
class Admission:
    decision: Decision
    #: For WAIT: when the cooldown ends; ``None`` while a probe is out.
    until: float | None = None


@dataclass(frozen=True)
class Transition:
    slot: str
    previous: State
    state: State
    reason: str
    at: float
    #: End of the cooldown for ``open`` and ``given_up``.
    until: float | None
    trips: int


@dataclass
class SlotState:
    state: State = State.CLOSED
    failures: int = 0
    trips: int = 0
    open_until: float = 0.0
    reason: str = ""
    #: When the slot last left ``closed``; ``None`` while closed or given up.
    opened_at: float | None = None
    #: Seconds spent open or half-open before ``opened_at``.
    open_seconds: float = 0.0
    #: When the probe that is out was admitted.
    probe_at: float | None = None


class Breaker:
    """The per-slot state machine; time and randomness are injected.

    ``probe_timeout`` frees the probe of a half-open slot whose answer never
    came back (a middleware above this one dropped it), so a slot cannot stay
    half-open forever.
    """

    def __init__(
        self,
        *,
        failures: int = 3,
        cooldown: float = 300.0,
        max_cooldown: float = 3600.0,
        max_trips: int = 4,
        probe_timeout: float = 360.0,
        jitter: float = 0.2,
        clock: Callable[[], float] = time.time,
        random: Callable[[], float] = _random.random,
        on_transition: Callable[[Transition], None] | None = None,
    ) -> None:
        if failures < 1 or max_trips < 1:
            raise ValueError("PHX_BREAKER_FAILURES and PHX_BREAKER_MAX_TRIPS must be at least 1")
        if not 0 < cooldown <= max_cooldown:
            raise ValueError("need 0 < PHX_BREAKER_COOLDOWN <= PHX_BREAKER_MAX_COOLDOWN")
        self.failures = failures
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.max_trips = max_trips
        self.probe_timeout = probe_timeout
        self.jitter = jitter
        self.clock = clock
        self.random = random
        self.on_transition = on_transition
        self.slots: dict[str, SlotState] = {}

    def state(self, slot: str) -> State:
        entry = self.slots.get(slot)
        return entry.state if entry else State.CLOSED

    def admit(self, slot: str) -> Admission:
        """May a request go to ``slot`` now? A PROBE must be answered by success/failure."""
        entry = self.slots.setdefault(slot, SlotState())
        if entry.state is State.CLOSED:
            return Admission(Decision.PASS)
        if entry.state is State.GIVEN_UP:
            return Admission(Decision.GIVE_UP)
        now = self.clock()
        if entry.state is State.OPEN:
            if now < entry.open_until:
                return Admission(Decision.WAIT, entry.open_until)
            self._move(slot, entry, State.HALF_OPEN, "cooldown over, one probe goes out")
        if entry.probe_at is not None and now - entry.probe_at < self.probe_timeout:
            return Admission(Decision.WAIT)
        entry.probe_at = now
        return Admission(Decision.PROBE)

    def success(self, slot: str) -> None:
        entry = self.slots.get(slot)
        if entry is None:
            return
        if entry.state is State.CLOSED:
            entry.failures = 0
        elif entry.state is State.HALF_OPEN:
            self._stop_open_clock(entry)
            entry.failures = 0
            entry.probe_at = None
            self._move(slot, entry, State.CLOSED, "probe succeeded")
        # Open or given up: an answer to a request sent before the trip proves nothing.

    def failure(self, slot: str, reason: str, retry_after: float | None = None) -> None:
        entry = self.slots.setdefault(slot, SlotState())
        if entry.state is State.CLOSED:
            entry.failures += 1
            if entry.failures >= self.failures:
                self._trip(slot, entry, f"{entry.failures} in a row, last {reason}", retry_after)
            elif retry_after is not None:
                self._pause(slot, entry, reason, retry_after)
        elif entry.state is State.HALF_OPEN:
            self._trip(slot, entry, f"probe failed: {reason}", retry_after)
        elif entry.state is State.OPEN and retry_after is not None:
            self._honour_retry_after(slot, entry, retry_after)

    def release_probe(self, slot: str) -> None:
        """The probe ended without an answer from the site: let another one go."""
        entry = self.slots.get(slot)
        if entry is not None and entry.state is State.HALF_OPEN:
            entry.probe_at = None

    def open_seconds(self, slot: str) -> float:
        entry = self.slots.get(slot)
        if entry is None:
            return 0.0
        current = self.clock() - entry.opened_at if entry.opened_at is not None else 0.0
        return entry.open_seconds + current

    # -- persistence ------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The slots that are not closed, with the epoch time their cooldown ends."""
        return {
            "version": STATE_VERSION,
            "slots": {
                slot: {
                    "state": str(entry.state),
                    "open_until": entry.open_until,
                    "trips": entry.trips,
                    "reason": entry.reason,
                }
                for slot, entry in sorted(self.slots.items())
                if entry.state is not State.CLOSED
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **kwargs: Any) -> Self:
        """A breaker whose slots still cooling down in ``data`` start open.

        Expired entries are dropped; a malformed ``data`` raises ``ValueError``.
        A slot whose cooldown ends further away than ``max_cooldown`` (a long
        Retry-After) starts given up, as it would be in this run. Trips count
        again from zero: they are the trips of this run.
        """
        breaker = cls(**kwargs)
        if not isinstance(data, Mapping) or data.get("version") != STATE_VERSION:
            raise ValueError(f"not a version {STATE_VERSION} breaker state")
        slots = data.get("slots")
        if not isinstance(slots, Mapping):
            raise ValueError("'slots' is not an object")
        now = breaker.clock()
        for slot, entry in slots.items():
            try:
                state = State(entry["state"])
                open_until = float(entry["open_until"])
                reason = str(entry.get("reason", ""))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ValueError(f"slot {slot!r}: {exc!r}") from exc
            if math.isnan(open_until):
                raise ValueError(f"slot {slot!r}: open_until is NaN")
            if state is State.CLOSED or open_until <= now:
                continue
            if open_until - now > breaker.max_cooldown:
                restored = SlotState(State.GIVEN_UP, open_until=open_until, reason=reason)
            else:
                restored = SlotState(
                    State.OPEN, open_until=open_until, reason=reason, opened_at=now
                )
            breaker.slots[str(slot)] = restored
        return breaker

    # -- transitions ------------------------------------------------------

    def _cooldown(self, trips: int) -> float:
        exponential = self.cooldown * 2.0 ** min(trips - 1, 32)
        return min(self.max_cooldown, exponential * (1 + self.jitter * self.random()))

    def _trip(self, slot: str, entry: SlotState, reason: str, retry_after: float | None) -> None:
        now = self.clock()
        entry.trips += 1
        entry.failures = 0
        entry.probe_at = None
        if entry.opened_at is None:
            entry.opened_at = now
        wait = self._cooldown(entry.trips)
        if retry_after is not None:
            wait = max(wait, retry_after)
        entry.open_until = now + wait
        if entry.trips >= self.max_trips:
            self._give_up(slot, entry, f"{reason}; trip {entry.trips} of {self.max_trips}")
        elif wait > self.max_cooldown:
            self._give_up(slot, entry, f"{reason}; Retry-After {wait:.0f}s exceeds the cap")
        else:
            self._move(slot, entry, State.OPEN, reason)

    def _pause(self, slot: str, entry: SlotState, reason: str, retry_after: float) -> None:
        """The site said when to come back: wait that long, below the failure threshold too.

        Not a trip (no growing cooldown), but the same hold and single probe after it.
        """
        if retry_after > self.max_cooldown:
            self._give_up(slot, entry, f"{reason}; Retry-After {retry_after:.0f}s exceeds the cap")
            return
        entry.probe_at = None
        if entry.opened_at is None:
            entry.opened_at = self.clock()
        entry.open_until = self.clock() + retry_after
        self._move(slot, entry, State.OPEN, f"{reason}; Retry-After {retry_after:.0f}s")

    def _honour_retry_after(self, slot: str, entry: SlotState, retry_after: float) -> None:
        until = self.clock() + retry_after
        if until <= entry.open_until:
            return
        entry.open_until = until
        if retry_after > self.max_cooldown:
            self._give_up(slot, entry, f"Retry-After {retry_after:.0f}s exceeds the cap")

    def _give_up(self, slot: str, entry: SlotState, reason: str) -> None:
        self._stop_open_clock(entry)
        self._move(slot, entry, State.GIVEN_UP, reason)

    def _stop_open_clock(self, entry: SlotState) -> None:
        if entry.opened_at is not None:
            entry.open_seconds += self.clock() - entry.opened_at
            entry.opened_at = None

    def _move(self, slot: str, entry: SlotState, state: State, reason: str) -> None:
        previous, entry.state, entry.reason = entry.state, state, reason
        until = entry.open_until if state in (State.OPEN, State.GIVEN_UP) else None
        if self.on_transition is not None:
            self.on_transition(
                Transition(slot, previous, state, reason, self.clock(), until, entry.trips)
            )


class SourceGivenUp(IgnoreRequest):
    """The breaker gave up this request's slot for the run: record the property as blocked."""

    def __init__(self, source: str, slot: str, reason: str = "") -> None:
        super().__init__(source, slot, reason)
        self.source = source
        self.slot = slot
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.source} ({self.slot}) given up for this run: {self.reason}"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def network_errors(settings: BaseSettings) -> tuple[type[BaseException], ...]:
    """The exceptions RetryMiddleware retries: timeouts and connection errors."""
    return tuple(
        load_object(obj) if isinstance(obj, str) else obj
        for obj in settings.getlist("RETRY_EXCEPTIONS")
    )


def _is_failure_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


class CircuitBreakerMiddleware:
    def __init__(
        self,
        crawler: Crawler,
        *,
        failures: int = 3,
        cooldown: float = 300.0,
        max_cooldown: float = 3600.0,
        max_trips: int = 4,
        probe_timeout: float = 360.0,
        state_path: Path | None = None,
        failure_exceptions: tuple[type[BaseException], ...] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = scrapy_sleep,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.crawler = crawler
        self.stats = crawler.stats
        self.clock = clock
        self.sleep = sleep
        self.state_path = state_path
        self.failure_exceptions = (
            network_errors(crawler.settings) if failure_exceptions is None else failure_exceptions
        )
        self._options: dict[str, Any] = {
            "failures": failures,
            "cooldown": cooldown,
            "max_cooldown": max_cooldown,
            "max_trips": max_trips,
            "probe_timeout": probe_timeout,
            "clock": clock,
            "random": random,
            "on_transition": self._transitioned,
        }
        self.breaker = Breaker(**self._options)
        self._sources: dict[str, str] = {}  # slot -> source
        self._requests: Counter[str] = Counter()
        self._blocks: Counter[str] = Counter()
        self._held = 0
        self._engine: ExecutionEngine | None = None
        self._downloader: Downloader | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        if not settings.getbool("PHX_BREAKER_ENABLED", True):
            raise NotConfigured("PHX_BREAKER_ENABLED is off")
        timeout = settings.getfloat("DOWNLOAD_TIMEOUT", 180.0)
        mw = cls(
            crawler,
            failures=settings.getint("PHX_BREAKER_FAILURES", 3),
            cooldown=settings.getfloat("PHX_BREAKER_COOLDOWN", 300.0),
            max_cooldown=settings.getfloat("PHX_BREAKER_MAX_COOLDOWN", 3600.0),
            max_trips=settings.getint("PHX_BREAKER_MAX_TRIPS", 4),
            probe_timeout=2 * timeout if timeout > 0 else 360.0,
            state_path=cls._state_path(settings.get("IMAGES_STORE")),
        )
        crawler.signals.connect(mw.engine_started, signal=signals.engine_started)
        crawler.signals.connect(mw.spider_idle, signal=signals.spider_idle)
        crawler.signals.connect(mw.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(mw.spider_closed, signal=signals.spider_closed)
        return mw

    @staticmethod
    def _state_path(store: str | None) -> Path | None:
        if not store or ("://" in store and not store.startswith("file://")):
            return None
        return Path(store.removeprefix("file://")) / STATE_FILE

    # -- signals ----------------------------------------------------------

    def engine_started(self) -> None:
        self._engine = self.crawler.engine
        self._downloader = self._engine.downloader

    def spider_idle(self) -> None:
        if self._held:
            raise DontCloseSpider

    def spider_opened(self) -> None:
        self.load_state()

    def spider_closed(self) -> None:
        for source in set(self._sources.values()):
            self._update_breaker_stats(source)
        self.save_state()

    # -- requests and answers ---------------------------------------------

    async def process_request(self, request: Request) -> None:
        slot = self._slot_key(request)
        source = self._source(request, slot)
        if request.meta.pop(PROBE_KEY, False):
            # A copy of a probe whose answer never came down to us: free the probe.
            self.breaker.release_probe(slot)
        await self._admit(request, slot, source)
        self._requests[source] += 1
        self.stats.inc_value(f"phx/requests/{source}/count")
        self._update_rate(source)

    def process_response(self, request: Request, response: Response) -> Response:
        slot = self._slot_key(request)
        source = self._source(request, slot)
        was_probe = request.meta.pop(PROBE_KEY, False)
        headers = {str(k).lower(): str(v) for k, v in response.headers.to_unicode_dict().items()}
        rendered = "playwright" in response.flags
        kind = detect_block(
            source, response.status, headers, response.body, response.url, rendered=rendered
        )
        if kind is not None and self._handled_by_callback(request, response.status):
            # The callback asked for this status: Redfin's API refuses a few homes with
            # a 403 and the spider reads the home's page instead. It gets the kind as a hint.
            request.meta[BLOCK_KEY] = kind
            if was_probe:
                self.breaker.release_probe(slot)
            return response
        if kind is None and not _is_failure_status(response.status):
            self.breaker.success(slot)
            return response
        retry_after = parse_retry_after(headers.get("retry-after"), self.clock())
        if kind is None:
            self.breaker.failure(slot, f"http_{response.status}", retry_after)
            return response  # RetryMiddleware decides about 5xx
        raise self._blocked(request, slot, source, kind, response.status, retry_after)

    def process_exception(self, request: Request, exception: Exception) -> None:
        slot = self._slot_key(request)
        was_probe = request.meta.pop(PROBE_KEY, False)
        if isinstance(exception, IgnoreRequest) or not isinstance(
            exception, self.failure_exceptions
        ):
            if was_probe:
                self.breaker.release_probe(slot)
            return
        self.breaker.failure(slot, type(exception).__name__)

    def _handled_by_callback(self, request: Request, status: int) -> bool:
        """Did the request ask for this error status, as HttpErrorMiddleware reads it?"""
        if 200 <= status < 300:
            return False
        if request.meta.get("handle_httpstatus_all"):
            return True
        handled = request.meta.get("handle_httpstatus_list")
        if handled is None:
            handled = getattr(self.crawler.spider, "handle_httpstatus_list", ())
        return status in (handled or ())

    async def _admit(self, request: Request, slot: str, source: str) -> None:
        held = False
        try:
            while True:
                admission = self.breaker.admit(slot)
                if admission.decision is Decision.PASS:
                    return
                if admission.decision is Decision.PROBE:
                    request.meta[PROBE_KEY] = True
                    return
                if admission.decision is Decision.GIVE_UP:
                    raise SourceGivenUp(source, slot, self.breaker.slots[slot].reason)
                if self._closing():
                    raise SourceGivenUp(source, slot, "the spider closed during the cooldown")
                if not held:
                    held = True
                    self._hold(request)
                left = HOLD_POLL if admission.until is None else admission.until - self.clock()
                await self.sleep(min(HOLD_POLL, max(0.0, left)))
        finally:
            if held:
                self._unhold(request)

    def _closing(self) -> bool:
        """Is the crawl stopping? Then held requests must not keep it open until the cooldown.

        A stop clears ``engine.running``; a CloseSpider only sets the engine slot's
        ``closing``, which has no public accessor.
        """
        if self._engine is None:
            return False
        slot = getattr(self._engine, "_slot", None)
        return not self._engine.running or slot is None or slot.closing is not None

    def _hold(self, request: Request) -> None:
        self._held += 1
        if self._downloader is not None:
            self._downloader.active.discard(request)

    def _unhold(self, request: Request) -> None:
        self._held -= 1
        if self._downloader is not None:
            self._downloader.active.add(request)

    def _blocked(
        self,
        request: Request,
        slot: str,
        source: str,
        kind: str,
        status: int,
        retry_after: float | None,
    ) -> BlockedResponse:
        request.meta[BLOCK_KEY] = kind
        self._blocks[source] += 1
        self.stats.inc_value(f"phx/block/{source}/count")
        self.stats.inc_value(f"phx/block/{source}/kind/{kind}")
        self._update_rate(source)
        logger.debug("%s block (HTTP %s) from %s at %s", kind, status, slot, request.url)
        self.breaker.failure(slot, kind, retry_after)
        return BlockedResponse(source, kind, status, request.url)

    def _slot_key(self, request: Request) -> str:
        if self._downloader is not None:
            return self._downloader.get_slot_key(request)
        return request.meta.get("download_slot") or urlparse_cached(request).hostname or ""

    def _source(self, request: Request, slot: str) -> str:
        phx = request.meta.get("phx")
        source = phx.get("source") if isinstance(phx, dict) else request.meta.get("phx_source")
        if source:
            self._sources[slot] = str(source)
            return self._sources[slot]
        return self._sources.setdefault(slot, slot)

    # -- stats, logs, summary ---------------------------------------------

    def _update_rate(self, source: str) -> None:
        requests = self._requests[source]
        rate = self._blocks[source] / requests if requests else 0.0
        self.stats.set_value(f"phx/block/{source}/rate", rate)

    def _slots_of(self, source: str) -> list[str]:
        return [slot for slot, name in self._sources.items() if name == source]

    def _update_breaker_stats(self, source: str) -> None:
        slots = self._slots_of(source)
        entries = [self.breaker.slots[slot] for slot in slots if slot in self.breaker.slots]
        given_up = any(entry.state is State.GIVEN_UP for entry in entries)
        self.stats.set_value(f"phx/breaker/{source}/trips", sum(e.trips for e in entries))
        self.stats.set_value(
            f"phx/breaker/{source}/open_seconds",
            round(sum(self.breaker.open_seconds(slot) for slot in slots), 3),
        )
        self.stats.set_value(f"phx/breaker/{source}/given_up", int(given_up))

    def _transitioned(self, transition: Transition) -> None:
        source = self._sources.get(transition.slot, transition.slot)
        level = logging.INFO
        if transition.state in (State.OPEN, State.GIVEN_UP):
            level = logging.WARNING
        logger.log(
            level,
            "Circuit breaker for %s (%s) is now %s: %s%s",
            transition.slot,
            source,
            transition.state.replace("_", " "),
            transition.reason,
            f"; no request before {_iso(transition.until)}" if transition.until else "",
        )
        self._update_breaker_stats(source)
        self.save_state()

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per source: requests, blocks, block_rate, trips, open_seconds, given_up."""
        result: dict[str, dict[str, Any]] = {}
        for source in sorted(set(self._sources.values())):
            slots = self._slots_of(source)
            entries = [self.breaker.slots[slot] for slot in slots if slot in self.breaker.slots]
            requests, blocks = self._requests[source], self._blocks[source]
            result[source] = {
                "requests": requests,
                "blocks": blocks,
                "block_rate": blocks / requests if requests else 0.0,
                "trips": sum(entry.trips for entry in entries),
                "open_seconds": round(sum(self.breaker.open_seconds(s) for s in slots), 3),
                "given_up": any(entry.state is State.GIVEN_UP for entry in entries),
            }
        return result

    # -- persistence ------------------------------------------------------

    def save_state(self) -> None:
        if self.state_path is None:
            return
        data = self.breaker.to_dict()
        for slot, entry in data["slots"].items():
            entry["source"] = self._sources.get(slot, slot)
        data["saved_at"] = self.clock()
        try:
            atomic_write(self.state_path, json.dumps(data, indent=2).encode())
        except OSError as exc:
            logger.warning("Could not save circuit breaker state to %s: %s", self.state_path, exc)

    def load_state(self) -> None:
        """Start open where the last run's cooldown is not over; a bad file starts clean."""
        if self.state_path is None:
            return
        try:
            data = json.loads(self.state_path.read_bytes())
            breaker = Breaker.from_dict(data, **self._options)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            logger.warning(
                "Ignoring unreadable circuit breaker state %s (%s); every slot starts closed",
                self.state_path,
                exc,
            )
            return
        self.breaker = breaker
        for slot, entry in breaker.slots.items():
            source = data["slots"][slot].get("source")
            self._sources[slot] = source if isinstance(source, str) and source else slot
            logger.warning(
                "Circuit breaker for %s (%s) is %s: still cooling down from the last run "
                "(%s); no request before %s",
                slot,
                self._sources[slot],
                entry.state,
                entry.reason,
                _iso(entry.open_until),
            )
