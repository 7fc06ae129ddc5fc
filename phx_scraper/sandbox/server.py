"""Build the four replica sites and serve each on its own loopback address."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any, cast

from twisted.internet import reactor as _reactor
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.web.server import Site

from phx_scraper.sandbox.base import Context, SourceSite
from phx_scraper.sandbox.faults import FaultBook, FaultSpecError, parse_cli
from phx_scraper.sandbox.images import ImageCache
from phx_scraper.sandbox.maricopa import MaricopaSite
from phx_scraper.sandbox.mls import MlsSite
from phx_scraper.sandbox.redfin import RedfinSite
from phx_scraper.sandbox.requestlog import RequestLog
from phx_scraper.sandbox.zillow import ZillowSite

HOSTS = {
    "zillow": "127.0.0.1",
    "redfin": "127.0.0.2",
    "maricopa": "127.0.0.3",
    "phoenix_mls": "127.0.0.4",
}
DEFAULT_TOKEN = "sandbox-token-7f3a"
logger = logging.getLogger("phx_scraper.sandbox")
reactor: Any = _reactor  # twisted's reactor module attribute has no useful static type


class QuietSite(Site):
    """No access log: the request log (JSONL) is the record tests read."""

    def log(self, request: object) -> None:
        pass


def _stop_on_signals() -> None:
    """Stop on SIGTERM and SIGINT even when started with SIGINT ignored (shell background jobs)."""

    def stop(signum: int, frame: object) -> None:
        if reactor.running:
            reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def build_sites(ctx: Context) -> dict[str, SourceSite]:
    return {
        "zillow": ZillowSite(ctx),
        "redfin": RedfinSite(ctx),
        "maricopa": MaricopaSite(ctx),
        "phoenix_mls": MlsSite(ctx),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m phx_scraper.sandbox",
        description="Serve the local replica of Zillow, Redfin, Maricopa and Phoenix MLS.",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="same port on every host (0: ephemeral)"
    )
    parser.add_argument("--request-log", type=Path, help="append one JSON line per request here")
    parser.add_argument(
        "--fault", action="append", default=[], metavar="SOURCE:MODE[:ARG...]", help="see faults.py"
    )
    parser.add_argument("--maricopa-token", default=DEFAULT_TOKEN)
    parser.add_argument("--cache-dir", type=Path, help="keep rendered images here across runs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    # Twisted's own messages (listening, errors) at warning and above, on stderr.
    predicate: Any = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    observer: Any = FilteringLogObserver(cast(Any, textFileLogObserver(sys.stderr)), [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    faults = FaultBook()
    for text in args.fault:
        try:
            source, fault = parse_cli(text)
        except FaultSpecError as exc:
            print(f"--fault {text}: {exc}", file=sys.stderr)
            return 2
        if source not in HOSTS:
            print(f"--fault {text}: unknown source {source!r}", file=sys.stderr)
            return 2
        faults.add(source, fault)
    log = RequestLog(args.request_log)
    ctx = Context(faults, log, ImageCache(directory=args.cache_dir), args.maricopa_token)
    urls = {}
    for source, resource in build_sites(ctx).items():
        port = reactor.listenTCP(args.port, QuietSite(resource), interface=HOSTS[source])
        urls[source] = f"http://{HOSTS[source]}:{port.getHost().port}"
    reactor.suggestThreadPoolSize(4)
    sys.stdout.write(json.dumps(urls) + "\n")
    sys.stdout.flush()
    logger.info("sandbox serving %s", urls)
    _stop_on_signals()
    reactor.run()
    log.close()
    return 0
