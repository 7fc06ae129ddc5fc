"""A JOBDIR left by a crawl that did not stop cleanly is set aside, not trusted.

Scrapy warns that an unclean shutdown (SIGKILL, a crash, two Ctrl-C) can
corrupt a JOBDIR: a half-written request queue makes the next run lose
requests. Each crawl with a JOBDIR leaves ``phx.running`` there while it runs
(``extensions.jobdir.JobdirGuard``); finding it with its process gone means
the last stop was unclean, so the request queue and the seen-set are moved
aside (``*.unclean-<time>``) with a warning and the crawl starts from its
start requests. Nothing is lost: the store, the manifest, the URL index and
the deltafetch keys know what is done, so nothing stored is fetched again.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path

from phx_scraper.store.locks import pid_alive

MARKER = "phx.running"


class DamagedJobdir(Exception):
    pass


def check_jobdir(path: str | None) -> str | None:
    """Raise DamagedJobdir for what cannot be used; return a warning when set aside."""
    if not path:
        return None
    root = Path(path)
    state = root / "spider.state"
    if state.exists():
        try:
            with state.open("rb") as fh:
                pickle.load(fh)
        except Exception as exc:
            raise DamagedJobdir(
                f"JOBDIR {path} is damaged (spider.state: {exc.__class__.__name__}); delete it "
                "and run the same command again: the store knows what is done and nothing "
                "stored is downloaded again"
            ) from None
    marker = root / MARKER
    if not marker.exists():
        return None
    try:
        pid = int(json.loads(marker.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        pid = -1
    if pid > 0 and pid_alive(pid):
        raise DamagedJobdir(f"JOBDIR {path} is in use by a running crawl (PID {pid})")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    moved = []
    for name in ("requests.queue", "requests.seen"):
        if (root / name).exists():
            (root / name).rename(root / f"{name}.unclean-{stamp}")
            moved.append(name)
    marker.unlink()
    return (
        f"JOBDIR {path} was left by a crawl that did not stop cleanly (PID {pid}); "
        f"set aside {', '.join(moved) or 'nothing'} and starting from the addresses: "
        "the store knows what is done"
    )


def mark_running(path: str) -> None:
    Path(path).mkdir(parents=True, exist_ok=True)
    (Path(path) / MARKER).write_text(json.dumps({"pid": os.getpid()}))


def mark_stopped(path: str) -> None:
    (Path(path) / MARKER).unlink(missing_ok=True)
