"""The benchmark in smoke mode: it runs and writes its JSON. Never a timed test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

VARIANTS = {"a", "b", "c", "d", "e"}


def test_smoke_run_writes_the_results(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench.py"),
            "--smoke",
            "--out",
            str(out),
            "--corpus-dir",
            str(tmp_path / "corpus"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["images"] == 50
    assert set(result["variants"]) == VARIANTS
    for figures in result["variants"].values():
        for key in ("images_per_s", "mb_per_s", "cpu_s_per_image", "peak_rss_mb", "wall_s"):
            assert isinstance(figures[key], int | float) and figures[key] >= 0
        assert figures["peak_rss_mb"] > 0
    assert {"a_over_b", "a_over_c", "a_over_d", "rerun_fraction"} <= set(result["ratios"])
    assert all(isinstance(v, float) for v in result["ratios"].values())
    assert result["problems"] == []
    # (a)-(d) fetched every photo URL once; the rerun on (a)'s store fetched none.
    urls = result["photo_urls"]
    for variant in ("a", "b", "c", "d"):
        assert result["variants"][variant]["downloaded"] == urls
    assert result["variants"]["e"]["downloaded"] == 0
    assert result["variants"]["e"]["served"] == 0
