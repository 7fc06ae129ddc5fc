"""``scrapy demo`` runs as a newcomer would run it, in an empty directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.crawl_checks import check_files


def test_demo_crawls_the_replica_and_prints_where_things_are(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SCRAPY_SETTINGS_MODULE": "phx_scraper.settings",
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "scrapy", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    store = tmp_path / "phx-demo" / "store"
    for label, path in [
        ("Store:", store),
        ("Manifest:", store / "manifest.json"),
        ("Log:", tmp_path / "phx-demo" / "crawl.log"),
        ("Report:", store / "report.html"),
    ]:
        assert f"{label}" in proc.stdout and str(path.resolve()) in proc.stdout
    manifest = json.loads((store / "manifest.json").read_text())
    assert len(manifest["properties"]) >= 25
    assert check_files(store, manifest)
    assert "photos stored" in proc.stdout and "failures by reason" in proc.stdout
