"""Run the replica in a subprocess: for tests, ``scrapy demo`` and benchmarks.

    with Sandbox(faults=["zillow:block:2"]) as sandbox:
        settings = sandbox.settings()        # the seven PHX_* URL settings
        ...
        sandbox.requests("zillow")           # parsed request log
        sandbox.set_fault("redfin", "waf:1")  # replaces redfin's faults
        sandbox.clear_faults()

Only the standard library here: importing this module starts no reactor.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from phx_scraper.sandbox import requestlog

SOURCES = ("zillow", "redfin", "maricopa", "phoenix_mls")
DEFAULT_TOKEN = "sandbox-token-7f3a"
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class SandboxError(RuntimeError):
    pass


class Sandbox:
    def __init__(
        self,
        faults: Iterable[str] = (),
        maricopa_token: str = DEFAULT_TOKEN,
        request_log: Path | None = None,
        cache_dir: Path | None = None,
        port: int = 0,
        startup_timeout: float = 30.0,
    ) -> None:
        self.faults = list(faults)
        self.token = maricopa_token
        self.cache_dir = cache_dir
        self.port = port
        self.startup_timeout = startup_timeout
        self._tmp: str | None = None
        self.request_log = request_log
        self.server_log: Path | None = None
        self.urls: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None

    # --- lifecycle ---
    def start(self) -> Sandbox:
        self._tmp = tempfile.mkdtemp(prefix="phx-sandbox-")
        if self.request_log is None:
            self.request_log = Path(self._tmp) / "requests.jsonl"
        self.server_log = Path(self._tmp) / "server.log"
        cmd = [sys.executable, "-m", "phx_scraper.sandbox", "--port", str(self.port)]
        cmd += ["--request-log", str(self.request_log), "--maricopa-token", self.token]
        for spec in self.faults:
            cmd += ["--fault", spec]
        if self.cache_dir is not None:
            cmd += ["--cache-dir", str(self.cache_dir)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(_PROJECT_ROOT), env.get("PYTHONPATH")])
        )
        with self.server_log.open("wb") as stderr:
            self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, env=env)
        self.urls = self._read_urls()
        return self

    def _read_urls(self) -> dict[str, str]:
        assert self._proc is not None and self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], self.startup_timeout)
        line = self._proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise SandboxError(f"sandbox did not start: {self.server_text()[-2000:]}")
        return dict(json.loads(line))

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

    def close(self) -> None:
        """Stop and remove the temp dir (request log included unless given)."""
        self.stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def server_text(self) -> str:
        return (
            self.server_log.read_text(errors="replace")
            if self.server_log and self.server_log.exists()
            else ""
        )

    # --- what clients need ---
    def settings(self) -> dict[str, str]:
        zillow, redfin = self.urls["zillow"], self.urls["redfin"]
        maricopa, mls = self.urls["maricopa"], self.urls["phoenix_mls"]
        return {
            "PHX_ZILLOW_BASE_URL": zillow,
            "PHX_ZILLOW_AUTOCOMPLETE_URL": zillow + "/autocomplete/v3/suggestions",
            "PHX_REDFIN_BASE_URL": redfin,
            "PHX_MARICOPA_API_URL": maricopa,
            "PHX_MARICOPA_GIS_URL": maricopa
            + "/arcgis/rest/services/MaricopaDynamicQueryService/MapServer/3",
            "PHX_MARICOPA_AERIAL_URL": maricopa + "/arcgis/rest/services/Aerials/MapServer",
            "PHX_MLS_BASE_URL": mls,
        }

    # --- request log ---
    def requests(self, source: str | None = None) -> list[dict[str, Any]]:
        assert self.request_log is not None, "not started"
        return requestlog.read(self.request_log, source)

    def clear_requests(self) -> None:
        # The server appends with O_APPEND, so truncating in place is safe.
        if self.request_log is not None and self.request_log.exists():
            os.truncate(self.request_log, 0)

    def wait_for_requests(
        self, count: int, source: str | None = None, timeout: float = 5.0
    ) -> list[dict]:
        """The log is written after each response: wait until it has caught up."""
        deadline = time.monotonic() + timeout
        while True:
            entries = self.requests(source)
            if len(entries) >= count or time.monotonic() > deadline:
                return entries
            time.sleep(0.02)

    # --- faults at runtime ---
    def set_faults(self, source: str, specs: list[str]) -> list[str]:
        """Replace ``source``'s faults (specs without the source prefix, e.g. ``"503:2"``)."""
        body = json.dumps({"faults": specs}).encode()
        request = urllib.request.Request(
            self.urls[source] + "/__sandbox__/faults",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return list(json.load(response)["faults"])
        except urllib.error.HTTPError as exc:
            raise SandboxError(exc.read().decode(errors="replace")) from exc

    def set_fault(self, source: str, spec: str) -> list[str]:
        return self.set_faults(source, [spec])

    def clear_faults(self, source: str | None = None) -> None:
        for name in [source] if source else list(SOURCES):
            self.set_faults(name, [])
