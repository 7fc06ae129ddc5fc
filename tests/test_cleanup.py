"""store/cleanup.py and ``scrapy cleanup``.

One fixed store (three properties, shared and missing images, orphans, temp
files, run history, quarantine) with backdated mtimes; time is injected as
``NOW``, far enough ahead of the clock that ctimes (which os.utime cannot set)
are old too. Each test works on its own copy.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from phx_scraper.addresses import canonicalize
from phx_scraper.store import cleanup, history
from phx_scraper.store import manifest as manifest_store
from phx_scraper.store.cleanup import DAY, CleanupRefused, Options, apply, plan
from phx_scraper.store.files import md5_hex
from phx_scraper.store.quota import measure
from phx_scraper.store.reconcile import reconcile
from phx_scraper.store.schema import validate
from phx_scraper.store.urlindex import INDEX_PATH, IndexEntry, UrlIndex
from tests.conftest import store_command

ROOT = Path(__file__).resolve().parent.parent
NOW = float((int(time.time()) // 86400 + 400) * 86400)
RUN = "1a2b3c4d"

A = canonicalize("4560 E Sunrise Dr, Phoenix, AZ 85044")  # seen 2 days ago
B = canonicalize("1234 N 1st St Unit 410, Phoenix, AZ 85004")  # seen 60 days ago
C = canonicalize("200 W Washington St, Phoenix, AZ 85003")  # seen 100 days ago
SEEN_DAYS = {A: 2, B: 60, C: 100}

# name -> size of its bytes; a content file's md5 comes from these bytes.
SIZES = {"a1": 3000, "a2": 2000, "b1": 4000, "c1": 5000, "m1": 2500, "o1": 1500, "o2": 1200}
# Which images each property has; m1 is in C's "missing" list (no file).
IMAGES = {A: ["a1", "a2"], B: ["a1", "b1"], C: ["c1"]}


TEMP = "full/00/.tmp-00112233445566778899aabbccddeeff.jpg.123.abcd"


def data(name: str, size: int) -> bytes:
    return (name.encode() * size)[:size]


def md5(name: str) -> str:
    return md5_hex(data(name, SIZES.get(name, 100)))


def full(name: str) -> str:
    return f"full/{md5(name)[:2]}/{md5(name)}.jpg"


def thumb(name: str) -> str:
    return f"thumbs/256/{md5(name)}.jpg"


def original(name: str) -> str:
    src = md5_hex(data(f"src-{name}", 700))
    return f"originals/{src[:2]}/{src}.jpg"


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def put(root: Path, rel: str, content: bytes, age_days: float, now: float = NOW) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    t = now - age_days * DAY
    os.utime(path, (t, t))


def image_entry(name: str) -> dict[str, Any]:
    origin = {
        "source": "zillow",
        "url": f"https://photos.zillowstatic.com/fp/{name}.jpg",
        "photo_id": name,
        "position": 0,
        "caption": "",
        "listing_id": None,
        "first_seen_run": RUN,
        "last_seen_run": RUN,
    }
    return {
        "md5": md5(name),
        "path": full(name),
        "thumbs": {"256": thumb(name)},
        "source_md5": md5_hex(data(f"src-{name}", 700)),
        "width": 1024,
        "height": 768,
        "bytes": SIZES[name],
        "phash": "0" * 16,
        "dhash": "0" * 16,
        "group": None,
        "best": True,
        "origins": [origin],
        "first_seen_run": RUN,
        "last_seen_run": RUN,
    }


def property_entry(address: Any, now: float) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "property_hash": address.property_hash,
        "address": address.raw,
        "canonical_address": address.canonical,
        "sources": {
            "zillow": {
                "status": "ok",
                "reason": None,
                "id": "1",
                "ids": {},
                "run_id": RUN,
                "time": iso(now - SEEN_DAYS[address] * DAY),
                "photos_expected": None,
                "photos_listed": len(IMAGES[address]),
                "photos_stored": len(IMAGES[address]),
                "facts": {},
            }
        },
        "images": [image_entry(name) for name in IMAGES[address]],
        "rejected": [],
    }
    if address == C:
        missing = image_entry("m1")
        entry["missing"] = [
            {
                "md5": missing["md5"],
                "path": missing["path"],
                "reason": "ghost",
                "found_at": iso(now - 90 * DAY),
                "origins": missing["origins"],
            }
        ]
    return entry


def run_record(run_id: str, minute: int) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "spider": "zillow",
        "sources": {},
        "arguments": {},
        "started_at": f"2026-11-25T10:{minute:02d}:00Z",
        "finished_at": f"2026-11-25T10:{minute:02d}:30Z",
        "finish_reason": "finished",
    }


def build_store(root: Path, now: float = NOW) -> Path:
    """The fixed store; every referenced file is old, so only references protect it."""
    for names in IMAGES.values():
        for name in names:
            put(root, full(name), data(name, SIZES[name]), 100, now)
            put(root, thumb(name), data(f"thumb-{name}", 300), 100, now)
    put(root, original("b1"), data("src-b1", 700), 100, now)  # only b1 kept its original
    put(root, thumb("m1"), data("thumb-m1", 300), 100, now)  # kept for when m1 is stored again
    # Orphans: one past the grace period, one inside it.
    put(root, full("o1"), data("o1", SIZES["o1"]), 20, now)
    put(root, full("o2"), data("o2", SIZES["o2"]), 13, now)
    put(root, thumb("ot"), data("thumb-ot", 300), 20, now)
    put(root, original("oo"), data("src-oo", 700), 20, now)
    # Temp files: a crash's leftover, and a write in progress.
    put(root, TEMP, b"x" * 50, 20, now)
    put(root, "runs/.tmp-5e6f7a8b.json.456.ef01", b"{}", 1, now)
    manifest = manifest_store.empty()
    for address in (A, B, C):
        manifest["properties"][address.property_hash] = property_entry(address, now)
    assert validate(manifest) == []
    manifest_store.save(root, manifest)
    index = UrlIndex(root)
    for name in ("a1", "a2", "b1", "c1", "o1"):
        url = f"https://photos.zillowstatic.com/fp/{name}.jpg"
        row = (url, md5(name), md5(name), full(name), 1024, 768, SIZES[name], "0", "0", 1.0)
        index.put(IndexEntry(*row))
    index.close()
    # Run history: four records (r1 oldest), companions, reports of repairs, a damaged file.
    for n, run_id in enumerate(("00000001", "00000002", "00000003", "00000004"), start=1):
        history.write_run(root, run_record(run_id, n), keep=0)
    put(root, "runs/00000001.changes.json", b"{}\n", 30, now)
    put(root, "runs/00000001.reconcile.json", b"{}\n", 30, now)
    put(root, "runs/00000003.report.html", b"<html></html>\n", 10, now)
    for run_id, age in (("0badf00d", 10), ("0badf00e", 5), ("0badf00f", 1)):
        put(root, f"runs/{run_id}.reconcile.json", b'{"repair": true}\n', age, now)
    put(root, "runs/deadbeef.json", b"not json", 50, now)
    put(root, "runs/deadbeef.changes.json", b"{}\n", 50, now)
    # Quarantine: one quarantined 40 days ago, one 5 days ago.
    put(root, f"quarantine/{md5('q1')}.jpg", data("q1", 900), 40, now)
    put(root, f"quarantine/{md5('q2')}.jpg", data("q2", 800), 5, now)
    return root


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_store(tmp_path_factory.mktemp("pristine") / "store")


@pytest.fixture
def store(pristine: Path, tmp_path: Path) -> Path:
    # copy2 keeps the backdated mtimes.
    return Path(shutil.copytree(pristine, tmp_path / "store", copy_function=shutil.copy2))


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "locks" not in p.relative_to(root).parts
    }


# -- the plan ----------------------------------------------------------------

EVERYTHING = Options(
    orphans=True,
    temp=True,
    not_seen_days=30,
    keep_runs=2,
    quarantine_days=30,
)


def record_size(run_id: str, minute: int) -> int:
    return len(json.dumps(run_record(run_id, minute), indent=1, sort_keys=True)) + 1


def expected_plan() -> list[tuple[str, str, int, str]]:
    """(reason, path, bytes, detail) of EVERYTHING on the fixed store, in the plan's order."""
    b, c = B.property_hash, C.property_hash
    keep = "keeping the newest 2"
    run1 = "run 00000001 (finished 2026-11-25T10:01:30Z)"
    run2 = "run 00000002 (finished 2026-11-25T10:02:30Z)"
    aged = "unchanged for 20.0 days"
    return [
        ("orphan", full("o1"), 1500, f"no manifest image; {aged}"),
        ("orphan_thumb", thumb("ot"), 300, f"a thumbnail of no manifest image; {aged}"),
        ("orphan_original", original("oo"), 700, f"the original of no manifest image; {aged}"),
        ("temp", TEMP, 50, f"temporary file {aged}"),
        # C (the oldest unseen) goes, with the thumbnail kept for its missing m1.
        ("property", full("c1"), 5000, f"image of dropped property {c}"),
        *sorted([
            ("property", thumb("c1"), 300, f"thumbnail of dropped property {c}"),
            ("property", thumb("m1"), 300, f"thumbnail of dropped property {c}"),
        ]),
        # B goes; a1 stays for A.
        ("property", full("b1"), 4000, f"image of dropped property {b}"),
        ("property", thumb("b1"), 300, f"thumbnail of dropped property {b}"),
        ("property", original("b1"), 700, f"original of dropped property {b}"),
        ("run", "runs/00000002.json", record_size("00000002", 2), f"{run2}; {keep}"),
        ("run", "runs/00000001.changes.json", 3, f"report of {run1}; {keep}"),
        ("run", "runs/00000001.reconcile.json", 3, f"report of {run1}; {keep}"),
        ("run", "runs/00000001.json", record_size("00000001", 1), f"{run1}; {keep}"),
        ("report", "runs/0badf00d.reconcile.json", 17, f"report of no run record; {keep}"),
        ("quarantine", f"quarantine/{md5('q1')}.jpg", 900, "quarantined 40.0 days ago"),
    ]  # fmt: skip


def as_tuples(made: cleanup.Plan) -> list[tuple[str, str, int, str]]:
    return [(i.reason, i.path, i.bytes, i.detail) for i in made.items]


def damage(root: Path) -> None:
    """What cleanup must leave alone: a corrupt unreferenced file, a stray file, a symlink."""
    put(root, full("o3"), b"not the bytes its name says", 200)
    put(root, "full/zz/notes.txt", b"a person's notes", 200)
    (root / "full" / md5("o4")[:2]).mkdir(parents=True, exist_ok=True)
    os.symlink(root / full("o1"), root / full("o4"))


def test_fixed_store_gives_exactly_the_expected_plan(store: Path) -> None:
    damage(store)
    made = plan(store, EVERYTHING, now=NOW)
    assert as_tuples(made) == expected_plan()
    assert [(d.property_hash, d.reason, d.images, d.shared) for d in made.drops] == [
        (C.property_hash, "not_seen", 1, 0),
        (B.property_hash, "not_seen", 2, 1),
    ]
    assert made.drops[1].detail == (f"not seen for 60.0 days (last seen {iso(NOW - 60 * DAY)})")
    assert made.properties == 3 and not made.empties_store
    assert made.bytes_freed == sum(size for _, _, size, _ in expected_plan())
    assert made.totals()["property"] == {"files": 6, "bytes": 4000 + 300 + 700 + 5000 + 600}
    data = made.to_dict()
    assert data["files"] == len(expected_plan()) and data["bytes_freed"] == made.bytes_freed


def test_plan_writes_nothing(store: Path) -> None:
    before = snapshot(store)
    plan(store, replace(EVERYTHING, quota=1), now=NOW)
    assert snapshot(store) == before


def test_apply_carries_out_the_plan(store: Path) -> None:
    damage(store)
    made = plan(store, EVERYTHING, now=NOW)
    result = apply(store, made)
    assert [i.path for i in result.deleted] == [path for _, path, _, _ in expected_plan()]
    assert result.skipped == [] and result.bytes_freed == made.bytes_freed
    assert result.dropped == [C.property_hash, B.property_hash]
    assert not any((store / path).exists() for _, path, _, _ in expected_plan())
    manifest = manifest_store.load(store)
    assert list(manifest["properties"]) == [A.property_hash]
    assert validate(manifest) == []
    # The URL index forgets the deleted files, not the kept ones.
    db = sqlite3.connect(store / INDEX_PATH)
    paths = {row[0] for row in db.execute("SELECT path FROM urls")}
    db.close()
    assert paths == {full("a1"), full("a2")}
    assert result.index_rows == 3  # b1, c1, o1
    # What it must leave alone is still there; the store check finds only the damage.
    for rel in (full("o2"), full("o3"), "full/zz/notes.txt", full("o4"), "runs/deadbeef.json"):
        assert os.path.lexists(store / rel), rel
    report = reconcile(store)
    assert [(e.kind, e.path) for e in report.errors] == [("mismatch", full("o3"))]
    assert {w.kind for w in report.warnings} == {"orphan"}  # o2, inside the grace period
    assert history.scan_runs(store).runs[0].run_id == "00000004"
    assert len(history.scan_runs(store).runs) == 2


def test_nothing_chosen_plans_nothing(store: Path) -> None:
    made = plan(store, Options(), now=NOW)
    assert made.items == [] and made.drops == []


# -- the grace period --------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "deleted"),
    [
        (14 * DAY - 1, False),  # just inside the grace period
        (14 * DAY, False),  # exactly at it: not older than it
        (14 * DAY + 1, True),  # just outside
    ],
)
def test_grace_period_boundary(store: Path, age: float, deleted: bool) -> None:
    orphan, temp = full("o1"), "thumbs/256/.tmp-x.jpg.1.ab"
    put(store, temp, b"half a thumbnail", 0)
    old = {orphan, temp, TEMP, thumb("ot"), original("oo")}
    for rel in old:
        os.utime(store / rel, (NOW - age, NOW - age))
    made = plan(store, Options(orphans=True, temp=True), now=NOW)
    assert {i.path for i in made.items} == (old if deleted else set())


def test_grace_period_comes_from_the_options(store: Path) -> None:
    made = plan(store, Options(orphans=True, grace_days=10), now=NOW)
    assert full("o2") in {i.path for i in made.items}  # 13 days old
    made = plan(store, Options(orphans=True, grace_days=30), now=NOW)
    assert made.items == []


def test_a_dedup_hit_after_the_plan_saves_the_file(store: Path) -> None:
    """A crawl refreshing an orphan's mtime (store_content) between plan and apply wins."""
    made = plan(store, Options(orphans=True), now=NOW)
    os.utime(store / full("o1"))
    result = apply(store, made)
    assert (store / full("o1")).exists()
    assert (made.items[0], "changed since the plan") in result.skipped


# -- referenced files survive every option --------------------------------------

OPTION_SETS = {
    "orphans": Options(orphans=True, grace_days=0),
    "temp": Options(temp=True, grace_days=0),
    "not_seen": Options(not_seen_days=30),
    "not_in": Options(keep_only=frozenset({A.property_hash}), keep_only_source="homes.csv"),
    "keep_runs": Options(keep_runs=1),
    "quarantine": Options(quarantine_days=0),
    "to_quota": Options(quota=12_000),  # C and B go, A fits
    "everything": Options(
        orphans=True,
        temp=True,
        grace_days=0,
        not_seen_days=30,
        keep_only=frozenset({A.property_hash, B.property_hash}),
        keep_runs=1,
        quarantine_days=0,
        quota=10_000,
    ),
}


def referenced(root: Path) -> set[str]:
    """Every file the manifest on disk names (images, thumbnails, originals that exist)."""
    paths = set()
    for prop in manifest_store.load(root)["properties"].values():
        for image in prop["images"]:
            paths.add(image["path"])
            paths.update(image["thumbs"].values())
            src = image["source_md5"]
            paths.update(
                p.relative_to(root).as_posix() for p in root.glob(f"originals/{src[:2]}/{src}.*")
            )
        for entry in prop.get("missing", ()):
            paths.add(f"thumbs/256/{entry['md5']}.jpg")
    return paths


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_referenced_files_survive_every_option(store: Path, name: str) -> None:
    # Every file is old: only the manifest's references can keep it.
    for path in store.rglob("*"):
        if path.is_file():
            os.utime(path, (NOW - 1000 * DAY, NOW - 1000 * DAY))
    made = plan(store, OPTION_SETS[name], now=NOW)
    apply(store, made, allow_empty=True)
    remaining = referenced(store)
    assert remaining, "every option set keeps property A"
    assert all((store / rel).is_file() for rel in remaining)
    report = reconcile(store)
    assert report.errors == []
    assert {w.kind for w in report.warnings} <= {"orphan", "orphan_thumb"}


def test_files_shared_with_a_kept_property_stay(store: Path) -> None:
    made = plan(store, Options(keep_only=frozenset({A.property_hash})), now=NOW)
    assert full("a1") not in {i.path for i in made.items}  # B's, but A's too
    apply(store, made)
    assert (store / full("a1")).is_file() and (store / thumb("a1")).is_file()


def test_apply_never_deletes_what_the_manifest_references_now(store: Path) -> None:
    """A stale plan: the orphan became an image of A after the plan was made."""
    made = plan(store, Options(orphans=True), now=NOW)
    manifest = manifest_store.load(store)
    entry = image_entry("a1") | {"md5": md5("o1"), "path": full("o1"), "bytes": 1500}
    manifest["properties"][A.property_hash]["images"].append(entry)
    manifest_store.save(store, manifest)
    result = apply(store, made)
    assert (store / full("o1")).is_file()
    skipped = {item.path: why for item, why in result.skipped}
    assert skipped[full("o1")] == "referenced by the manifest"


# -- properties ----------------------------------------------------------------


def test_not_in_and_not_seen_together(store: Path) -> None:
    options = Options(
        not_seen_days=30,
        keep_only=frozenset({A.property_hash, C.property_hash}),
        keep_only_source="homes.csv",
    )
    made = plan(store, options, now=NOW)
    details = {d.property_hash: (d.reason, d.detail) for d in made.drops}
    assert details[B.property_hash] == (
        "not_seen",
        f"not seen for 60.0 days (last seen {iso(NOW - 60 * DAY)}); not in homes.csv",
    )
    assert details[C.property_hash][0] == "not_seen"
    assert A.property_hash not in details


def test_to_quota_drops_the_oldest_unseen_first(store: Path) -> None:
    used = measure(store)
    made = plan(store, Options(quota=used - 1), now=NOW)
    assert [d.property_hash for d in made.drops] == [C.property_hash]  # 100 days
    assert made.drops[0].reason == "to_quota"
    assert made.used == used and made.used_after is not None and made.used_after < used
    # Orphans chosen too count first: they alone bring the store under the quota.
    made = plan(store, Options(orphans=True, quota=used - 1500), now=NOW)
    assert made.drops == [] and made.used_after == used - 1500 - 300 - 700
    # C then B: A's images are left for A.
    made = plan(store, Options(quota=used - 6000), now=NOW)
    assert [d.property_hash for d in made.drops] == [C.property_hash, B.property_hash]


def test_a_plan_dropping_every_property_is_refused(store: Path) -> None:
    made = plan(store, Options(keep_only=frozenset()), now=NOW)
    assert made.empties_store
    before = snapshot(store)
    with pytest.raises(CleanupRefused, match="every property"):
        apply(store, made)
    assert snapshot(store) == before
    apply(store, made, allow_empty=True)
    assert manifest_store.load(store)["properties"] == {}
    assert not (store / full("a1")).exists()


def test_to_quota_that_cannot_be_met_is_refused_too(store: Path) -> None:
    made = plan(store, Options(quota=1), now=NOW)
    assert made.empties_store and made.used_after is not None and made.used_after > 1


# -- runs and quarantine --------------------------------------------------------


def test_keep_runs_never_touches_files_that_are_not_records(store: Path) -> None:
    made = plan(store, Options(keep_runs=1), now=NOW)
    paths = {i.path for i in made.items}
    assert "runs/deadbeef.json" not in paths and "runs/deadbeef.changes.json" not in paths
    assert "runs/.tmp-5e6f7a8b.json.456.ef01" not in paths
    assert "runs/00000003.report.html" in paths  # a companion of a pruned run
    assert "runs/00000004.json" not in paths
    assert {p for p in paths if "0badf00" in p} == {
        "runs/0badf00d.reconcile.json",
        "runs/0badf00e.reconcile.json",
    }


def test_quarantine_age_counts_from_the_move(store: Path) -> None:
    """A file moved into quarantine keeps its old mtime; its ctime says when it moved."""
    moved_now = time.time()
    made = plan(store, Options(quarantine_days=30), now=moved_now + 10 * DAY)
    assert made.items == []  # ctime is today: quarantined 10 days before that `now`


# -- the command ------------------------------------------------------------------


def scrapy_cleanup(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return store_command("cleanup", store, *args)


@pytest.fixture
def live_store(tmp_path: Path) -> Path:
    """The fixed store aged against the real clock, for the command (which reads the clock)."""
    return build_store(tmp_path / "store", now=time.time())


def test_command_dry_run_prints_the_plan_and_deletes_nothing(live_store: Path) -> None:
    before = snapshot(live_store)
    done = scrapy_cleanup(live_store, "--orphans", "--temp", "--properties-not-seen", "30")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "properties dropped from the manifest: 2 of 3" in out
    assert full("o1") in out and "no manifest image; unchanged for 20.0 days" in out
    assert full("o2") not in out  # inside the grace period
    assert full("a1") not in out  # shared with A
    assert "freed" in out and "13150 bytes" in out
    assert out.rstrip().endswith("nothing deleted (dry run); add --apply")
    assert snapshot(live_store) == before


def test_command_apply_and_json(live_store: Path) -> None:
    done = scrapy_cleanup(live_store, "--orphans", "--keep-runs", "3", "--apply", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["applied"] is True and data["refused"] is None
    paths = [item["path"] for item in data["plan"]["items"]]
    assert paths == [
        full("o1"),
        thumb("ot"),
        original("oo"),
        "runs/00000001.changes.json",
        "runs/00000001.reconcile.json",
        "runs/00000001.json",
    ]
    assert data["result"]["deleted"] == 6 and data["result"]["skipped"] == []
    assert not any((live_store / p).exists() for p in paths)


def test_command_not_in_a_csv(live_store: Path, tmp_path: Path) -> None:
    homes = tmp_path / "homes.csv"
    homes.write_text('address\n"4560 East Sunrise Drive, Phoenix, AZ 85044"\n')
    done = scrapy_cleanup(live_store, "--not-in", str(homes), "--apply")
    assert done.returncode == 0, done.stderr
    assert f"not in {homes}" in done.stdout
    assert list(manifest_store.load(live_store)["properties"]) == [A.property_hash]


def test_command_refuses_to_empty_the_store(live_store: Path, tmp_path: Path) -> None:
    homes = tmp_path / "homes.csv"
    homes.write_text('address\n"1 N Central Ave, Phoenix, AZ 85004"\n')
    done = scrapy_cleanup(live_store, "--not-in", str(homes), "--apply")
    assert done.returncode == 1
    assert "refused: the plan drops every property (3)" in done.stdout
    assert len(manifest_store.load(live_store)["properties"]) == 3
    done = scrapy_cleanup(live_store, "--not-in", str(homes), "--apply", "--allow-empty")
    assert done.returncode == 0, done.stderr
    assert manifest_store.load(live_store)["properties"] == {}


def test_command_to_quota(live_store: Path) -> None:
    quota = measure(live_store) - 1
    done = scrapy_cleanup(live_store, "--to-quota", "-s", f"PHX_STORE_QUOTA={quota}B")
    assert done.returncode == 0, done.stderr
    assert C.property_hash in done.stdout and "oldest unseen" in done.stdout
    assert "after the plan" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "nothing to clean: choose --orphans"),
        (("--keep-runs", "0"), "--keep-runs 0: keep at least 1"),
        (("--keep-runs", "two"), "--keep-runs 'two': not a whole number"),
        (("--properties-not-seen", "soon"), "--properties-not-seen 'soon': not a number"),
        (("--quarantine-older-than", "-1"), "--quarantine-older-than -1: give a number"),
        (("--not-in", "/nonexistent/homes.csv"), "--not-in /nonexistent/homes.csv: no such file"),
        (("--to-quota",), "--to-quota needs a quota: set PHX_STORE_QUOTA"),
        (("--to-quota", "-s", "PHX_STORE_QUOTA=20XB"), "PHX_STORE_QUOTA: cannot read '20XB'"),
        (("--orphans", "-s", "PHX_CLEANUP_GRACE_DAYS=-2"), "PHX_CLEANUP_GRACE_DAYS: -2"),
        (("--orphans", "--apply", "--wait", "x"), "--wait 'x': not a number"),
    ],
)
def test_command_bad_input_is_one_line_and_exit_2(
    live_store: Path, args: tuple[str, ...], message: str
) -> None:
    before = snapshot(live_store)
    done = scrapy_cleanup(live_store, *args)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert done.stderr.startswith(f"error: {message}"), done.stderr
    assert snapshot(live_store) == before


def test_command_without_a_store(tmp_path: Path) -> None:
    done = scrapy_cleanup(tmp_path / "nowhere", "--orphans", "--apply")
    assert done.returncode == 2 and "no store here" in done.stderr
    assert not (tmp_path / "nowhere").exists()


# -- cleanup during a crawl: the store lock ------------------------------------------


@pytest.fixture
def crawl_running(live_store: Path) -> Iterator[Any]:
    """The store lock held shared, as a running crawl holds it; ``.release()`` ends the crawl."""
    locks = pytest.importorskip("phx_scraper.store.locks")
    hold = locks.store_lock(live_store, exclusive=False, timeout=5)
    hold.__enter__()
    held = [True]

    class Crawl:
        @staticmethod
        def release() -> None:
            if held.pop():
                hold.__exit__(None, None, None)

    yield Crawl
    if held:
        Crawl.release()


def test_cleanup_refuses_while_a_crawl_holds_the_store(
    live_store: Path, crawl_running: Any
) -> None:
    before = snapshot(live_store)
    done = scrapy_cleanup(live_store, "--orphans", "--apply", "--wait", "0.5")
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "locked by PID" in done.stderr
    assert done.stderr.strip().count("\n") == 0
    assert snapshot(live_store) == before
    # A dry run reads only: it does not wait for the crawl.
    assert scrapy_cleanup(live_store, "--orphans").returncode == 0


def test_cleanup_waits_for_the_crawl_to_end(live_store: Path, crawl_running: Any) -> None:
    command = [sys.executable, "-m", "scrapy", "cleanup", "-s", f"IMAGES_STORE={live_store}"]
    proc = subprocess.Popen(
        [*command, "--orphans", "--apply", "--wait", "60"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)
        assert proc.poll() is None, "cleanup did not wait for the crawl"
        assert (live_store / full("o1")).exists()
        crawl_running.release()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "deleted 3 files" in out
    assert not (live_store / full("o1")).exists()


# -- an interrupted --apply ------------------------------------------------------------

# Runs ``scrapy cleanup`` in this process after arranging a SIGKILL at a chosen
# point of ``apply``: before the manifest is written, or after N files are deleted.
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from scrapy.cmdline import execute
    from phx_scraper.store import cleanup, manifest

    point, count = sys.argv[1], int(sys.argv[2])
    deleted = []

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "manifest":
        manifest.save = lambda *args: die()
    else:
        remove = cleanup._remove

        def counted(path):
            if len(deleted) == count:
                die()
            deleted.append(path)
            remove(path)

        cleanup._remove = counted
    sys.argv = ["scrapy", "cleanup", *sys.argv[3:]]
    execute()
    """
)


@pytest.mark.parametrize(("point", "count"), [("manifest", 0), ("files", 0), ("files", 4)])
def test_sigkill_during_apply_leaves_at_most_orphans(
    live_store: Path, point: str, count: int
) -> None:
    args = ["--orphans", "--temp", "--properties-not-seen", "30", "--keep-runs", "2", "--apply"]
    store = f"IMAGES_STORE={live_store}"
    done = subprocess.run(
        [sys.executable, "-c", KILLER, point, str(count), "-s", store, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    report = reconcile(live_store)
    assert report.errors == []
    assert {w.kind for w in report.warnings} <= {"orphan", "orphan_thumb"}
    assert validate(manifest_store.load(live_store)) == []
    if point == "files":
        # The manifest went first: B and C are gone from it, their files are orphans now.
        assert list(manifest_store.load(live_store)["properties"]) == [A.property_hash]
    # The next cleanup finishes the job (the old files are past the grace period).
    again = scrapy_cleanup(live_store, *args)
    assert again.returncode == 0, again.stderr
    report = reconcile(live_store)
    assert report.errors == [] and [w.path for w in report.warnings] == [full("o2")]
