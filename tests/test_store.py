"""store/: content addressing, atomic writes, imaging rules, URL index and manifest merges."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from phx_scraper.store import manifest
from phx_scraper.store.files import TEMP_PREFIX, atomic_write, store_content
from phx_scraper.store.imaging import ImageRejected, Standard, process, strip_jpeg_metadata
from phx_scraper.store.urlindex import IndexEntry, UrlIndex


def photo(size: tuple[int, int] = (640, 480), fmt: str = "JPEG", **save: object) -> bytes:
    image = Image.effect_noise(size, 40).convert("RGB")
    buf = io.BytesIO()
    image.save(buf, fmt, **save)
    return buf.getvalue()


def test_store_content_names_file_by_md5_and_never_rewrites(tmp_path: Path) -> None:
    data = b"\xff\xd8\xffsome bytes"
    md5, rel, _ = store_content(tmp_path, data, "jpg")
    assert md5 == hashlib.md5(data).hexdigest()
    assert rel == f"full/{md5[:2]}/{md5}.jpg"
    assert (tmp_path / rel).read_bytes() == data
    inode = (tmp_path / rel).stat().st_ino
    assert store_content(tmp_path, data, "jpg") == (md5, rel, False)
    assert (tmp_path / rel).stat().st_ino == inode
    assert not list(tmp_path.rglob(f"{TEMP_PREFIX}*"))


def test_atomic_write_leaves_no_temp_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "a" / "file"
    atomic_write(target, b"old")
    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["file"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b"<!DOCTYPE html><html><body>Not found</body></html>", "not_an_image"),
        (photo()[:4000], "truncated"),
        (photo((91, 31)), "too_small"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "corrupt"),
    ],
)
def test_rejections(body: bytes, reason: str) -> None:
    with pytest.raises(ImageRejected) as info:
        process(body, Standard())
    assert info.value.reason == reason


def test_decompression_bomb_is_rejected_from_its_header() -> None:
    small = photo((64, 64), "PNG")
    # Rewrite the IHDR size to 20000x20000 (the pixels are never decoded).
    ihdr = b"IHDR" + (20000).to_bytes(4, "big") * 2 + small[24:29]
    bomb = small[:12] + ihdr + zlib.crc32(ihdr).to_bytes(4, "big") + small[33:]
    with pytest.raises(ImageRejected) as info:
        process(bomb, Standard())
    assert info.value.reason == "too_many_pixels"


def test_upright_jpeg_is_kept_losslessly_without_metadata() -> None:
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    body = photo(exif=exif.tobytes())
    result = process(body, Standard())
    assert result.data == strip_jpeg_metadata(body)
    assert b"Camera maker" in body and b"Camera maker" not in result.data
    assert result.source_md5 == hashlib.md5(body).hexdigest()
    assert (result.width, result.height, result.ext) == (640, 480, "jpg")


def test_rotated_large_png_is_reencoded_upright_and_capped() -> None:
    image = Image.effect_noise((3000, 1000), 40).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif.tobytes())
    result = process(buf.getvalue(), Standard(max_side=2048))
    assert (result.width, result.height) == (683, 2048)
    stored = Image.open(io.BytesIO(result.data))
    assert stored.format == "JPEG" and not stored.getexif()


def test_url_index_round_trip(tmp_path: Path) -> None:
    index = UrlIndex(tmp_path)
    entry = IndexEntry(
        "http://x/a.jpg", "s" * 32, "m" * 32, "full/mm/m.jpg", 10, 20, 30, "p", "d", 1.0
    )
    index.put(entry)
    assert index.get("http://x/a.jpg") == entry
    assert index.get("http://x/b.jpg") is None
    index.close()
    assert UrlIndex(tmp_path).get("http://x/a.jpg") == entry


def record(source: str, run_id: str, md5s: list[str], **extra: object) -> dict[str, object]:
    return {
        "run_id": run_id,
        "source": source,
        "property_hash": "abcd1234",
        "address": "1 Main St, Phoenix, AZ 85001",
        "canonical_address": "1 MAIN ST, PHOENIX, AZ 85001",
        "status": "ok",
        "source_id": "42",
        "photos": [
            {
                "photo_id": m,
                "url": f"http://{source}/{m}",
                "position": i,
                "caption": "",
                "listing_id": None,
            }
            for i, m in enumerate(md5s)
        ],
        "images": [
            {
                "url": f"http://{source}/{m}",
                "photo_id": m,
                "md5": m,
                "path": f"full/{m}",
                "source_md5": m,
                "width": 1,
                "height": 1,
                "bytes": 1,
                "phash": "0" * 16,
                "dhash": "0" * 16,
                "thumbs": {},
                "status": "downloaded",
            }
            for m in md5s
        ],
        "rejected": [],
        **extra,
    }


def test_manifest_merges_sources_and_runs(tmp_path: Path) -> None:
    manifest.update(tmp_path, [record("zillow", "run00001", ["a", "b"])])
    manifest.update(tmp_path, [record("redfin", "run00002", ["b", "c"])])
    merged = manifest.load(tmp_path)
    prop = merged["properties"]["abcd1234"]
    assert set(prop["sources"]) == {"zillow", "redfin"}
    images = {i["md5"]: i for i in prop["images"]}
    assert set(images) == {"a", "b", "c"}
    assert [o["source"] for o in images["b"]["origins"]] == ["zillow", "redfin"]
    assert (images["b"]["first_seen_run"], images["b"]["last_seen_run"]) == (
        "run00001",
        "run00002",
    )
    lazy = manifest.load(tmp_path, lazy=True)
    assert {**lazy, "properties": dict(lazy["properties"])} == merged


def test_a_checkpoint_copies_the_lines_of_properties_it_does_not_touch(tmp_path: Path) -> None:
    manifest.update(tmp_path, [record("zillow", "run00001", ["a"], property_hash="0000aaaa")])
    manifest.update(tmp_path, [record("zillow", "run00001", ["b"])])
    before = (tmp_path / "manifest.json").read_text().splitlines()
    manifest.update(tmp_path, [record("redfin", "run00002", ["c"])])
    after = (tmp_path / "manifest.json").read_text().splitlines()
    untouched = [line for line in before if line.startswith('  "0000aaaa": ')]
    assert len(untouched) == 1 and untouched[0] in after  # copied as it was
    merged = manifest.load(tmp_path)["properties"]
    assert [i["md5"] for i in merged["abcd1234"]["images"]] == ["b", "c"]
    assert [i["md5"] for i in merged["0000aaaa"]["images"]] == ["a"]


def test_a_lazy_manifest_parses_a_property_when_asked_and_an_old_layout_whole(
    tmp_path: Path,
) -> None:
    manifest.update(tmp_path, [record("zillow", "run00001", ["a"])])
    text = (tmp_path / "manifest.json").read_text()
    assert text.splitlines()[4].startswith('  "abcd1234": {"address":')  # one line each
    lazy = manifest.load(tmp_path, lazy=True)["properties"]
    assert lazy["abcd1234"] is not lazy["abcd1234"]  # a fresh copy: read-only
    with pytest.raises(TypeError):
        lazy["other"] = {}
    # Written indented by an older version: read whole, and still merged into.
    whole = json.loads(text)
    (tmp_path / "manifest.json").write_text(json.dumps(whole, indent=1))
    assert manifest.load(tmp_path, lazy=True) == whole
    manifest.update(tmp_path, [record("redfin", "run00002", ["b"])])
    assert set(manifest.load(tmp_path)["properties"]["abcd1234"]["sources"]) == {
        "zillow",
        "redfin",
    }
    # A damaged property line is an error naming it, raised when it is read.
    lines = (tmp_path / "manifest.json").read_text().splitlines(keepends=True)
    lines[4] = lines[4].replace('"address":', '"address";', 1)
    (tmp_path / "manifest.json").write_text("".join(lines))
    with pytest.raises(manifest.ManifestError, match="property abcd1234: not valid JSON"):
        manifest.load(tmp_path, lazy=True)["properties"]["abcd1234"]
    with pytest.raises(manifest.ManifestError, match="property abcd1234: not valid JSON"):
        manifest.update(tmp_path, [record("zillow", "run00003", ["a"])])
    assert (tmp_path / "manifest.json").read_text() == "".join(lines)  # left alone


def test_a_lazy_manifest_reads_the_file_as_loaded_even_once_replaced(tmp_path: Path) -> None:
    manifest.update(tmp_path, [record("zillow", "run00001", ["a"], property_hash="0000aaaa")])
    manifest.update(tmp_path, [record("zillow", "run00001", ["b"])])
    lazy = manifest.load(tmp_path, lazy=True)["properties"]
    # A checkpoint replaces the file: the lazy manifest keeps the one it loaded.
    manifest.update(tmp_path, [record("redfin", "run00002", ["c"])])
    manifest.update(tmp_path, [record("redfin", "run00002", ["d"], property_hash="00000000")])
    assert sorted(lazy) == ["0000aaaa", "abcd1234"]
    assert [i["md5"] for i in lazy["abcd1234"]["images"]] == ["b"]
    assert [i["md5"] for i in lazy["0000aaaa"]["images"]] == ["a"]
    current = manifest.load(tmp_path, lazy=True)["properties"]
    assert [i["md5"] for i in current["abcd1234"]["images"]] == ["b", "c"]
    assert "00000000" in current and "ffffffff" not in current


def test_membership_in_a_lazy_manifest_does_not_parse_the_property(tmp_path: Path) -> None:
    manifest.update(tmp_path, [record("zillow", "run00001", ["a"])])
    path = tmp_path / "manifest.json"
    path.write_text(path.read_text().replace('"address":', '"address";', 1))
    lazy = manifest.load(tmp_path, lazy=True)["properties"]
    assert "abcd1234" in lazy  # the damaged line is only parsed when read
    with pytest.raises(manifest.ManifestError, match="property abcd1234: not valid JSON"):
        lazy["abcd1234"]


def test_corrupt_manifest_is_reported_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(manifest.ManifestError, match=r"manifest\.json: not valid JSON"):
        manifest.update(tmp_path, [record("zillow", "run00001", ["a"])])
    assert (tmp_path / "manifest.json").read_text() == "{not json"


def test_the_same_content_stored_at_once_by_many_threads_is_written_once(tmp_path: Path) -> None:
    contents = [f"photo {n}".encode() * 5000 for n in range(30)]
    start = threading.Barrier(4)

    def store_all() -> list[bool]:
        start.wait()
        return [store_content(tmp_path, data, "jpg")[2] for data in contents]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: store_all(), range(4)))
    # Per content, exactly one thread wrote it; the others found it there.
    assert [sum(column) for column in zip(*results, strict=True)] == [1] * len(contents)
    stored = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert len(stored) == len(contents)
    assert all(hashlib.md5(p.read_bytes()).hexdigest() == p.stem for p in stored)
