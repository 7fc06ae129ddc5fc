"""Shared machinery of the four replica sites: routing, faults, logging, control.

Each source is one leaf ``Resource`` (``SourceSite`` subclass) with a small
regex router. Every request passes, in order: the control endpoint check, the
fault book (block pages, bursts, delays, dropped connections), the source's
handler, and the request log.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from twisted.internet import task, threads
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from phx_scraper.sandbox.faults import Action, Decision, FaultBook, FaultSpecError
from phx_scraper.sandbox.images import ImageCache
from phx_scraper.sandbox.requestlog import RequestLog

logger = logging.getLogger(__name__)

HTML = "text/html; charset=utf-8"
JSON = "application/json"
CONTROL_PREFIX = "/__sandbox__/"


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = HTML
    headers: dict[str, str] = field(default_factory=dict)
    fault: str | None = None  # a dataset fault (truncated image...) or a challenge


def html(text: str, status: int = 200, **headers: str) -> Reply:
    return Reply(status, text.encode(), HTML, dict(headers))


def json_reply(obj: Any, status: int = 200, prefix: str = "", content_type: str = JSON) -> Reply:
    body = prefix + json.dumps(obj, separators=(",", ":"))
    return Reply(status, body.encode(), content_type)


def redirect(location: str, status: int = 301) -> Reply:
    return Reply(status, b"", HTML, {"Location": location})


def not_found(text: str = "Not Found") -> Reply:
    return html(f"<html><head><title>404</title></head><body><h1>{text}</h1></body></html>", 404)


@dataclass
class Context:
    """What every site shares: fault book, request log, image cache, options."""

    faults: FaultBook
    log: RequestLog
    cache: ImageCache
    maricopa_token: str = "sandbox-token-7f3a"


def _as_deferred(handler: Callable[[Call], Reply | Deferred[Reply]], call: Call) -> Deferred[Reply]:
    try:
        result = handler(call)
    except Exception:
        return fail(Failure())
    return result if isinstance(result, Deferred) else succeed(result)


def _reactor() -> Any:
    # Imported late: importing this module must not install a reactor.
    from twisted.internet import reactor

    return reactor


class Call:
    """A read-only view of one request, easier on handlers than twisted's."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.method = request.method.decode()
        self.uri = request.uri.decode("latin-1")
        parts = urlsplit(self.uri)
        self.path = unquote(parts.path)
        self.query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        host = request.getHost()
        self.base = f"http://{host.host}:{host.port}"

    def header(self, name: str) -> str | None:
        value = self.request.getHeader(name)
        return value.decode("latin-1") if isinstance(value, bytes) else value

    def cookie(self, name: str) -> str | None:
        value = self.request.getCookie(name.encode())
        return value.decode("latin-1") if value is not None else None

    def body_json(self) -> Any:
        content = self.request.content
        return json.loads(content.read() or b"{}") if content is not None else {}


Handler = Callable[[Call, re.Match[str]], "Reply | Deferred[Reply]"]


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[re.Pattern[str], Handler]] = []

    def add(self, pattern: str, handler: Handler) -> None:
        self._routes.append((re.compile(pattern), handler))

    def dispatch(self, call: Call) -> Reply | Deferred[Reply]:
        for pattern, handler in self._routes:
            match = pattern.fullmatch(call.path)
            if match:
                return handler(call, match)
        return not_found()


class SourceSite(Resource):
    isLeaf = True
    source = ""

    def __init__(self, ctx: Context) -> None:
        super().__init__()
        self.ctx = ctx
        self.router = Router()

    # --- what a source defines ---
    def is_cdn(self, path: str) -> bool:
        return False

    def exempt(self, path: str) -> bool:
        """Paths no fault applies to (e.g. the page a redirect-block points at)."""
        return False

    def handle(self, call: Call) -> Reply | Deferred[Reply]:
        return self.router.dispatch(call)

    def block_page(self, call: Call, kind: str, retry_after: int | None = None) -> Reply:
        """``kind``: block, block200, waf, ratelimit or burst (see faults.py)."""
        return html(
            "<html><head><title>403 Forbidden</title></head><body>Forbidden</body></html>", 403
        )

    def status_page(self, call: Call, status: int) -> Reply:
        text = {429: "Too Many Requests", 503: "Service Unavailable"}.get(status, "Error")
        return html(
            f"<html><head><title>{status} {text}</title></head><body>{text}</body></html>", status
        )

    # --- helpers for handlers ---
    def image(self, key: str, produce: Callable[[], bytes]) -> Deferred[bytes]:
        """Render (or fetch from cache) in a worker thread: Pillow releases the GIL."""
        return threads.deferToThread(self.ctx.cache.get, key, produce)

    # --- the request pipeline ---
    def render(self, request: Request) -> bytes | int:
        call = Call(request)
        if call.path.startswith(CONTROL_PREFIX):
            return self._control(call)
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        decision = Decision()
        if not self.exempt(call.path):
            decision = self.ctx.faults.decide(self.source, self.is_cdn(call.path), time.time())
        action, delay = decision.action, decision.delay
        if action is not None and action.kind == "drop":
            self._later(delay, self._drop, call, action.name)
            return NOT_DONE_YET
        if action is not None:
            d: Deferred[Reply] = succeed(self._fault_reply(call, action))
        else:
            d = _as_deferred(self.handle, call)
        if delay:
            d.addCallback(lambda reply: task.deferLater(_reactor(), delay, lambda: reply))
        name = action.name if action else (decision.delay_name if delay else None)
        d.addCallback(self._send, call, name, gone)
        d.addErrback(self._crash, call, gone)
        return NOT_DONE_YET

    def _later(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        if delay:
            _reactor().callLater(delay, fn, *args)
        else:
            fn(*args)

    def _drop(self, call: Call, name: str) -> None:
        transport = call.request.channel.transport if call.request.channel else None
        if transport is not None:
            transport.abortConnection()
        self._log(call, None, 0, name)

    def _fault_reply(self, call: Call, action: Action) -> Reply:
        if action.kind == "status":
            reply = self.status_page(call, action.status)
            if action.retry_after is not None:
                reply.headers["Retry-After"] = str(action.retry_after)
        else:
            reply = self.block_page(call, action.kind, action.retry_after)
        return reply

    def _send(self, reply: Reply, call: Call, fault: str | None, gone: list[bool]) -> None:
        fault = fault or reply.fault
        if gone:
            self._log(call, None, 0, fault)
            return
        request = call.request
        request.setResponseCode(reply.status)
        request.setHeader(b"content-type", reply.content_type.encode())
        request.setHeader(b"content-length", str(len(reply.body)).encode())
        for name, value in reply.headers.items():
            request.setHeader(name.encode(), value.encode("latin-1"))
        if reply.body and call.method != "HEAD":
            request.write(reply.body)
        request.finish()
        self._log(call, reply.status, 0 if call.method == "HEAD" else len(reply.body), fault)

    def _crash(self, failure: Failure, call: Call, gone: list[bool]) -> None:
        logger.error("%s %s failed: %s", self.source, call.uri, failure.getTraceback())
        self._send(html("<h1>500 Internal Server Error</h1>", 500), call, None, gone)

    def _log(self, call: Call, status: int | None, size: int, fault: str | None) -> None:
        self.ctx.log.write(
            {
                "t": time.time(),
                "source": self.source,
                "method": call.method,
                "path": call.uri,
                "user_agent": call.header("user-agent"),
                "has_cookie": call.header("cookie") is not None,
                "has_authorization": call.header("authorization") is not None,
                "status": status,
                "bytes": size,
                "fault": fault,
            }
        )

    # --- control endpoint (never logged) ---
    def _control(self, call: Call) -> bytes:
        request = call.request
        request.setHeader(b"content-type", JSON.encode())
        name = call.path[len(CONTROL_PREFIX) :].strip("/")
        if name == "faults" and call.method == "POST":
            try:
                specs = call.body_json().get("faults", [])
                if not isinstance(specs, list):
                    raise ValueError('expected {"faults": ["MODE[:ARG...]", ...]}')
                self.ctx.faults.set(self.source, [str(s) for s in specs])
            except (FaultSpecError, ValueError, AttributeError) as exc:
                request.setResponseCode(400)
                return json.dumps({"error": str(exc)}).encode()
        if name == "faults":
            return json.dumps(
                {"source": self.source, "faults": self.ctx.faults.specs(self.source)}
            ).encode()
        if name == "health":
            return json.dumps(
                {"ok": True, "source": self.source, "renders": self.ctx.cache.renders}
            ).encode()
        request.setResponseCode(404)
        return b'{"error": "unknown control endpoint"}'
