"""Switchable failure modes of the replica sites.

A spec is ``SOURCE:MODE[:ARG...]`` on the command line (``--fault``, repeatable)
and ``MODE[:ARG...]`` through the control endpoint ``POST /__sandbox__/faults``
of the source's host. Modes (K = "first K matching requests only"; without K
every matching request):

- ``block[:K]``               the source's own block page (Zillow PerimeterX 403,
                              Redfin 403, Maricopa 403, Phoenix MLS WAF 403)
- ``block200[:K]``            zillow: the PerimeterX page with HTTP 200
- ``waf[:K]``                 redfin: AWS WAF challenge, HTTP 202
- ``ratelimit[:K[:RETRY_AFTER]]``  redfin: 302 to /ratelimited/, which answers 429
                              "Are You a Robot?" with Retry-After (default 60)
- ``NNN[:K[:RETRY_AFTER]]``   a bare HTTP status: ``429:3:5``, ``503:2``, ``500:1``...
- ``slow:SECONDS``            every response delayed (reactor.callLater, never sleep)
- ``drop[:K]``                connection closed without any response
- ``burst:N[:WINDOW[:COOLDOWN]]``  more than N requests within WINDOW s (10) trip
                              the block page for COOLDOWN s (60), like an IP block
                              (Redfin answers it with the rate-limit redirect)
- ``require_browser``         zillow: HTML pages need the cookie set by a JS
                              challenge (403 PerimeterX page to non-JS clients)

Modes apply to the source's page and API requests only; CDN requests (images,
map PDFs, Maricopa aerial exports) are never affected unless the mode carries the
``cdn_`` prefix: ``cdn_503:2``, ``cdn_drop:1``, ``cdn_slow:0.5``, ``cdn_block``.
Per-photo faults (truncated, HTML as JPEG...) are fixed in the dataset instead.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

SOURCE_MODES = {
    "block200": ("zillow",),
    "require_browser": ("zillow",),
    "waf": ("redfin",),
    "ratelimit": ("redfin",),
}
_COUNTED = ("block", "block200", "waf", "ratelimit", "drop")


class FaultSpecError(ValueError):
    pass


@dataclass
class Fault:
    spec: str
    mode: str  # block | block200 | waf | ratelimit | status | slow | drop | burst | require_browser
    cdn: bool = False
    remaining: int | None = None
    status: int = 0
    retry_after: int | None = None
    seconds: float = 0.0
    window: float = 10.0
    cooldown: float = 60.0
    limit: int = 0
    hits: deque[float] = field(default_factory=deque)
    tripped_until: float = 0.0

    @property
    def name(self) -> str:
        base = str(self.status) if self.mode == "status" else self.mode
        return f"cdn_{base}" if self.cdn else base


@dataclass(frozen=True)
class Action:
    """What to answer instead of the real response."""

    name: str  # logged as the request's fault
    kind: str  # block | block200 | waf | ratelimit | burst | status | drop
    status: int = 0
    retry_after: int | None = None


@dataclass(frozen=True)
class Decision:
    delay: float = 0.0
    action: Action | None = None
    delay_name: str | None = None


def parse_cli(text: str) -> tuple[str, Fault]:
    """``SOURCE:MODE[:ARG...]`` -> (source, fault)."""
    source, _, spec = text.partition(":")
    if not spec:
        raise FaultSpecError(f"expected SOURCE:MODE[:ARG...], got {text!r}")
    return source, parse(source, spec)


def parse(source: str, spec: str) -> Fault:
    parts = spec.split(":")
    mode, args = parts[0].lower(), parts[1:]
    cdn = mode.startswith("cdn_")
    mode = mode.removeprefix("cdn_")
    allowed = SOURCE_MODES.get(mode)
    if allowed is not None and source not in allowed:
        raise FaultSpecError(f"mode {mode!r} exists only for {', '.join(allowed)}")
    try:
        return _build(spec, mode, cdn, args)
    except (ValueError, IndexError) as exc:
        raise FaultSpecError(f"bad fault spec {spec!r}: {exc}") from exc


def _build(spec: str, mode: str, cdn: bool, args: list[str]) -> Fault:
    count = int(args[0]) if args and args[0] and mode not in ("slow", "burst") else None
    if mode in _COUNTED:
        _no_extra(args, 2 if mode == "ratelimit" else 1)
        retry = int(args[1]) if len(args) > 1 else None
        return Fault(spec, mode, cdn, remaining=count, retry_after=retry)
    if mode.isdigit() and len(mode) == 3:
        _no_extra(args, 2)
        retry = int(args[1]) if len(args) > 1 else (30 if mode in ("429", "503") else None)
        return Fault(spec, "status", cdn, remaining=count, status=int(mode), retry_after=retry)
    if mode == "slow":
        _no_extra(args, 1)
        return Fault(spec, mode, cdn, seconds=float(args[0]))
    if mode == "burst":
        _no_extra(args, 3)
        fault = Fault(spec, mode, cdn, limit=int(args[0]))
        if len(args) > 1:
            fault.window = float(args[1])
        if len(args) > 2:
            fault.cooldown = float(args[2])
        return fault
    if mode == "require_browser":
        _no_extra(args, 0)
        return Fault(spec, mode, cdn)
    raise ValueError(f"unknown mode {mode!r}")


def _no_extra(args: list[str], allowed: int) -> None:
    if len(args) > allowed:
        raise ValueError(f"too many arguments ({len(args)} > {allowed})")


class FaultBook:
    """The active faults of every source; safe to change while serving."""

    def __init__(self) -> None:
        self._faults: dict[str, list[Fault]] = {}
        self._lock = threading.Lock()

    def set(self, source: str, specs: list[str]) -> None:
        faults = [parse(source, spec) for spec in specs]
        with self._lock:
            self._faults[source] = faults

    def add(self, source: str, fault: Fault) -> None:
        with self._lock:
            self._faults.setdefault(source, []).append(fault)

    def specs(self, source: str) -> list[str]:
        with self._lock:
            return [f.spec for f in self._faults.get(source, [])]

    def requires_browser(self, source: str) -> bool:
        with self._lock:
            return any(f.mode == "require_browser" for f in self._faults.get(source, []))

    def decide(self, source: str, cdn: bool, now: float) -> Decision:
        delay, delay_name, action = 0.0, None, None
        with self._lock:
            for fault in self._faults.get(source, []):
                if fault.cdn != cdn or fault.mode == "require_browser":
                    continue
                if fault.mode == "slow":
                    delay, delay_name = delay + fault.seconds, fault.name
                    continue
                if action is None:
                    action = _fire(fault, now)
        return Decision(delay, action, delay_name)


def _fire(fault: Fault, now: float) -> Action | None:
    if fault.mode == "burst":
        fault.hits.append(now)
        while fault.hits and fault.hits[0] < now - fault.window:
            fault.hits.popleft()
        if len(fault.hits) > fault.limit:
            fault.tripped_until = now + fault.cooldown
        if now < fault.tripped_until:
            return Action(fault.name, "burst")
        return None
    if fault.remaining is not None:
        if fault.remaining <= 0:
            return None
        fault.remaining -= 1
    return Action(fault.name, fault.mode, fault.status, fault.retry_after)
