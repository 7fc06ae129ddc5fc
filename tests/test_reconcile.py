"""store/reconcile.py, the manifest schema and ``scrapy reconcile``.

A good store is built once from real JPEG files, then each test damages its own
copy the way disks, crashes and people do.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from scrapy import Spider
from scrapy.utils.test import get_crawler

from phx_scraper.extensions.manifest import ManifestWriter
from phx_scraper.sandbox import dataset
from phx_scraper.sandbox.process import Sandbox
from phx_scraper.store import manifest
from phx_scraper.store.cleanup import Options as CleanupOptions
from phx_scraper.store.cleanup import plan
from phx_scraper.store.files import atomic_write, md5_hex, store_content, thumb_path
from phx_scraper.store.history import scan_runs
from phx_scraper.store.neardup import Thresholds
from phx_scraper.store.quota import measure
from phx_scraper.store.reconcile import (
    Issue,
    Report,
    StoreNotFound,
    log_report,
    quality,
    reconcile,
    reconcile_report,
)
from phx_scraper.store.schema import load_schema, validate
from phx_scraper.store.urlindex import INDEX_PATH, IndexEntry, UrlIndex
from tests.conftest import run_crawl, store_command

ROOT = Path(__file__).resolve().parent.parent
PROPERTY = "abcd1234"
RUN = "1a2b3c4d"
# width, height, phash, dhash: the first two are near-duplicates (same hashes),
# the first one the larger, so it is the group's best member.
PHOTOS = [
    (1024, 256, "0000000000000000", "0000000000000000"),
    (640, 160, "0000000000000000", "0000000000000000"),
    (300, 300, "ffffffffffffffff", "ffffffffffffffff"),
]


def jpeg(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((width, height), 40).convert("RGB").save(buf, "JPEG", quality=70)
    return buf.getvalue()


def build_store(root: Path) -> list[dict[str, Any]]:
    """A store with three images of one property from Zillow; Redfin has no match."""
    index = UrlIndex(root)
    stored = []
    for i, (width, height, phash, dhash) in enumerate(PHOTOS):
        data = jpeg(width, height)
        md5, rel, _ = store_content(root, data, "jpg")
        atomic_write(root / thumb_path(md5, 256), jpeg(256, 64))
        url = f"https://photos.zillowstatic.com/fp/{i}.jpg"
        index.put(IndexEntry(url, md5, md5, rel, width, height, len(data), phash, dhash, 1.0))
        stored.append(
            {
                "url": url,
                "photo_id": f"p{i}",
                "md5": md5,
                "path": rel,
                "source_md5": md5,
                "width": width,
                "height": height,
                "bytes": len(data),
                "phash": phash,
                "dhash": dhash,
                "thumbs": {"256": thumb_path(md5, 256)},
                "status": "downloaded",
            }
        )
    index.close()
    common = {
        "run_id": RUN,
        "property_hash": PROPERTY,
        "address": "1 Main St, Phoenix, AZ 85001",
        "canonical_address": "1 MAIN ST, PHOENIX, AZ 85001",
    }
    zillow = {
        **common,
        "source": "zillow",
        "status": "ok",
        "source_id": "42",
        "photo_count": 4,
        "photos": [
            {"photo_id": f"p{i}", "url": s["url"], "position": i, "caption": "", "listing_id": None}
            for i, s in enumerate(stored)
        ],
        "images": stored,
        "rejected": [
            {
                "url": "https://photos.zillowstatic.com/fp/3.jpg",
                "photo_id": "p3",
                "reason": "truncated",
            }
        ],
    }
    redfin = {**common, "source": "redfin", "status": "no_match", "reason": "no_result"}
    manifest.update(root, [zillow, redfin], Thresholds())
    return stored


@pytest.fixture(scope="session")
def good_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    root = tmp_path_factory.mktemp("good") / "store"
    root.mkdir()
    return root, build_store(root)


@pytest.fixture
def store(tmp_path: Path, good_store: tuple[Path, list[dict[str, Any]]]) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(good_store[0], copy)
    return copy


@pytest.fixture
def images(good_store: tuple[Path, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return good_store[1]


def kinds(issues: list[Any]) -> list[str]:
    return sorted(issue.kind for issue in issues)


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def index_urls(root: Path, md5: str) -> list[str]:
    db = sqlite3.connect(root / INDEX_PATH)
    try:
        return [row[0] for row in db.execute("SELECT url FROM urls WHERE md5 = ?", (md5,))]
    finally:
        db.close()


# -- the good store ---------------------------------------------------------


def test_good_store_is_clean_and_its_manifest_matches_the_schema(store: Path) -> None:
    report = reconcile(store)
    assert (report.errors, report.warnings, report.temp_files, report.stray_files) == (
        [],
        [],
        [],
        [],
    )
    assert report.exit_code == 0
    assert report.files_checked == 3
    assert report.bytes_checked == sum(p.stat().st_size for p in (store / "full").rglob("*.jpg"))
    assert validate(manifest.load(store)) == []
    json.dumps(report.to_dict())


def test_quality_follows_the_documented_formula(store: Path) -> None:
    q = reconcile(store).quality[PROPERTY]
    # completeness: 3 stored of the 4 Zillow announced (Redfin announced nothing);
    # resolution: 1 of 3 images has a long side >= 1024 px; coverage: 1 of 2 sources ok;
    # rejected share: 1 rejected of 3 stored origins + 1 rejected.
    assert (q.completeness, q.resolution, q.coverage, q.rejected_share) == (0.75, 0.333, 0.5, 0.25)
    assert q.score == round((0.75 + 1 / 3 + 0.5 + 0.75) / 4, 3)
    assert (q.images, q.rejected) == (3, 1)


def test_quality_of_a_property_without_data_is_zero() -> None:
    q = quality({"images": [], "rejected": [], "sources": {}})
    assert q.score == 0.0 and q.completeness is None and q.resolution is None


def test_schema_rejects_what_the_manifest_writer_never_writes(store: Path) -> None:
    data = manifest.load(store)
    prop = data["properties"][PROPERTY]
    prop["sources"]["zillow"]["status"] = "maybe"
    prop["images"][0]["md5"] = "not-an-md5"
    del prop["images"][1]["origins"]
    errors = validate(data)
    assert len(errors) == 3
    assert any("'maybe' is not one of" in e for e in errors)
    assert load_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


# -- each problem, read-only ------------------------------------------------


def plant_ghost(store: Path, images: list[dict[str, Any]]) -> None:
    (store / images[0]["path"]).unlink()


def plant_flipped_byte(store: Path, images: list[dict[str, Any]]) -> None:
    path = store / images[1]["path"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def plant_truncation(store: Path, images: list[dict[str, Any]]) -> None:
    path = store / images[2]["path"]
    path.write_bytes(path.read_bytes()[:1000])


def plant_rename(store: Path, images: list[dict[str, Any]]) -> None:
    other = md5_hex(b"some other file")
    target = store / f"full/{other[:2]}/{other}.jpg"
    target.parent.mkdir(exist_ok=True)
    (store / images[0]["path"]).rename(target)


def plant_temp(store: Path, images: list[dict[str, Any]]) -> None:
    (store / "full" / images[0]["md5"][:2] / ".tmp-x.jpg.123.abcd").write_bytes(b"half")


def plant_stray(store: Path, images: list[dict[str, Any]]) -> None:
    (store / "full" / images[0]["md5"][:2] / "notes.txt").write_text("hello")


def plant_orphan(store: Path, images: list[dict[str, Any]]) -> None:
    store_content(store, jpeg(200, 200), "jpg")


@pytest.mark.parametrize(
    ("plant", "errors", "warnings", "exit_code"),
    [
        (plant_ghost, ["ghost"], [], 1),
        (plant_flipped_byte, ["mismatch"], [], 1),
        (plant_truncation, ["mismatch"], [], 1),
        (plant_rename, ["ghost", "mismatch"], [], 1),
        (plant_temp, [], [], 0),
        (plant_stray, [], [], 0),
        (plant_orphan, [], ["orphan"], 0),
    ],
)
def test_each_problem_is_found_at_its_severity(
    store: Path,
    images: list[dict[str, Any]],
    plant: Any,
    errors: list[str],
    warnings: list[str],
    exit_code: int,
) -> None:
    plant(store, images)
    before = snapshot(store)
    report = reconcile(store)
    assert kinds(report.errors) == errors
    assert kinds(report.warnings) == warnings
    assert report.exit_code == exit_code
    assert snapshot(store) == before, "read-only reconcile changed the store"


def test_details_of_each_finding(store: Path, images: list[dict[str, Any]]) -> None:
    plant_ghost(store, images)
    plant_truncation(store, images)
    plant_temp(store, images)
    plant_stray(store, images)
    plant_orphan(store, images)
    report = reconcile(store)
    ghost, mismatch = sorted(report.errors, key=lambda i: i.kind)
    assert (ghost.path, ghost.md5, ghost.properties) == (
        images[0]["path"],
        images[0]["md5"],
        (PROPERTY,),
    )
    assert mismatch.path == images[2]["path"]
    assert f"truncated: 1000 of {images[2]['bytes']} bytes" in mismatch.message
    (orphan,) = report.warnings
    assert "scrapy cleanup --orphans" in orphan.message
    assert [Path(p).name for p in report.temp_files] == [".tmp-x.jpg.123.abcd"]
    assert [Path(p).name for p in report.stray_files] == ["notes.txt"]
    assert report.summary()["errors"] == 2


def test_full_may_be_a_symlink_to_another_disk(store: Path, tmp_path: Path) -> None:
    (store / "full").rename(tmp_path / "bigdisk")
    (store / "full").symlink_to(tmp_path / "bigdisk")
    report = reconcile(store)
    assert (report.errors, report.warnings, report.files_checked) == ([], [], 3)


def test_a_webp_file_is_checked_by_its_name_like_any_other(store: Path) -> None:
    md5, rel, _ = store_content(store, b"webp bytes", "webp")
    assert rel.endswith(".webp")
    report = reconcile(store)
    assert [(w.kind, w.path, w.md5) for w in report.warnings] == [("orphan", rel, md5)]
    assert report.errors == []


def test_a_symlink_loop_is_a_stray_file_not_a_crash(store: Path) -> None:
    for rel in ("full/loop", "thumbs/loop", "runs/loop"):
        (store / rel).parent.mkdir(exist_ok=True)
        (store / rel).symlink_to(store / rel)
    report = reconcile(store)
    assert report.stray_files == ["full/loop", "thumbs/loop"] and report.errors == []
    counted = [p for top in ("full", "thumbs") for p in (store / top).rglob("*") if not p.is_dir()]
    assert measure(store) == sum(p.lstat().st_size for p in counted)  # a link's own size
    assert plan(store, CleanupOptions(orphans=True, temp=True)).items == []


def test_missing_and_unreferenced_thumbnails_are_warnings(
    store: Path, images: list[dict[str, Any]]
) -> None:
    (store / images[0]["thumbs"]["256"]).unlink()
    atomic_write(store / thumb_path("f" * 32, 256), b"thumb")
    report = reconcile(store)
    assert kinds(report.warnings) == ["missing_thumb", "orphan_thumb"]
    assert report.exit_code == 0


def test_missing_store_and_corrupt_manifest_raise(tmp_path: Path, store: Path) -> None:
    with pytest.raises(StoreNotFound):
        reconcile(tmp_path / "nowhere")
    (store / "manifest.json").write_text("{not json")
    with pytest.raises(manifest.ManifestError):
        reconcile(store)
    (store / "manifest.json").write_text('{"schema_version": 1, "properties": {"x": {}}}')
    with pytest.raises(manifest.ManifestError, match="unexpected shape"):
        reconcile(store)
    # A value the check cannot hold: one clear error too, not a traceback.
    prop = {"images": [{"md5": "a" * 32, "path": "p", "bytes": [], "thumbs": {}}]}
    (store / "manifest.json").write_text(
        json.dumps({"schema_version": 1, "properties": {"x": {**prop, "sources": {}}}})
    )
    with pytest.raises(manifest.ManifestError, match="unexpected shape"):
        reconcile(store)


# -- repair -----------------------------------------------------------------


def test_repair_quarantines_marks_missing_and_is_idempotent(
    store: Path, images: list[dict[str, Any]]
) -> None:
    plant_ghost(store, images)  # the best of the near-duplicate pair
    plant_flipped_byte(store, images)
    plant_orphan(store, images)
    plant_temp(store, images)
    flipped = (store / images[1]["path"]).read_bytes()

    report = reconcile(store, repair=True)

    assert report.errors == [] and report.exit_code == 0
    assert kinds(report.warnings) == ["orphan"]  # left for cleanup
    assert len(report.temp_files) == 1
    actions = sorted((r.action, r.path) for r in report.repaired)
    assert actions == sorted(
        [
            ("quarantined", images[1]["path"]),
            ("marked_missing", images[0]["path"]),
            ("marked_missing", images[1]["path"]),
            ("index_rows_deleted", images[0]["path"]),
            ("index_rows_deleted", images[1]["path"]),
        ]
    )
    assert (store / "quarantine" / Path(images[1]["path"]).name).read_bytes() == flipped
    assert not (store / images[1]["path"]).exists()
    data = manifest.load(store)
    prop = data["properties"][PROPERTY]
    assert [i["md5"] for i in prop["images"]] == [images[2]["md5"]]
    assert prop["images"][0]["group"] is None and prop["images"][0]["best"] is True
    assert {(m["md5"], m["reason"]) for m in prop["missing"]} == {
        (images[0]["md5"], "ghost"),
        (images[1]["md5"], "mismatch"),
    }
    assert prop["missing"][0]["origins"][0]["url"].startswith("https://photos.zillowstatic.com/")
    assert index_urls(store, images[0]["md5"]) == []
    assert index_urls(store, images[2]["md5"]) == [images[2]["url"]]
    assert validate(data) == []
    assert kinds(report.pending) == ["pending", "pending"]

    later = reconcile(store)
    assert kinds(later.warnings) == ["orphan"], "thumbnails of missing images are kept quietly"
    assert later.exit_code == 0

    before = snapshot(store)
    again = reconcile(store, repair=True)
    assert again.repaired == [] and again.errors == []
    after = snapshot(store)
    assert after["manifest.json"] == before["manifest.json"]
    assert after == before


def test_repair_of_a_rename_keeps_the_bytes_in_quarantine(
    store: Path, images: list[dict[str, Any]]
) -> None:
    original = (store / images[0]["path"]).read_bytes()
    plant_rename(store, images)
    report = reconcile(store, repair=True)
    assert report.errors == []
    other = md5_hex(b"some other file")
    assert (store / "quarantine" / f"{other}.jpg").read_bytes() == original
    missing = manifest.load(store)["properties"][PROPERTY]["missing"]
    assert [(m["md5"], m["reason"]) for m in missing] == [(images[0]["md5"], "ghost")]


def test_a_second_quarantine_of_the_same_name_keeps_both(
    store: Path, images: list[dict[str, Any]]
) -> None:
    path = store / images[1]["path"]
    good = path.read_bytes()
    plant_flipped_byte(store, images)
    reconcile(store, repair=True)
    path.write_bytes(good[:500])  # the same name corrupt again, unreferenced now
    report = reconcile(store, repair=True)
    assert [r.action for r in report.repaired] == ["quarantined"]
    names = sorted(p.name for p in (store / "quarantine").iterdir())
    assert names == [path.name, f"{path.name}.1"]


def test_a_crawl_that_stores_a_missing_image_again_resolves_it(
    store: Path, images: list[dict[str, Any]], good_store: tuple[Path, list[dict[str, Any]]]
) -> None:
    plant_ghost(store, images)
    reconcile(store, repair=True)
    # What the next crawl does: fetch the URL again, store the bytes, merge the record.
    shutil.copy2(good_store[0] / images[0]["path"], store / images[0]["path"])
    record = {
        "run_id": "2b3c4d5e",
        "source": "zillow",
        "property_hash": PROPERTY,
        "address": "1 Main St, Phoenix, AZ 85001",
        "canonical_address": "1 MAIN ST, PHOENIX, AZ 85001",
        "status": "ok",
        "photo_count": 4,
        "images": [images[0]],
    }
    manifest.update(store, [record], Thresholds())
    assert kinds(reconcile(store).pending) == []
    report = reconcile(store, repair=True)
    assert [r.action for r in report.repaired] == ["missing_resolved"]
    data = manifest.load(store)
    assert "missing" not in data["properties"][PROPERTY]
    assert validate(data) == []


def test_reconcile_report_is_written_per_run(store: Path) -> None:
    path = reconcile_report(store, RUN, reconcile(store))
    assert path == store / "runs" / f"{RUN}.reconcile.json"
    data = json.loads(path.read_text())
    assert data["exit_code"] == 0 and data["summary"]["files_checked"] == 3
    assert set(data["quality"][PROPERTY]) >= {"score", "completeness", "resolution"}


def test_log_report_summarizes_many(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    report = Report(root=tmp_path, checked_at="x")
    report.errors = [
        Issue("ghost", f"full/aa/{i}.jpg", f"full/aa/{i}.jpg: no file") for i in range(5)
    ]
    with caplog.at_level(logging.INFO):
        log_report(report, logging.getLogger("test"), limit=2)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 3 and errors[-1] == "Reconcile: 3 more errors"


def test_crawl_end_hook_logs_and_summarizes(
    store: Path, images: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    plant_ghost(store, images)
    writer = ManifestWriter.from_crawler(get_crawler(Spider, {"IMAGES_STORE": str(store)}))
    spider = Spider(name="zillow")
    spider.run_id = RUN  # type: ignore[attr-defined]
    with caplog.at_level(logging.INFO):
        writer.spider_closed(spider, "finished")
    summary = json.loads((store / "runs" / f"{RUN}.json").read_text())
    assert summary["reconcile"]["errors"] == 1 and summary["reconcile"]["warnings"] == 0
    report = json.loads((store / "runs" / f"{RUN}.reconcile.json").read_text())
    assert [e["kind"] for e in report["errors"]] == ["ghost"]
    problems = [
        (r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING
    ]
    assert len(problems) == 1 and problems[0][0] == "ERROR" and "ghost" in problems[0][1]
    assert "store check: errors 1, warnings 0" in caplog.text


def test_quick_check_hashes_what_it_is_told_and_every_file_of_another_size(
    store: Path, images: list[dict[str, Any]]
) -> None:
    rotten, truncated = (store / image["path"] for image in images[:2])
    flipped = bytearray(rotten.read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF  # bit rot: same size
    rotten.write_bytes(bytes(flipped))
    truncated.write_bytes(truncated.read_bytes()[:-100])

    quick = reconcile(store, rehash={images[2]["path"]})
    assert [(e.kind, e.path) for e in quick.errors] == [("mismatch", images[1]["path"])]
    assert (quick.files_checked, quick.files_hashed) == (3, 2)  # written + truncated
    full = reconcile(store)
    assert sorted((e.kind, e.path) for e in full.errors) == sorted(
        ("mismatch", images[i]["path"]) for i in (0, 1)
    )
    assert full.files_hashed == 3


def test_crawl_end_check_hashes_only_what_the_crawl_wrote_unless_told(
    store: Path, images: list[dict[str, Any]]
) -> None:
    rotten = store / images[0]["path"]
    flipped = bytearray(rotten.read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF
    rotten.write_bytes(bytes(flipped))
    for settings, errors, hashed in (({}, 0, 0), ({"PHX_RECONCILE_HASH_ALL": True}, 1, 3)):
        crawler = get_crawler(Spider, {"IMAGES_STORE": str(store), **settings})
        writer = ManifestWriter.from_crawler(crawler)
        summary = writer.check_store(RUN)
        assert (summary["errors"], summary["files_hashed"]) == (errors, hashed)


def test_a_crawl_end_check_hashes_the_files_fetched_since_the_crawl_opened(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    csv = tmp_path / "homes.csv"
    keys = ["sunrise", "caminito"]
    csv.write_text("address\n" + "".join(f'"{dataset.property_by_key(k).address}"\n' for k in keys))
    store = tmp_path / "store"

    def check(*args: str) -> dict[str, Any]:
        crawl = run_crawl(sandbox, store, "redfin", f"addresses={csv}", *args)
        assert crawl.returncode == 0, crawl.stderr
        newest = scan_runs(store).runs[0]
        summary: dict[str, Any] = newest.record["reconcile"]
        return summary

    first = check()
    files = sorted(store.glob("full/*/*"))
    assert (first["files_checked"], first["files_hashed"], first["errors"]) == (
        len(files),
        len(files),
        0,
    )
    rotten = files[0]
    flipped = bytearray(rotten.read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF  # bit rot: same size
    rotten.write_bytes(bytes(flipped))
    # Nothing fetched: nothing hashed, so the rot is not seen by the quick check.
    again = check()
    assert (again["files_hashed"], again["errors"]) == (0, 0)
    # Fetched again (force): every file the crawl got is hashed, the rotten one too.
    forced = check("force=1")
    assert (forced["files_hashed"], forced["errors"]) == (len(files), 1)


def test_a_change_log_that_cannot_be_written_leaves_the_run_record_to_follow(
    store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.rmtree(store / "runs", ignore_errors=True)
    (store / "runs").write_text("not a directory")  # every write under runs/ fails
    writer = ManifestWriter.from_crawler(get_crawler(Spider, {"IMAGES_STORE": str(store)}))
    with caplog.at_level(logging.ERROR):
        assert writer.write_changes(RUN) is None
    assert "Change log not written" in caplog.text


# -- the command --------------------------------------------------------------


def scrapy_reconcile(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return store_command("reconcile", store, *args)


def test_command_exit_codes_and_json(store: Path, images: list[dict[str, Any]]) -> None:
    clean = scrapy_reconcile(store)
    assert clean.returncode == 0, clean.stderr
    assert "0 errors" in clean.stdout and f"  {PROPERTY}  " in clean.stdout

    plant_ghost(store, images)
    plant_orphan(store, images)
    damaged = scrapy_reconcile(store)
    assert damaged.returncode == 1, damaged.stderr
    lines = damaged.stdout.splitlines()
    assert lines[1].startswith("ERROR") and "ghost" in lines[1]
    assert lines[2].startswith("WARNING") and "orphan" in lines[2]

    as_json = scrapy_reconcile(store, "--json")
    assert as_json.returncode == 1
    data = json.loads(as_json.stdout)
    assert [e["kind"] for e in data["errors"]] == ["ghost"]
    assert data["exit_code"] == 1 and "report_path" not in data

    repaired = scrapy_reconcile(store, "--repair", "--json")
    assert repaired.returncode == 0, repaired.stdout
    data = json.loads(repaired.stdout)
    assert data["errors"] == [] and Path(data["report_path"]).exists()
    assert scrapy_reconcile(store).returncode == 0


def test_command_missing_store_and_corrupt_manifest_exit_2(tmp_path: Path, store: Path) -> None:
    missing = scrapy_reconcile(tmp_path / "nowhere")
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "no store here" in missing.stderr
    (store / "manifest.json").write_text("{not json")
    corrupt = scrapy_reconcile(store)
    assert corrupt.returncode == 2
    assert "not valid JSON" in corrupt.stderr and corrupt.stderr.strip().count("\n") == 0
