"""store/history.py (run records, retention, change logs), ``scrapy runs`` and ``scrapy show``."""

from __future__ import annotations

import copy
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from phx_scraper.addresses import canonicalize
from phx_scraper.sandbox import dataset
from phx_scraper.sandbox.process import Sandbox
from phx_scraper.store import history, manifest
from phx_scraper.store.history import (
    RunRecordError,
    change_log,
    list_runs,
    redact,
    scan_runs,
    write_changes,
    write_run,
)
from tests.conftest import run_crawl, store_command

ROOT = Path(__file__).resolve().parent.parent
ADDRESS = canonicalize("4560 E Sunrise Dr, Phoenix, AZ 85044")


def record(run_id: str, minute: int = 0, **extra: Any) -> dict[str, Any]:
    """A run record finished ``minute`` minutes after 10:00, in build_summary's shape."""
    return {
        "run_id": run_id,
        "spider": "zillow",
        "sources": {
            "zillow": {
                "status_ok": 2,
                "photos_listed": 5,
                "photos_stored": 4,
                "photos_downloaded": 3,
                "photos_rejected": 1,
            }
        },
        "arguments": {"address": "4560 E Sunrise Dr, Phoenix, AZ 85044"},
        "started_at": f"2026-11-25T{10 + minute // 60:02d}:{minute % 60:02d}:00Z",
        "finished_at": f"2026-11-25T{10 + minute // 60:02d}:{minute % 60:02d}:30Z",
        "finish_reason": "finished",
        "properties": 2,
        **extra,
    }


def run_id(n: int) -> str:
    return f"{n:08x}"


def record_ids(store: Path) -> set[str]:
    return {run.run_id for run in scan_runs(store).runs}


# -- retention ----------------------------------------------------------------


def test_retention_keeps_the_newest_and_prunes_companions(tmp_path: Path) -> None:
    for n in range(105):
        rid = run_id(n)
        (tmp_path / "runs").mkdir(exist_ok=True)
        (tmp_path / "runs" / f"{rid}.reconcile.json").write_text("{}\n")
        write_changes(tmp_path, rid, [])
        write_run(tmp_path, record(rid, minute=n), keep=100)
    assert record_ids(tmp_path) == {run_id(n) for n in range(5, 105)}
    names = {p.name for p in (tmp_path / "runs").iterdir()}
    for n in range(5):
        assert not any(name.startswith(run_id(n)) for name in names)
    assert f"{run_id(5)}.reconcile.json" in names and f"{run_id(104)}.changes.json" in names
    assert len(names) == 300
    runs = list_runs(tmp_path)
    assert [r["run_id"] for r in runs[:2]] == [run_id(104), run_id(103)]
    assert runs[-1]["run_id"] == run_id(5)


def test_order_is_finished_at_not_write_order(tmp_path: Path) -> None:
    # Written newest first: the oldest finished_at are pruned, except the one
    # being written, which always counts as the newest.
    for n in (50, 40, 30, 20):
        write_run(tmp_path, record(run_id(n), minute=n), keep=3)
    assert record_ids(tmp_path) == {run_id(50), run_id(40), run_id(20)}
    assert [r["run_id"] for r in list_runs(tmp_path)] == [run_id(50), run_id(40), run_id(20)]


def test_records_without_finished_at_are_ordered_by_mtime(tmp_path: Path) -> None:
    # Records written before this module (build_summary only) have no times.
    runs = tmp_path / "runs"
    runs.mkdir()
    for n in range(3):
        legacy = runs / f"{run_id(n)}.json"
        legacy.write_text(json.dumps({"run_id": run_id(n), "spider": "zillow"}))
        os.utime(legacy, (1_000_000 + n, 1_000_000 + n))
    write_run(tmp_path, record("ffffffff"), keep=3)
    assert record_ids(tmp_path) == {run_id(1), run_id(2), "ffffffff"}


def test_keep_zero_keeps_everything(tmp_path: Path) -> None:
    for n in range(5):
        write_run(tmp_path, record(run_id(n), minute=n), keep=0)
    assert len(record_ids(tmp_path)) == 5


def test_rewriting_a_run_replaces_it(tmp_path: Path) -> None:
    write_run(tmp_path, record("aaaaaaaa", minute=1), keep=2)
    write_run(tmp_path, record("bbbbbbbb", minute=2), keep=2)
    write_run(tmp_path, record("bbbbbbbb", minute=3, finish_reason="shutdown"), keep=2)
    assert record_ids(tmp_path) == {"aaaaaaaa", "bbbbbbbb"}
    assert list_runs(tmp_path)[0]["finish_reason"] == "shutdown"


def test_files_that_are_not_records_are_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    strangers = {
        "deadbeef.json": "{not json",
        "cafebabe.json": json.dumps({"run_id": "someone-else"}),
        "notes.txt": "hello",
        ".tmp-12345678.json.99.abcd": '{"run_id": "1234',
        "0badf00d.reconcile.json": "{}",  # a repair's report: no run record
    }
    for name, text in strangers.items():
        (runs / name).write_text(text)
    with caplog.at_level(logging.WARNING, logger=history.__name__):
        for n in range(4):
            write_run(tmp_path, record(run_id(n), minute=n), keep=2)
        listed = list_runs(tmp_path)
    assert [r["run_id"] for r in listed] == [run_id(3), run_id(2)]
    for name, text in strangers.items():
        assert (runs / name).read_text() == text
    assert "deadbeef.json: not valid JSON" in caplog.text
    assert "cafebabe.json: not a run record" in caplog.text
    assert "notes.txt" not in caplog.text and ".tmp-" not in caplog.text
    assert len(scan_runs(tmp_path).corrupt) == 2


def test_bad_records_are_refused_with_every_problem(tmp_path: Path) -> None:
    with pytest.raises(RunRecordError) as caught:
        write_run(tmp_path, {"run_id": "../etc", "spider": "zillow", "started_at": "yesterday"})
    message = str(caught.value)
    for problem in ("run_id '../etc'", "missing 'sources'", "missing 'finished_at'", "started_at"):
        assert problem in message
    with pytest.raises(RunRecordError, match="JSON-serializable"):
        write_run(tmp_path, record("aaaaaaaa", stats={"start": object()}))
    with pytest.raises(RunRecordError):
        write_changes(tmp_path, "a.b", [])
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


KILLED_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from phx_scraper.store.history import write_changes, write_run

    root = Path(sys.argv[1])
    start = int(sys.argv[2])
    for n in range(start, start + 100000):
        rid = f"{n:08x}"
        write_run(root, {
            "run_id": rid, "spider": "zillow", "sources": {}, "arguments": {},
            "started_at": "2026-11-25T10:00:00Z",
            "finished_at": f"2026-11-25T10:00:00.{n:06d}+00:00",
            "finish_reason": "finished", "padding": "x" * 20000,
        }, keep=10)
        write_changes(root, rid, [])
        if n == start:
            print("ready", flush=True)
    """
)


def test_sigkill_during_appends_leaves_a_valid_bounded_history(tmp_path: Path) -> None:
    # Each write takes a few milliseconds (two fsyncs), so these delays land
    # at different points of a write or a prune.
    for round_, delay in enumerate((0.05, 0.31, 0.17)):
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER, str(tmp_path), str(round_ * 100000)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
            time.sleep(delay)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL

        scan = scan_runs(tmp_path)
        assert scan.corrupt == []
        assert 1 <= len(scan.runs) <= 10
        kept = {run.run_id for run in scan.runs}
        for path in (tmp_path / "runs").iterdir():
            if not path.name.startswith(".tmp-"):
                json.loads(path.read_text())  # no partial file under a final name
                # Record first, companions after; pruned companions first, record
                # after: a kill never strands a companion.
                assert path.name.split(".")[0] in kept
        assert len(list_runs(tmp_path)) == len(scan.runs)

    write_run(tmp_path, record("ffffffff", minute=0), keep=10)
    assert len(record_ids(tmp_path)) <= 10 and "ffffffff" in record_ids(tmp_path)


# -- redaction ----------------------------------------------------------------


def test_redact_masks_secret_names_and_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHX_MARICOPA_TOKEN", "s3cr3t-token")
    arguments = {
        "address": "4560 E Sunrise Dr, Phoenix, AZ 85044",
        "api_token": "abc",
        "Password": "hunter2",
        "client_secret": "x",
        "Authorization": "Bearer y",
        "apikey": "z",
        "note": "s3cr3t-token",
        "url": "https://example.test/?t=s3cr3t-token",
        "settings": {"PHX_SOME_KEY": "k", "depth": 2, "list": ["s3cr3t-token", "ok"]},
        "force": "1",
    }
    assert redact(arguments) == {
        "address": "4560 E Sunrise Dr, Phoenix, AZ 85044",
        "api_token": "***",
        "Password": "***",
        "client_secret": "***",
        "Authorization": "***",
        "apikey": "***",
        "note": "***",
        "url": "***",
        "settings": {"PHX_SOME_KEY": "***", "depth": 2, "list": ["***", "ok"]},
        "force": "1",
    }
    assert arguments["api_token"] == "abc"  # the input is not changed


def test_redact_without_a_token_masks_no_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PHX_MARICOPA_TOKEN", raising=False)
    assert redact({"address": "", "force": "1"}) == {"address": "", "force": "1"}


# -- change log ---------------------------------------------------------------


def image(md5: str, url: str, photo_id: str | None = None) -> dict[str, Any]:
    """A stored image as the pipeline reports it in an item."""
    return {
        "md5": md5,
        "path": f"full/{md5[:2]}/{md5}.jpg",
        "source_md5": md5,
        "width": 1024,
        "height": 768,
        "bytes": 1000,
        "phash": "0" * 16,
        "dhash": "0" * 16,
        "thumbs": {},
        "url": url,
        "photo_id": photo_id or url.rsplit("/", 1)[-1],
        "status": "uptodate",
    }


def item(
    run: str,
    source: str,
    images: list[dict[str, Any]],
    status: str = "ok",
    rejected: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    return {
        "run_id": run,
        "source": source,
        "property_hash": ADDRESS.property_hash,
        "address": ADDRESS.raw,
        "canonical_address": ADDRESS.canonical,
        "status": status,
        "reason": None if status == "ok" else "captcha",
        "source_id": "8142157",
        "photos": [{"url": i["url"], "position": n} for n, i in enumerate(images)],
        "images": images,
        "rejected": list(rejected),
    }


def merged(before: manifest.Manifest, *items: dict[str, Any]) -> manifest.Manifest:
    after = copy.deepcopy(before)
    for one in items:
        manifest.merge_record(after, one)
    return after


def md5(c: str) -> str:
    return c * 32


Z = "https://photos.zillowstatic.com/fp/"


def logged(
    root: Path,
    previous: manifest.Manifest | None,
    current: manifest.Manifest,
    run: str,
    covered: set[tuple[str, str]],
) -> dict[str, Any]:
    """The change log of ``run`` as ``write_changes`` writes it, read back."""
    totals = write_changes(root, run, change_log(previous, current, run, covered))
    log: dict[str, Any] = json.loads((root / "runs" / f"{run}.changes.json").read_text())
    assert log["totals"] == totals
    return log


def test_change_log_added_removed_changed(tmp_path: Path) -> None:
    key = ADDRESS.property_hash
    r0 = merged(
        manifest.empty(),
        item(
            "r0",
            "zillow",
            [
                image(md5("a"), Z + "a"),
                image(md5("b"), Z + "b"),
                image(md5("c"), Z + "c"),
                image(md5("d"), Z + "d"),
                image(md5("6"), Z + "g"),
                image(md5("7"), Z + "h1", photo_id="ph"),
            ],
        ),
    )
    first = logged(tmp_path, None, r0, "r0", {(key, "zillow")})
    zillow = first["properties"][key]["sources"]["zillow"]
    assert zillow["previous_run"] is None and zillow["complete"] is True
    assert len(zillow["added"]) == 6 and zillow["removed"] == zillow["changed"] == []
    assert zillow["added"][0] == {"md5": md5("6"), "urls": [Z + "g"]}

    # r1: d is gone (reported by r1, not again by r2); redfin lists one photo.
    r1 = merged(
        r0,
        item(
            "r1",
            "zillow",
            [
                image(md5("a"), Z + "a"),
                image(md5("b"), Z + "b"),
                image(md5("c"), Z + "c"),
                image(md5("6"), Z + "g"),
                image(md5("7"), Z + "h1", photo_id="ph"),
            ],
        ),
        item("r1", "redfin", [image(md5("f"), "https://ssl.cdn-redfin.com/f")]),
    )
    assert logged(tmp_path, r0, r1, "r1", {(key, "zillow")})["totals"] == {
        "added": 0,
        "removed": 1,
        "changed": 0,
    }

    # r2: b's URL gives new bytes, h moved to a new URL with the same photo_id
    # and new bytes, c is no longer listed, e is new, g was listed but its
    # download failed (not removed); redfin blocked us (nothing is removed).
    r2 = merged(
        r1,
        item(
            "r2",
            "zillow",
            [
                image(md5("a"), Z + "a"),
                image(md5("9"), Z + "b"),
                image(md5("8"), Z + "h2", photo_id="ph"),
                image(md5("e"), Z + "e"),
            ],
            rejected=({"url": Z + "g", "photo_id": "g", "reason": "download_error"},),
        ),
        item("r2", "redfin", [], status="blocked"),
    )
    log = logged(tmp_path, r1, r2, "r2", {(key, "zillow"), (key, "redfin")})
    assert log["run_id"] == "r2"
    assert log["properties"][key]["canonical_address"] == ADDRESS.canonical
    zillow = log["properties"][key]["sources"]["zillow"]
    assert zillow["status"] == "ok" and zillow["previous_run"] == "r1" and zillow["complete"]
    assert zillow["added"] == [{"md5": md5("e"), "urls": [Z + "e"]}]
    assert zillow["removed"] == [{"md5": md5("c"), "urls": [Z + "c"]}]
    assert zillow["changed"] == [
        {
            "url": Z + "b",
            "old_url": Z + "b",
            "photo_id": "b",
            "old_md5": md5("b"),
            "new_md5": md5("9"),
        },
        {
            "url": Z + "h2",
            "old_url": Z + "h1",
            "photo_id": "ph",
            "old_md5": md5("7"),
            "new_md5": md5("8"),
        },
    ]
    redfin = log["properties"][key]["sources"]["redfin"]
    assert redfin["status"] == "blocked" and redfin["complete"] is False
    assert redfin["added"] == redfin["removed"] == redfin["changed"] == []
    assert log["totals"] == {"added": 1, "removed": 1, "changed": 2}

    # r3: redfin answers again with no photos: compared with everything known
    # from it, since r2 read nothing.
    r3 = merged(r2, item("r3", "redfin", [], status="no_photos"))
    r3_log = logged(tmp_path, r2, r3, "r3", {(key, "redfin")})
    redfin = r3_log["properties"][key]["sources"]["redfin"]
    assert redfin["previous_run"] == "r2" and redfin["complete"]
    assert redfin["removed"] == [{"md5": md5("f"), "urls": ["https://ssl.cdn-redfin.com/f"]}]

    # One line per property, keys in order: the file is what json.dumps would give.
    text = (tmp_path / "runs" / "r2.changes.json").read_text()
    assert text.splitlines()[2].startswith(f'  "{key}": {{"canonical_address":')
    assert list(log) == ["properties", "run_id", "totals"]


def test_a_crawl_writes_its_change_log_and_its_totals_in_its_record(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    csv = tmp_path / "homes.csv"
    keys = ["sunrise", "caminito", "ivanhoe"]
    csv.write_text("address\n" + "".join(f'"{dataset.property_by_key(k).address}"\n' for k in keys))
    store = tmp_path / "store"
    for _ in range(2):
        crawl = run_crawl(sandbox, store, "redfin", f"addresses={csv}", "force=1")
        assert crawl.returncode == 0, crawl.stderr
    first, second = sorted(scan_runs(store).runs, key=lambda run: run.order)
    stored = {key: len(prop["images"]) for key, prop in crawl.manifest["properties"].items()}
    for run, added in ((first, sum(stored.values())), (second, 0)):
        log = json.loads((store / "runs" / f"{run.run_id}.changes.json").read_text())
        assert log["run_id"] == run.run_id and set(log["properties"]) == set(stored)
        assert (
            run.record["changes"] == log["totals"] == {"added": added, "removed": 0, "changed": 0}
        )


# -- the commands -------------------------------------------------------------


scrapy = store_command


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    write_run(
        root,
        record(
            "1a2b3c4d",
            minute=1,
            breaker={"zillow": {"requests": 10, "blocks": 2, "trips": 1}},
            reconcile={"errors": 0, "warnings": 3},
        ),
    )
    write_run(root, record("5e6f7a8b", minute=2, spider="all", finish_reason="shutdown"))
    prop = merged(
        manifest.empty(),
        item(
            "1a2b3c4d",
            "zillow",
            [image(md5("a"), Z + "a"), image(md5("b"), Z + "b"), image(md5("c"), Z + "c")],
            rejected=({"url": Z + "x", "photo_id": "x", "reason": "truncated"},),
        ),
        item("1a2b3c4d", "redfin", [], status="blocked"),
    )
    images = prop["properties"][ADDRESS.property_hash]["images"]
    for one in images:
        one["group"], one["best"] = None, True
    images[0]["group"] = images[1]["group"] = "g" + md5("a")[:12]
    images[1]["best"] = False
    manifest.save(root, prop)
    return root


def test_runs_command_lists_newest_first(store: Path) -> None:
    done = scrapy("runs", store)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("5e6f7a8b  2026-11-25T10:02:30Z  all")
    assert "shutdown" in lines[0] and "store check -" in lines[0]
    assert lines[1].startswith("1a2b3c4d  2026-11-25T10:01:30Z  zillow")
    assert "2 properties" in lines[1]
    assert "photos 4 stored, 3 downloaded, 1 rejected  blocks 2" in lines[1]
    assert lines[1].endswith("store check 0 errors, 3 warnings")

    limited = scrapy("runs", store, "--limit", "1", "--json")
    assert limited.returncode == 0, limited.stderr
    [only] = json.loads(limited.stdout)
    assert only["run_id"] == "5e6f7a8b" and only["photos_stored"] == 4


def test_runs_command_tolerates_damage_and_reports_bad_use(store: Path, tmp_path: Path) -> None:
    (store / "runs" / "deadbeef.json").write_text("{half")
    damaged = scrapy("runs", store)
    assert damaged.returncode == 0 and len(damaged.stdout.splitlines()) == 2
    assert damaged.stderr.startswith("warning: ") and "deadbeef.json" in damaged.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    none = scrapy("runs", empty)
    assert none.returncode == 0 and none.stdout.startswith("No runs recorded in ")

    missing = scrapy("runs", tmp_path / "nowhere")
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0
    assert scrapy("runs", store, "--limit", "0").returncode == 2


def test_show_command_readable_and_json(store: Path) -> None:
    key = ADDRESS.property_hash
    done = scrapy("show", store, key.upper())
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ADDRESS.raw
    assert f"  canonical address  {ADDRESS.canonical}" in lines
    assert f"  property_hash      {key}" in lines
    assert any(line.startswith("  redfin       blocked (captcha)") for line in lines)
    zillow = next(line for line in lines if line.startswith("  zillow "))
    assert "id 8142157" in zillow and "photos expected -, listed 3, stored 3" in zillow
    assert "run 1a2b3c4d" in zillow
    assert "images: 3 stored, 1 near-duplicate group" in lines
    group = lines.index(f"  group g{md5('a')[:12]} (2 images)")
    assert lines[group + 1].startswith(f"    * {md5('a')}  1024x768  1000 bytes  zillow:a")
    assert lines[group + 2].startswith(f"      {md5('b')}")
    assert "  no near-duplicate (1 image)" in lines
    assert "rejected: 1" in lines and any("truncated" in line for line in lines)

    as_json = scrapy("show", store, "--json", key)
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout) == manifest.load(store)["properties"][key]

    # Any spelling of the address, quoted or not.
    by_address = scrapy("show", store, "4560", "East", "Sunrise", "Drive,", "Phoenix,", "AZ 85044")
    assert by_address.returncode == 0 and by_address.stdout == done.stdout


def test_show_command_unknown_and_bad_input(store: Path, tmp_path: Path) -> None:
    unknown = scrapy("show", store, "00000000")
    assert unknown.returncode == 1
    assert unknown.stderr.strip().count("\n") == 0 and "no property 00000000" in unknown.stderr
    elsewhere = scrapy("show", store, "1 W Washington St, Phoenix, AZ 85003")
    assert elsewhere.returncode == 1 and "1 W WASHINGTON ST" in elsewhere.stderr

    bad = scrapy("show", store, "not an address")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "cannot parse address" in bad.stderr
    no_manifest = scrapy("show", tmp_path / "nowhere", ADDRESS.property_hash)
    assert no_manifest.returncode == 2 and "no manifest" in no_manifest.stderr
