"""Shared fixtures: the replica of the sources, and real crawls against it in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from phx_scraper.sandbox.process import Sandbox
from phx_scraper.store.schema import validate

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")

# The replica answers at once; the live sites' politeness would only slow tests.
FAST = {
    "DOWNLOAD_DELAY": "0",
    "AUTOTHROTTLE_ENABLED": "False",
    "CONCURRENT_REQUESTS_PER_DOMAIN": "8",
    "LOG_LEVEL": "INFO",
}


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as running:
        yield running


@dataclass
class Crawl:
    returncode: int
    log: str
    stderr: str
    store: Path

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest, checked against its shipped JSON Schema every time a test reads it."""
        manifest: dict[str, Any] = json.loads((self.store / "manifest.json").read_text())
        assert validate(manifest) == []
        return manifest


def store_command(command: str, store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``scrapy <command> -s IMAGES_STORE=<store> ...`` (reconcile, cleanup...), in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "scrapy", command, "-s", f"IMAGES_STORE={store}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def run_crawl(
    sandbox: Sandbox,
    store: Path,
    spider: str,
    *args: str,
    settings: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> Crawl:
    """``scrapy crawl <spider>`` against the replica, in a subprocess."""
    log = store.parent / f"{store.name}-{spider}.log"
    merged = {
        **FAST,
        **sandbox.settings(),
        "IMAGES_STORE": str(store),
        "LOG_FILE": str(log),
        **(settings or {}),
    }
    command = [sys.executable, "-m", "scrapy", "crawl", spider]
    for arg in args:
        command += ["-a", arg]
    for key, value in merged.items():
        command += ["-s", f"{key}={value}"]
    full_env = {**os.environ, "PHX_MARICOPA_TOKEN": sandbox.token, **(env or {})}
    proc = subprocess.run(
        command, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    text = log.read_text() if log.exists() else ""
    return Crawl(proc.returncode, text, proc.stderr, store)
