"""The circuit breaker: the state machine on an injected clock, then the middleware.

Middleware tests use real Requests and Responses and a crawler from
``get_crawler``; time is a fake clock and holding a request "sleeps" by
advancing it. Two crawls against a local server check the parts only a
running engine shows: held requests do not stall other domains, and a
given-up source fails its requests with SourceGivenUp.
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from scrapy import Request, Spider
from scrapy.exceptions import (
    CloseSpider,
    DontCloseSpider,
    DownloadTimeoutError,
    IgnoreRequest,
    NotConfigured,
)
from scrapy.http import HtmlResponse, Response
from scrapy.utils.defer import deferred_from_coro
from scrapy.utils.test import get_crawler
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from phx_scraper.middlewares import breaker as breaker_module
from phx_scraper.middlewares.blocks import BlockedResponse
from phx_scraper.middlewares.breaker import (
    BLOCK_KEY,
    PROBE_KEY,
    Breaker,
    CircuitBreakerMiddleware,
    Decision,
    SourceGivenUp,
    State,
    Transition,
)
from tests.test_blocks import ARE_YOU_A_ROBOT, PX_CAPTCHA_PAGE, ZILLOW_NORMAL

T0 = 1_750_000_000.0
SLOT = "www.zillow.com"
#: With ``random`` fixed at 0.5 and 20 % jitter, every cooldown is 1.1 x its base.
FIRST_COOLDOWN = 330.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def half() -> float:
    return 0.5


def make_breaker(clock: FakeClock, **kwargs: Any) -> Breaker:
    options: dict[str, Any] = {"clock": clock, "random": half, **kwargs}
    return Breaker(**options)


# -- the state machine -----------------------------------------------------


def play(breaker: Breaker, clock: FakeClock, script: str) -> None:
    """Run a script of events on SLOT.

    ``F`` failure, ``S`` success, ``+N`` N seconds pass, ``release`` the probe
    ended unanswered; ``pass``/``probe``/``wait``/``give_up`` admit a request
    and expect that decision.
    """
    for step in script.split():
        if step == "F":
            breaker.failure(SLOT, "perimeterx")
        elif step == "S":
            breaker.success(SLOT)
        elif step.startswith("+"):
            clock.advance(float(step[1:]))
        elif step == "release":
            breaker.release_probe(SLOT)
        else:
            assert breaker.admit(SLOT).decision is Decision(step), f"{step} at {script!r}"


MACHINE_CASES = [
    ("closed-admits", "pass", State.CLOSED),
    ("two-failures-stay-closed", "F F pass", State.CLOSED),
    ("three-failures-open", "F F F wait", State.OPEN),
    ("success-resets-the-count", "F F S F F pass", State.CLOSED),
    ("open-until-the-cooldown-ends", "F F F +329 wait", State.OPEN),
    ("one-probe-then-hold", "F F F +330 probe wait wait", State.HALF_OPEN),
    ("probe-success-closes", "F F F +330 probe S pass pass", State.CLOSED),
    ("probe-failure-doubles-cooldown", "F F F +330 probe F +659 wait +1 probe", State.HALF_OPEN),
    ("answer-sent-before-trip-proves-nothing", "F F F S wait", State.OPEN),
    ("unanswered-probe-released", "F F F +330 probe wait release probe", State.HALF_OPEN),
    ("lost-probe-times-out", "F F F +330 probe +359 wait +1 probe", State.HALF_OPEN),
    ("closed-again-counts-afresh", "F F F +330 probe S F F pass F wait", State.OPEN),
    (
        "fourth-trip-gives-up",
        "F F F +330 probe F +660 probe F +1320 probe F give_up +99999 give_up",
        State.GIVEN_UP,
    ),
]


@pytest.mark.parametrize(
    ("script", "expected"), [pytest.param(*case[1:], id=case[0]) for case in MACHINE_CASES]
)
def test_state_machine(script: str, expected: State) -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, probe_timeout=360.0)
    play(breaker, clock, script)
    assert breaker.state(SLOT) is expected


def test_slots_are_independent() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    play(breaker, clock, "F F F wait")
    assert breaker.admit("www.redfin.com").decision is Decision.PASS


def test_transitions_are_reported_once_each() -> None:
    clock = FakeClock()
    seen: list[Transition] = []
    breaker = make_breaker(clock, on_transition=seen.append)
    play(breaker, clock, "F F F wait wait +330 probe wait S pass")
    assert [(t.previous, t.state) for t in seen] == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]
    assert seen[0].until == T0 + FIRST_COOLDOWN
    assert seen[0].trips == 1
    assert seen[0].reason == "3 in a row, last perimeterx"


@pytest.mark.parametrize(
    ("random", "expected"),
    [
        (0.5, [330.0, 660.0, 1320.0, 2640.0, 3600.0, 3600.0]),
        (0.0, [300.0, 600.0, 1200.0, 2400.0, 3600.0, 3600.0]),
        (0.999, [359.94, 719.88, 1439.76, 2879.52, 3600.0, 3600.0]),
    ],
)
def test_cooldowns_grow_exponentially_with_jitter_up_to_the_cap(
    random: float, expected: list[float]
) -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, random=lambda: random, max_trips=10)
    play(breaker, clock, "F F F")
    cooldowns = []
    for _ in expected:
        until = breaker.slots[SLOT].open_until
        cooldowns.append(round(until - clock(), 2))
        clock.now = until
        play(breaker, clock, "probe F")
    assert cooldowns == expected


@pytest.mark.parametrize(
    ("retry_after", "state", "cooldown"),
    [
        pytest.param(None, State.OPEN, FIRST_COOLDOWN, id="computed"),
        pytest.param(30.0, State.OPEN, FIRST_COOLDOWN, id="shorter-than-computed"),
        pytest.param(1200.0, State.OPEN, 1200.0, id="longer-wins"),
        pytest.param(5000.0, State.GIVEN_UP, 5000.0, id="beyond-the-cap-gives-up"),
    ],
)
def test_retry_after_on_the_trip(retry_after: float | None, state: State, cooldown: float) -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    play(breaker, clock, "F F")
    breaker.failure(SLOT, "ratelimited", retry_after)
    assert breaker.state(SLOT) is state
    assert breaker.slots[SLOT].open_until == T0 + cooldown


@pytest.mark.parametrize(
    ("retry_after", "state", "until"),
    [
        pytest.param(2000.0, State.OPEN, T0 + 2000.0, id="extends"),
        pytest.param(10.0, State.OPEN, T0 + FIRST_COOLDOWN, id="never-shortens"),
        pytest.param(4000.0, State.GIVEN_UP, T0 + 4000.0, id="beyond-the-cap"),
    ],
)
def test_retry_after_while_open(retry_after: float, state: State, until: float) -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    play(breaker, clock, "F F F")
    breaker.failure(SLOT, "ratelimited", retry_after)
    assert breaker.state(SLOT) is state
    assert breaker.slots[SLOT].open_until == until


def test_open_seconds_count_open_and_half_open_time() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    play(breaker, clock, "F F F +330 probe +5 S +100")
    assert breaker.open_seconds(SLOT) == 335.0
    play(breaker, clock, "F F F +10")
    assert breaker.open_seconds(SLOT) == 345.0


@pytest.mark.parametrize(
    "options",
    [{"failures": 0}, {"max_trips": 0}, {"cooldown": 0}, {"cooldown": 10, "max_cooldown": 5}],
)
def test_invalid_settings_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="PHX_BREAKER"):
        Breaker(**options)


# -- persistence of the state machine --------------------------------------


def tripped(clock: FakeClock, script: str = "F F F") -> dict[str, Any]:
    breaker = make_breaker(clock)
    play(breaker, clock, script)
    data: dict[str, Any] = json.loads(json.dumps(breaker.to_dict()))
    return data


def test_round_trip_keeps_a_cooling_slot_open() -> None:
    data = tripped(FakeClock())
    assert data["slots"][SLOT]["open_until"] == T0 + FIRST_COOLDOWN
    later = FakeClock(T0 + 100)
    restored = Breaker.from_dict(data, clock=later, random=half)
    assert restored.state(SLOT) is State.OPEN
    assert restored.admit(SLOT) == breaker_module.Admission(Decision.WAIT, T0 + FIRST_COOLDOWN)
    later.now = T0 + FIRST_COOLDOWN
    assert restored.admit(SLOT).decision is Decision.PROBE


def test_given_up_slot_restarts_open_until_its_cooldown_ends() -> None:
    script = "F F F +330 probe F +660 probe F +1320 probe F"
    clock = FakeClock()
    data = tripped(clock, script)
    assert data["slots"][SLOT]["state"] == "given_up"
    restored = Breaker.from_dict(data, clock=FakeClock(clock.now + 1), random=half)
    assert restored.state(SLOT) is State.OPEN
    assert restored.slots[SLOT].trips == 0


def test_cooldown_beyond_the_cap_restarts_given_up() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    play(breaker, clock, "F F")
    breaker.failure(SLOT, "ratelimited", retry_after=86400)
    data = json.loads(json.dumps(breaker.to_dict()))
    restored = Breaker.from_dict(data, clock=FakeClock(T0 + 3600), random=half)
    assert restored.state(SLOT) is State.GIVEN_UP
    assert restored.admit(SLOT).decision is Decision.GIVE_UP


def test_expired_state_is_ignored() -> None:
    data = tripped(FakeClock())
    restored = Breaker.from_dict(data, clock=FakeClock(T0 + FIRST_COOLDOWN), random=half)
    assert restored.slots == {}
    assert restored.admit(SLOT).decision is Decision.PASS


def test_closed_slots_are_not_saved() -> None:
    assert tripped(FakeClock(), "F F S")["slots"] == {}


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"slots": {}},
        {"version": 2, "slots": {}},
        {"version": 1, "slots": []},
        {"version": 1, "slots": {SLOT: 5}},
        {"version": 1, "slots": {SLOT: {"state": "open"}}},
        {"version": 1, "slots": {SLOT: {"state": "ajar", "open_until": T0}}},
        {"version": 1, "slots": {SLOT: {"state": "open", "open_until": "soon"}}},
        {"version": 1, "slots": {SLOT: {"state": "open", "open_until": float("nan")}}},
    ],
)
def test_malformed_state_raises_value_error(data: Any) -> None:
    with pytest.raises(ValueError):
        Breaker.from_dict(data, clock=FakeClock())


# -- the middleware --------------------------------------------------------

ZILLOW_PAGE = "https://www.zillow.com/homedetails/4560-E-Sunrise-Dr/8142157_zpid/"
REDFIN_API = "https://www.redfin.com/stingray/api/home/details/aboveTheFold?propertyId=1"


class Sleeper:
    """The middleware's sleep: advances the fake clock, then runs ``during`` if set."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.slept: list[float] = []
        self.during: Callable[[], None] | None = None

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)
        if self.during is not None:
            self.during()


def run(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``process_request`` to its end; with the fake sleep it never suspends."""
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise AssertionError("process_request waited on something else than its sleep")


class Harness:
    def __init__(self, tmp_path: Path, clock: FakeClock | None = None, **options: Any) -> None:
        self.clock = clock or FakeClock()
        self.sleeper = Sleeper(self.clock)
        self.crawler = get_crawler(Spider, {"IMAGES_STORE": str(tmp_path)})
        self.state_path = tmp_path / "state" / "breaker.json"
        self.mw = CircuitBreakerMiddleware(
            self.crawler,
            clock=self.clock,
            sleep=self.sleeper,
            random=half,
            state_path=self.state_path,
            **options,
        )

    def stat(self, key: str) -> Any:
        assert self.crawler.stats is not None
        return self.crawler.stats.get_value(key)

    def send(self, request: Request) -> None:
        run(self.mw.process_request(request))

    def answer(
        self,
        request: Request,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        flags: list[str] | None = None,
    ) -> Response:
        response = HtmlResponse(
            request.url,
            status=status,
            body=body,
            headers={"Content-Type": "text/html", **(headers or {})},
            request=request,
            flags=flags,
        )
        return self.mw.process_response(request, response)

    def block(self, request: Request | None = None, **kwargs: Any) -> BlockedResponse:
        request = request or page("zillow")
        self.send(request)
        with pytest.raises(BlockedResponse) as caught:
            self.answer(request, 403, PX_CAPTCHA_PAGE, **kwargs)
        return caught.value


def page(source: str, url: str = ZILLOW_PAGE, **meta: Any) -> Request:
    return Request(url, meta={"phx": {"source": source, "property_hash": "ab12"}, **meta})


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def test_perimeterx_page_becomes_blocked_response_and_is_counted(harness: Harness) -> None:
    request = page("zillow")
    blocked = harness.block(request)
    assert (blocked.source, blocked.kind, blocked.status) == ("zillow", "perimeterx", 403)
    assert isinstance(blocked, IgnoreRequest)
    assert request.meta[BLOCK_KEY] == "perimeterx"
    assert harness.stat("phx/requests/zillow/count") == 1
    assert harness.stat("phx/block/zillow/count") == 1
    assert harness.stat("phx/block/zillow/kind/perimeterx") == 1
    assert harness.stat("phx/block/zillow/rate") == 1.0
    harness.send(page("zillow"))
    harness.answer(page("zillow"), 200, ZILLOW_NORMAL)
    assert harness.stat("phx/block/zillow/rate") == 0.5


@pytest.mark.parametrize(
    ("status", "body", "failure", "block"),
    [
        pytest.param(200, ZILLOW_NORMAL, False, False, id="200-page"),
        pytest.param(404, b"gone", False, False, id="404-not-a-failure"),
        pytest.param(301, b"", False, False, id="redirect"),
        pytest.param(500, b"", True, False, id="500"),
        pytest.param(503, b"", True, False, id="503"),
        pytest.param(408, b"", True, False, id="408"),
        pytest.param(403, PX_CAPTCHA_PAGE, True, True, id="403-block"),
        pytest.param(200, PX_CAPTCHA_PAGE, True, True, id="200-block"),
        pytest.param(429, ARE_YOU_A_ROBOT, True, True, id="429"),
    ],
)
def test_what_counts_as_a_failure(
    harness: Harness, status: int, body: bytes, failure: bool, block: bool
) -> None:
    harness.mw.breaker.failure(SLOT, "earlier")  # a success resets this one
    request = page("zillow")
    harness.send(request)
    if block:
        with pytest.raises(BlockedResponse):
            harness.answer(request, status, body)
    else:
        assert harness.answer(request, status, body).status == status  # Retry decides
    assert harness.mw.breaker.slots[SLOT].failures == (2 if failure else 0)
    assert (harness.stat("phx/block/zillow/count") or 0) == int(block)


def test_404s_neither_block_nor_trip(harness: Harness) -> None:
    for _ in range(10):
        request = page("redfin", "https://ssl.cdn-redfin.com/photo/86/bigphoto/123/x_1024.jpg")
        harness.send(request)
        harness.answer(request, 404)
    assert harness.mw.breaker.state("ssl.cdn-redfin.com") is State.CLOSED
    assert harness.stat("phx/block/redfin/count") is None
    assert harness.stat("phx/requests/redfin/count") == 10


@pytest.mark.parametrize(
    ("exception", "failures"),
    [
        pytest.param(DownloadTimeoutError(), 1, id="timeout"),
        pytest.param(ConnectionRefusedError(), 1, id="refused"),
        pytest.param(IgnoreRequest(), 0, id="ignored"),
        pytest.param(ValueError(), 0, id="a-bug-elsewhere"),
    ],
)
def test_network_errors_are_failures(harness: Harness, exception: Exception, failures: int) -> None:
    request = page("zillow")
    harness.send(request)
    harness.mw.process_exception(request, exception)
    assert harness.mw.breaker.slots[SLOT].failures == failures


def test_open_slot_holds_requests_until_the_cooldown_then_sends_one_probe(
    harness: Harness,
) -> None:
    for _ in range(3):
        harness.block()
    assert harness.mw.breaker.state(SLOT) is State.OPEN

    idle_checks: list[bool] = []

    def spider_idle_is_refused() -> None:
        with pytest.raises(DontCloseSpider):
            harness.mw.spider_idle()
        idle_checks.append(True)

    harness.sleeper.during = spider_idle_is_refused
    other = page("redfin", REDFIN_API)
    harness.send(other)
    assert harness.sleeper.slept == []  # other domains do not wait

    held = page("zillow")
    harness.send(held)
    assert sum(harness.sleeper.slept) == pytest.approx(FIRST_COOLDOWN)
    assert max(harness.sleeper.slept) <= breaker_module.HOLD_POLL
    assert idle_checks
    assert held.meta[PROBE_KEY] is True
    assert harness.mw.breaker.state(SLOT) is State.HALF_OPEN
    harness.mw.spider_idle()  # nothing held any more


def test_half_open_holds_the_rest_until_the_probe_answers(harness: Harness) -> None:
    for _ in range(3):
        harness.block()
    harness.clock.advance(FIRST_COOLDOWN)
    probe = page("zillow")
    harness.send(probe)
    assert probe.meta[PROBE_KEY] is True

    def probe_answers() -> None:
        harness.answer(probe, 200, ZILLOW_NORMAL)

    harness.sleeper.during = probe_answers
    second = page("zillow")
    harness.send(second)
    assert harness.sleeper.slept == [breaker_module.HOLD_POLL]
    assert PROBE_KEY not in second.meta
    assert harness.mw.breaker.state(SLOT) is State.CLOSED


def test_a_redirect_answering_the_probe_closes_the_breaker(harness: Harness) -> None:
    for _ in range(3):
        harness.block()
    harness.clock.advance(FIRST_COOLDOWN)
    probe = page("zillow", "https://www.zillow.com/homedetails/8142157_zpid/")
    harness.send(probe)
    harness.answer(probe, 301, headers={"Location": ZILLOW_PAGE})
    assert harness.mw.breaker.state(SLOT) is State.CLOSED
    assert PROBE_KEY not in probe.meta  # RedirectMiddleware's copy is no probe


def test_a_probe_copy_that_comes_back_frees_the_probe(harness: Harness) -> None:
    for _ in range(3):
        harness.block()
    harness.clock.advance(FIRST_COOLDOWN)
    probe = page("zillow")
    harness.send(probe)
    harness.send(probe.replace())  # re-issued above us: its answer never came down
    assert harness.sleeper.slept == []
    assert harness.mw.breaker.state(SLOT) is State.HALF_OPEN


def test_failed_probe_reopens_with_a_longer_cooldown(harness: Harness) -> None:
    for _ in range(3):
        harness.block()
    harness.clock.advance(FIRST_COOLDOWN)
    harness.block()
    assert harness.mw.breaker.state(SLOT) is State.OPEN
    assert harness.mw.breaker.slots[SLOT].open_until == harness.clock() + 2 * FIRST_COOLDOWN
    assert harness.stat("phx/breaker/zillow/trips") == 2


def test_retry_after_is_honoured_from_the_first_429(harness: Harness) -> None:
    request = page("redfin", "https://www.redfin.com/ratelimited/")
    harness.send(request)
    with pytest.raises(BlockedResponse) as caught:
        harness.answer(request, 429, ARE_YOU_A_ROBOT, {"Retry-After": "1200"})
    assert caught.value.kind == "ratelimited"
    slot = harness.mw.breaker.slots["www.redfin.com"]
    assert (slot.state, slot.open_until, slot.trips) == (State.OPEN, T0 + 1200, 0)


@pytest.mark.parametrize(
    "location",
    ["https://ratelimited.redfin.com/", "/ratelimited/?retry_after=60"],
    ids=["live-host", "replica-path"],
)
def test_redirect_to_the_ratelimit_page_is_a_block_before_it_is_followed(
    harness: Harness, location: str
) -> None:
    request = page("redfin", REDFIN_API)
    harness.send(request)
    with pytest.raises(BlockedResponse) as caught:
        harness.answer(request, 302, headers={"Location": location})
    assert (caught.value.kind, caught.value.status) == ("ratelimited", 302)
    assert harness.stat("phx/block/redfin/kind/ratelimited") == 1


def test_compressed_block_page_is_recognised(harness: Harness) -> None:
    request = page("zillow")
    harness.send(request)
    body = gzip.compress(PX_CAPTCHA_PAGE)
    with pytest.raises(BlockedResponse):
        harness.answer(request, 200, body, headers={"Content-Encoding": "gzip"})


def test_status_the_callback_asked_for_passes_with_a_hint(harness: Harness) -> None:
    request = page("redfin", REDFIN_API, handle_httpstatus_list=[403, 404])
    harness.send(request)
    response = harness.answer(request, 403, b"<h1>403 Forbidden</h1>")
    assert response.status == 403
    assert request.meta[BLOCK_KEY] == "waf_403"
    assert harness.stat("phx/block/redfin/count") is None
    assert harness.mw.breaker.slots["www.redfin.com"].failures == 0


def test_browser_page_that_passed_the_challenge_is_not_a_block(harness: Harness) -> None:
    request = page("zillow", playwright=True)
    harness.send(request)
    response = harness.answer(request, 403, ZILLOW_NORMAL, flags=["playwright"])
    assert response.status == 403
    assert BLOCK_KEY not in request.meta


def test_photo_requests_are_counted_under_their_source(harness: Harness) -> None:
    photo = Request(
        "https://photos.zillowstatic.com/fp/0123456789abcdef0123456789abcdef-cc_ft_1536.jpg",
        meta={"phx_source": "zillow", "allow_offsite": True},
    )
    harness.send(photo)
    with pytest.raises(BlockedResponse) as caught:
        harness.mw.process_response(photo, Response(photo.url, status=403, request=photo))
    assert caught.value.source == "zillow"
    assert harness.stat("phx/requests/zillow/count") == 1
    assert harness.mw.summary()["zillow"]["blocks"] == 1


def test_given_up_source_fails_its_requests(tmp_path: Path) -> None:
    harness = Harness(tmp_path, max_trips=1)
    for _ in range(3):
        harness.block()
    assert harness.mw.breaker.state(SLOT) is State.GIVEN_UP
    with pytest.raises(SourceGivenUp) as caught:
        harness.send(page("zillow"))
    assert caught.value.source == "zillow"
    assert caught.value.slot == SLOT
    assert isinstance(caught.value, IgnoreRequest)
    assert harness.stat("phx/breaker/zillow/given_up") == 1
    assert harness.stat("phx/breaker/zillow/trips") == 1
    assert harness.sleeper.slept == []


def test_source_given_up_during_the_hold_releases_held_requests(tmp_path: Path) -> None:
    harness = Harness(tmp_path, max_trips=2)
    for _ in range(3):
        harness.block()
    harness.clock.advance(FIRST_COOLDOWN)
    probe = page("zillow")
    harness.send(probe)

    def probe_blocked() -> None:
        with pytest.raises(BlockedResponse):
            harness.answer(probe, 403, PX_CAPTCHA_PAGE)

    harness.sleeper.during = probe_blocked
    with pytest.raises(SourceGivenUp):
        harness.send(page("zillow"))
    assert harness.mw.summary()["zillow"]["given_up"] is True


def test_summary(harness: Harness) -> None:
    for _ in range(3):
        harness.block()
    for url in (REDFIN_API, REDFIN_API):
        request = page("redfin", url)
        harness.send(request)
        harness.answer(request, 200, b"{}&&{}")
    harness.clock.advance(FIRST_COOLDOWN)
    probe = page("zillow")
    harness.send(probe)
    harness.clock.advance(2)
    harness.answer(probe, 200, ZILLOW_NORMAL)
    assert harness.mw.summary() == {
        "redfin": {
            "requests": 2,
            "blocks": 0,
            "block_rate": 0.0,
            "trips": 0,
            "open_seconds": 0.0,
            "given_up": False,
        },
        "zillow": {
            "requests": 4,
            "blocks": 3,
            "block_rate": 0.75,
            "trips": 1,
            "open_seconds": FIRST_COOLDOWN + 2,
            "given_up": False,
        },
    }
    harness.mw.spider_closed()
    assert harness.stat("phx/breaker/zillow/open_seconds") == FIRST_COOLDOWN + 2
    assert harness.stat("phx/breaker/redfin/given_up") == 0


# -- the middleware's saved state ------------------------------------------


def test_state_is_saved_on_a_trip_and_restored_by_the_next_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = Harness(tmp_path)
    for _ in range(3):
        first.block()
    saved = json.loads(first.state_path.read_text())
    assert saved["slots"][SLOT]["open_until"] == T0 + FIRST_COOLDOWN
    assert saved["slots"][SLOT]["source"] == "zillow"
    assert [p.name for p in first.state_path.parent.iterdir()] == ["breaker.json"]

    second = Harness(tmp_path, FakeClock(T0 + 100))
    with caplog.at_level(logging.WARNING, logger=breaker_module.__name__):
        second.mw.spider_opened()
    assert second.mw.breaker.state(SLOT) is State.OPEN
    assert "still cooling down" in caplog.text
    second.send(page("zillow"))  # the first request of the new run waits
    assert sum(second.sleeper.slept) == pytest.approx(FIRST_COOLDOWN - 100)


def test_expired_saved_state_starts_closed(tmp_path: Path) -> None:
    first = Harness(tmp_path)
    for _ in range(3):
        first.block()
    second = Harness(tmp_path, FakeClock(T0 + FIRST_COOLDOWN + 1))
    second.mw.spider_opened()
    assert second.mw.breaker.slots == {}
    second.send(page("zillow"))
    assert second.sleeper.slept == []


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\x00\xff\xfe",
        b"[]",
        b'{"version": 1, "slots": {"www.zillow.com": 5}}',
        b'{"version": 1, "slots": {"www.zillow.com": {"state": "open", "open_until": null}}}',
    ],
)
def test_corrupt_state_file_warns_once_and_starts_clean(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    harness = Harness(tmp_path)
    harness.state_path.parent.mkdir(parents=True)
    harness.state_path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger=breaker_module.__name__):
        harness.mw.spider_opened()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "unreadable circuit breaker state" in warnings[0].getMessage()
    assert harness.mw.breaker.slots == {}
    harness.block()
    harness.mw.spider_closed()
    assert json.loads(harness.state_path.read_text())["version"] == 1


def test_transitions_are_logged(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=breaker_module.__name__):
        for _ in range(3):
            harness.block()
        harness.clock.advance(FIRST_COOLDOWN)
        probe = page("zillow")
        harness.send(probe)
        harness.answer(probe, 200, ZILLOW_NORMAL)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "INFO", "INFO"]
    assert lines[0][1].startswith("Circuit breaker for www.zillow.com (zillow) is now open: 3")
    assert "no request before 20" in lines[0][1]
    assert "is now half open: cooldown over" in lines[1][1]
    assert "is now closed: probe succeeded" in lines[2][1]


# -- from_crawler ----------------------------------------------------------


def test_disabled_is_not_configured() -> None:
    crawler = get_crawler(Spider, {"PHX_BREAKER_ENABLED": False})
    with pytest.raises(NotConfigured):
        CircuitBreakerMiddleware.from_crawler(crawler)


def test_settings_are_read(tmp_path: Path) -> None:
    crawler = get_crawler(
        Spider,
        {
            "PHX_BREAKER_FAILURES": "5",
            "PHX_BREAKER_COOLDOWN": "10",
            "PHX_BREAKER_MAX_COOLDOWN": "20",
            "PHX_BREAKER_MAX_TRIPS": "2",
            "IMAGES_STORE": str(tmp_path),
        },
    )
    mw = CircuitBreakerMiddleware.from_crawler(crawler)
    options = (mw.breaker.failures, mw.breaker.cooldown, mw.breaker.max_cooldown)
    assert options == (5, 10.0, 20.0)
    assert mw.breaker.max_trips == 2
    assert mw.state_path == tmp_path / "state" / "breaker.json"
    assert DownloadTimeoutError in mw.failure_exceptions


def test_defaults_and_a_remote_store() -> None:
    crawler = get_crawler(Spider, {"IMAGES_STORE": "s3://bucket/photos"})
    mw = CircuitBreakerMiddleware.from_crawler(crawler)
    assert (mw.breaker.failures, mw.breaker.cooldown, mw.breaker.max_cooldown) == (3, 300, 3600)
    assert mw.breaker.max_trips == 4
    assert mw.state_path is None


# -- real crawls -----------------------------------------------------------


class SiteHandler(BaseHTTPRequestHandler):
    """``/zillow/...``: the PerimeterX wall; ``/limited/...``: Redfin's redirect to its
    rate-limit page, which answers 429; anything else: a plain page."""

    def do_GET(self) -> None:
        status, body, headers = 200, b"<html><body>ok</body></html>", {}
        if self.path.startswith("/zillow/"):
            status, body = 403, PX_CAPTCHA_PAGE
        elif self.path.startswith("/limited/"):
            status, body, headers = 302, b"", {"Location": "/ratelimited/?retry_after=60"}
        elif self.path.startswith("/ratelimited/"):
            status, body, headers = 429, ARE_YOU_A_ROBOT, {"Retry-After": "60"}
        self.send_response(status)
        for name, value in {"Content-Type": "text/html", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), SiteHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class PlanSpider(Spider):
    """Requests ``(source, path, count, priority)``, each source on its own download slot."""

    name = "plan"

    def __init__(
        self,
        base: str,
        plan: list[tuple[str, str, int, int]],
        close_after: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.base = base
        self.plan = plan
        self.close_after = close_after
        self.outcomes: list[tuple[str, str]] = []
        self.zillow_states: list[State] = []

    async def start(self) -> AsyncIterator[Any]:
        for source, path, count, priority in self.plan:
            for i in range(count):
                yield Request(
                    f"{self.base}/{path}/{i}",
                    priority=priority,
                    callback=self.parse,
                    errback=self.failed,
                    meta={
                        "download_slot": f"{source}.test",
                        "phx": {"source": source, "property_hash": str(i)},
                    },
                )

    def breaker(self) -> CircuitBreakerMiddleware:
        middlewares = self.crawler.engine.downloader.middleware.middlewares
        return next(m for m in middlewares if isinstance(m, CircuitBreakerMiddleware))

    def of(self, source: str) -> list[str]:
        return sorted(outcome for outcome, name in self.outcomes if name == source)

    def parse(self, response: Response) -> None:
        source = response.meta["phx"]["source"]
        self.outcomes.append(("ok", source))
        self.zillow_states.append(self.breaker().breaker.state("zillow.test"))
        planned = sum(count for name, _, count, _ in self.plan if name == source)
        if source == self.close_after and len(self.of(source)) == planned:
            raise CloseSpider(f"{source}_done")

    def failed(self, failure: Failure) -> None:
        request = failure.request  # type: ignore[attr-defined]
        self.outcomes.append((type(failure.value).__name__, request.meta["phx"]["source"]))


def crawl_test(
    fn: Callable[..., Coroutine[Any, Any, None]],
) -> Callable[..., Deferred[None]]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Deferred[None]:
        return deferred_from_coro(fn(*args, **kwargs))

    return wrapper


async def crawl(
    tmp_path: Path,
    site: str,
    plan: list[tuple[str, str, int, int]],
    close_after: str | None = None,
    **settings: Any,
) -> PlanSpider:
    crawler = get_crawler(
        PlanSpider,
        {
            "DOWNLOADER_MIDDLEWARES": {
                "phx_scraper.middlewares.breaker.CircuitBreakerMiddleware": 650
            },
            "IMAGES_STORE": str(tmp_path),
            # One request at a time: a held request that counted would stall the crawl.
            "CONCURRENT_REQUESTS": 1,
            "DOWNLOAD_DELAY": 0,
            "RETRY_ENABLED": False,
            "CLOSESPIDER_TIMEOUT": 30,
            **settings,
        },
    )
    await crawler.crawl_async(base=site, plan=plan, close_after=close_after)
    spider = crawler.spider
    assert isinstance(spider, PlanSpider)
    return spider


@crawl_test
async def test_crawl_holds_a_blocked_domain_while_the_other_runs(
    site: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(breaker_module, "HOLD_POLL", 0.05)
    plan = [("zillow", "zillow", 3, 10), ("redfin", "redfin", 10, 0)]
    spider = await crawl(
        tmp_path,
        site,
        plan,
        close_after="redfin",
        PHX_BREAKER_FAILURES=1,
        PHX_BREAKER_COOLDOWN=3600,
    )
    assert spider.of("zillow") == ["BlockedResponse", "SourceGivenUp", "SourceGivenUp"]
    assert spider.of("redfin") == ["ok"] * 10
    assert State.OPEN in spider.zillow_states  # Redfin ran while Zillow's requests were held
    stats = spider.crawler.stats
    assert stats is not None
    assert stats.get_value("finish_reason") == "redfin_done"
    saved = json.loads((tmp_path / "state" / "breaker.json").read_text())
    assert saved["slots"]["zillow.test"]["state"] == "open"


@crawl_test
async def test_crawl_gives_up_a_source_and_fails_its_requests(site: str, tmp_path: Path) -> None:
    plan = [("zillow", "zillow", 4, 10), ("redfin", "redfin", 2, 0)]
    spider = await crawl(tmp_path, site, plan, PHX_BREAKER_FAILURES=2, PHX_BREAKER_MAX_TRIPS=1)
    assert spider.of("zillow") == ["BlockedResponse"] * 2 + ["SourceGivenUp"] * 2
    summary = spider.breaker().summary()
    assert summary["zillow"]["given_up"] is True
    assert summary["zillow"]["requests"] == 2
    assert summary["redfin"]["requests"] == 2
    stats = spider.crawler.stats
    assert stats is not None
    assert stats.get_value("phx/breaker/zillow/given_up") == 1
    assert stats.get_value("phx/block/zillow/kind/perimeterx") == 2


@crawl_test
async def test_crawl_every_ratelimit_redirect_reaches_its_errback(
    site: str, tmp_path: Path
) -> None:
    """Followed, the redirects would share one URL and the dupefilter would drop all but one."""
    plan = [("redfin", "limited", 4, 0)]
    spider = await crawl(tmp_path, site, plan, PHX_BREAKER_FAILURES=10)
    assert spider.of("redfin") == ["BlockedResponse"] * 4
    stats = spider.crawler.stats
    assert stats is not None
    assert stats.get_value("phx/block/redfin/kind/ratelimited") == 4
