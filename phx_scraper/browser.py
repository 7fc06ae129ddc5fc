"""Which sources fetch pages through a real browser, and how that browser starts.

Pages of the sources named in ``PHX_BROWSER_SOURCES`` are fetched by
scrapy-playwright driving Debian's Chromium; image downloads always use plain
HTTP. Spiders whose sources need no browser never install the handler, so
they never start one.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scrapy.settings import BaseSettings

HANDLER = "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler"
_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
# Chromium's own background traffic is refused by closed networks and only
# slows start-up; none of these flags hides that the client is a browser.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class BrowserNotFound(RuntimeError):
    pass


def browser_sources(settings: BaseSettings) -> set[str]:
    return {s.strip() for s in settings.getlist("PHX_BROWSER_SOURCES") if s.strip()}


def find_executable(configured: str = "") -> str:
    if configured:
        if Path(configured).is_file():
            return configured
        raise BrowserNotFound(
            f"PHX_BROWSER_EXECUTABLE={configured!r} does not exist; "
            "install Debian's chromium (apt-get install chromium) or fix the path"
        )
    for candidate in _CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    raise BrowserNotFound(
        "no Chromium found for the browser sources: run 'apt-get install chromium' "
        "(as root), set PHX_BROWSER_EXECUTABLE, or remove the source from PHX_BROWSER_SOURCES"
    )


def browser_settings(settings: BaseSettings) -> dict[str, Any]:
    executable = find_executable(settings.get("PHX_BROWSER_EXECUTABLE", ""))
    return {
        "DOWNLOAD_HANDLERS": {"http": HANDLER, "https": HANDLER},
        "PLAYWRIGHT_BROWSER_TYPE": "chromium",
        "PLAYWRIGHT_LAUNCH_OPTIONS": {
            "executable_path": executable,
            "headless": True,
            "args": CHROMIUM_ARGS,
        },
        # The DOM keeps every <img src>; the browser need not fetch the photos
        # (the images pipeline downloads them once, over plain HTTP).
        "PLAYWRIGHT_ABORT_REQUEST": "phx_scraper.browser.abort_request",
    }


def abort_request(request: Any) -> bool:
    return bool(request.resource_type in ("image", "media", "font"))
