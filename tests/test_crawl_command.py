"""``scrapy crawl`` refuses bad input with one line and exit status 2, before any request."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def crawl(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    store = tmp_path / "store"
    command = [sys.executable, "-m", "scrapy", "crawl", *args, "-s", f"IMAGES_STORE={store}"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["zillow", "-a", "addresses=missing.csv"], "error: missing.csv: no such file"),
        (["zillow"], "error: no address given: use -a addresses=FILE.csv"),
        (
            ["zillow", "-a", "address=4560 E Sunrise Dr, Phoenix, AZ 85044", "-a", "force=maybe"],
            "error: -a force='maybe': expected 1/0, true/false or yes/no",
        ),
        (
            [
                "all",
                "-a",
                "address=4560 E Sunrise Dr, Phoenix, AZ 85044",
                "-a",
                "sources=zillow,mars",
            ],
            "error: -a sources='zillow,mars': unknown source(s) mars; choose from zillow, redfin,"
            " maricopa, phoenix_mls",
        ),
        (
            [
                "zillow",
                "-a",
                "address=4560 E Sunrise Dr, Phoenix, AZ 85044",
                "-s",
                "PHX_LOCK_LEASE=0.1",
            ],
            "error: PHX_LOCK_LEASE='0.1': expected a number of seconds, at least 1",
        ),
    ],
)
def test_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    proc = crawl(tmp_path, *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr
    assert not (tmp_path / "store").exists()


def test_malformed_csv_names_file_and_rows(tmp_path: Path) -> None:
    csv = tmp_path / "homes.csv"
    csv.write_text("address\n4560 E Sunrise Dr, Phoenix, AZ 85044\n12 Nowhere\n")
    proc = crawl(tmp_path, "zillow", "-a", f"addresses={csv}")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {csv}:3: cannot parse address")
    assert not (tmp_path / "store").exists()
