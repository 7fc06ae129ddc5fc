"""The store's report: ``<store>/report.html``, one static page that opens from disk.

Written when a crawl ends (with a copy kept as ``runs/<run_id>.report.html``)
and by ``scrapy report``. Self-contained: CSS, script and data are inline, and
the only files it names are the store's own (``full/…``, ``thumbs/…``, the
runs' reports) by relative paths, so it needs no network and works from any
copy of the store.

Two parts:

- the run (the one given, else the newest record): per source the outcomes,
  images stored / downloaded / deduplicated / rejected, block rate and breaker
  trips as an inline SVG chart, failures by reason, the store check, and every
  recorded run with a link to its report;
- the properties, as JSON inside the page, drawn by the inline script in pages
  of ``PAGE_SIZE`` cards, so a store of thousands of homes opens at once; a
  search box filters them by address or property_hash. A card holds the
  address, each source's outcome, the quality score
  (:func:`phx_scraper.store.reconcile.quality`), the facts, a contact sheet of
  thumbnails (``loading="lazy"``, a click opens the full image) with a badge
  per source, near-duplicate groups together with their best member first and
  marked, and the rejected photos with their reasons.

The JSON is compact, since it is rewritten after every crawl and copied per
run. Per image: ``m`` md5, ``e`` extension, ``t`` thumbnail size (``null``:
no thumbnail file, the full image is shown), ``w``/``h``, ``s`` indexes into
``sources``, and ``p`` the path only when it is not ``full/<m[:2]>/<m>.<e>``.

Written property by property, so what it holds does not grow with the number
of images (by tracemalloc at 10,000 images: under 0.5 MiB beyond the lazy
manifest; 13 MiB when it built the data and the pages whole). One pass over
the lazily loaded manifest gathers the order, the sources and the figures of
the header and the run; the next writes each property's record, as it is
made, to an anonymous temporary file in the store; each page (the run's copy,
then ``report.html``) is written as the template's text before the data, that
file's contents, and the text after. Whether a thumbnail is on disk is a stat
when its image is written.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from phx_scraper.sources import SOURCES
from phx_scraper.store import manifest as manifest_store
from phx_scraper.store.files import TEMP_PREFIX, atomic_write, content_path, thumb_path
from phx_scraper.store.history import RUNS_DIR, RunFile, scan_runs, summarize
from phx_scraper.store.reconcile import quality

REPORT_NAME = "report.html"
PAGE_SIZE = 25
#: Errors and warnings of the store check listed in the report (the rest are counted).
ISSUE_LIMIT = 20
LABELS = {"zillow": "Zillow", "redfin": "Redfin", "maricopa": "Assessor", "phoenix_mls": "MLS"}

Record = dict[str, Any]


def run_report_path(root: Path, run_id: str) -> Path:
    return root / RUNS_DIR / f"{run_id}.report.html"


def write_report(root: Path, run_id: str | None = None) -> Path:
    """Write ``report.html``, and with ``run_id`` also ``runs/<run_id>.report.html``.

    The run section shows ``run_id``'s record, else the newest one. Returns
    the path of ``report.html``; raises ``ManifestError`` when the manifest is
    unusable.

    Written property by property: one pass over the manifest gathers the
    order, the sources and the figures, the next writes each property's
    record to a temporary file in the store (one held at a time), and each
    page copies that file between its head and its tail. What it holds does
    not grow with the number of images.
    """
    manifest = manifest_store.load(root, lazy=True)
    runs = scan_runs(root).runs
    current = next((r for r in runs if r.run_id == run_id), None) if run_id else None
    if run_id is None and runs:
        current = runs[0]
    path = root / REPORT_NAME
    try:
        properties = manifest["properties"]
        overview = _overview(properties, current.run_id if current else None)
        # Anonymous (no name in the store) and on the store's disk, not in memory.
        with tempfile.TemporaryFile(dir=root, prefix=TEMP_PREFIX) as records:
            _write_records(records, root, properties, overview)
            if run_id is not None:
                page = _page(root, overview, runs, run_id, current, to_root="../")
                _write_page(run_report_path(root, run_id), page, records)
            _write_page(path, _page(root, overview, runs, run_id, current), records)
    except (KeyError, TypeError, AttributeError) as exc:
        raise manifest_store.ManifestError(
            f"{root / manifest_store.MANIFEST_NAME}: unexpected shape ({exc!r})"
        ) from exc
    return path


@dataclass
class _Overview:
    """What the page needs of the store besides the properties' records: small,
    whatever the store's size."""

    keys: list[str]  # the properties, in the page's order
    sources: list[str]  # every source seen, in the page's order
    images: int
    deduplicated: Counter[str]  # of the run shown: see _deduplicated


def _overview(properties: Mapping[str, Record], run_id: str | None) -> _Overview:
    """One pass over the properties, one held at a time (a lazy manifest parses
    each when asked); ``run_id``: the run shown, whose deduplicated images are counted."""
    order: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    images = 0
    deduplicated: Counter[str] = Counter()
    for key, prop in properties.items():
        order.append((prop.get("canonical_address") or "", prop["property_hash"], key))
        seen |= _sources_of(prop)
        images += len(prop["images"])
        if run_id is not None:
            deduplicated.update(_deduplicated(prop, run_id))
    keys = [key for *_, key in sorted(order)]
    return _Overview(keys, _source_order(seen), images, deduplicated)


def _write_records(
    out: BinaryIO, root: Path, properties: Mapping[str, Record], overview: _Overview
) -> None:
    """Each property's compact record, in the page's order, as comma-separated
    JSON (the items of the data's ``properties`` array), one property at a time."""
    for n, key in enumerate(overview.keys):
        record = _property(properties[key], overview.sources, root)
        out.write((b"," if n else b"") + _script_json(record).encode())


@dataclass
class _Page:
    """A page as the text before the properties' records and the text after them."""

    head: str
    tail: str


def _page(
    root: Path,
    overview: _Overview,
    runs: list[RunFile],
    run_id: str | None,
    current: RunFile | None,
    to_root: str = "",
) -> _Page:
    """The page around the properties' records; ``current`` is the run shown,
    ``to_root`` the relative path from the page's directory to the store."""
    title = "phx_scraper report" + (f" as of run {run_id}" if to_root else "")
    header = (
        f"<h1>{_e(title)}</h1><p class=meta>Store {_e(str(root))} · "
        f"{len(overview.keys)} properties · {overview.images} images · generated "
        f"{_e(manifest_store.utc_now())}"
        + (f' · <a href="{_e(to_root)}{REPORT_NAME}">latest report</a>' if to_root else "")
        + "</p>"
    )
    run = _run_section(root, current, overview.deduplicated, run_id, runs, to_root)
    before_data = BEFORE_DATA % {"title": _e(title), "css": CSS, "header": header, "run": run}
    return _Page(
        head=before_data + _data_head(to_root, overview.sources),
        tail="]}" + AFTER_DATA % {"script": SCRIPT},
    )


def _data_head(to_root: str, names: list[str]) -> str:
    """The page's data up to its properties' records: ``{"root":…,"properties":[``."""
    fields = {
        "root": to_root,
        "page_size": PAGE_SIZE,
        "sources": names,
        "labels": [LABELS.get(name, name) for name in names],
    }
    return _script_json(fields).removesuffix("}") + ',"properties":['


def _write_page(path: Path, page: _Page, records: BinaryIO) -> None:
    """Write ``page`` with the records in ``records`` (copied, not read whole)."""

    def write(out: BinaryIO) -> None:
        out.write(page.head.encode())
        records.seek(0)
        shutil.copyfileobj(records, out)
        out.write(page.tail.encode())

    atomic_write(path, write)


# -- properties ---------------------------------------------------------------


def _sources_of(prop: Record) -> set[str]:
    return set(prop["sources"]) | {o["source"] for i in prop["images"] for o in i["origins"]}


def _source_order(seen: set[str]) -> list[str]:
    return [name for name in SOURCES if name in seen] + sorted(seen - SOURCES.keys())


def _property(prop: Record, names: list[str], root: Path) -> Record:
    index = {name: i for i, name in enumerate(names)}
    score = quality(prop)
    groups: dict[str, list[Record]] = {}
    singles = []
    for image in sorted(prop["images"], key=_gallery_order):
        entry = _image(image, index, root)
        if image.get("group"):
            groups.setdefault(image["group"], []).append(entry)
            if image.get("best"):
                entry["b"] = 1
        else:
            singles.append(entry)
    outcomes = [
        {
            "source": name,
            "status": outcome.get("status"),
            "reason": outcome.get("reason"),
            "id": outcome.get("id"),
            "expected": outcome.get("photos_expected"),
            "listed": outcome.get("photos_listed"),
            "stored": outcome.get("photos_stored"),
        }
        for name, outcome in sorted(prop["sources"].items(), key=lambda kv: index[kv[0]])
    ]
    facts = [
        [LABELS.get(name, name), [[key, _fact(value)] for key, value in sorted(facts.items())]]
        for name, outcome in sorted(prop["sources"].items(), key=lambda kv: index[kv[0]])
        if (facts := outcome.get("facts"))
    ]
    return {
        "k": prop["property_hash"],
        "a": prop.get("address") or prop.get("canonical_address"),
        "c": prop.get("canonical_address"),
        "q": {
            "score": score.score,
            "completeness": score.completeness,
            "resolution": score.resolution,
            "coverage": score.coverage,
            "rejected_share": score.rejected_share,
        },
        "o": outcomes,
        "f": facts,
        # The best member first: it is the one to keep.
        "g": [sorted(members, key=lambda m: -m.get("b", 0)) for members in groups.values()],
        "i": singles,
        "r": [
            [r.get("source"), r.get("reason"), r.get("url"), r.get("photo_id")]
            for r in sorted(
                prop["rejected"], key=lambda r: (r.get("source") or "", r.get("url") or "")
            )
        ],
        "x": len(prop.get("missing") or ()),
    }


def _gallery_order(image: Record) -> tuple[int, str, int, str]:
    """As the sources list them, so a contact sheet reads like the source's gallery."""
    first = min(
        image["origins"],
        key=lambda o: (SOURCES.get(o["source"]) is None, o["source"], o.get("position") or 0),
    )
    known = list(SOURCES)
    rank = known.index(first["source"]) if first["source"] in known else len(known)
    return rank, first["source"], first.get("position") or 0, image["md5"]


def _image(image: Record, index: dict[str, int], root: Path) -> Record:
    md5, path = image["md5"], image["path"]
    ext = path.rpartition(".")[2]
    entry: Record = {
        "m": md5,
        "e": ext,
        "t": _thumb_on_disk(root, image),
        "w": image["width"],
        "h": image["height"],
        "s": sorted({index[o["source"]] for o in image["origins"]}),
    }
    if path != content_path(md5, ext):
        entry["p"] = path
    return entry


def _thumb_on_disk(root: Path, image: Record) -> int | None:
    """The smallest of the image's thumbnail sizes whose file is on disk (a stat
    each), None when there is none: a thumbnail the store lost would show as a
    broken image, so the page shows the full one. ``os.path``, not ``Path``: no
    path object (and interned parts) per image."""
    sizes = sorted(int(size) for size in image.get("thumbs") or {})
    return next(
        (s for s in sizes if os.path.exists(os.path.join(root, thumb_path(image["md5"], s)))),
        None,
    )


def _fact(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_fact(v) for v in value) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value)


# -- the run -------------------------------------------------------------------


def _run_section(
    root: Path,
    current: RunFile | None,
    shared: Counter[str],
    run_id: str | None,
    runs: list[RunFile],
    to_root: str,
) -> str:
    if current is None:
        missing = f"No run record for run {_e(run_id)}." if run_id else "No run recorded yet."
        runs_table = _run_list(root, runs, None, run_id, to_root)
        return f"<section id=run><h2>Run</h2><p>{missing}</p>{runs_table}</section>"
    record = current.record
    figures = summarize(record)
    when = " → ".join(_e(t) for t in (figures["started_at"], figures["finished_at"]) if t)
    parts = [
        f"<section id=run><h2>Run {_e(current.run_id)}</h2>",
        f"<p class=meta>{_e(figures['spider'])} · {_e(figures['finish_reason'])} · "
        f"{_e(figures['properties'])} properties{' · ' + when if when else ''}</p>",
        _source_table(record, shared),
        _image_stats(record.get("stats")),
        "<h3>Blocks and circuit breaker</h3>",
        block_chart(record.get("breaker") or {}),
        _failures(record.get("failures") or {}),
        _reconcile(root, current.run_id, record.get("reconcile")),
        _run_list(root, runs, current.run_id, run_id, to_root),
        "</section>",
    ]
    return "\n".join(parts)


def _deduplicated(prop: Record, run_id: str) -> Iterator[str]:
    """The source of each of the property's images this run got whose bytes came
    from another URL or source too (counted per source: the "deduplicated" column)."""
    for image in prop["images"]:
        if len(image["origins"]) > 1:
            for origin in image["origins"]:
                if origin.get("last_seen_run") == run_id:
                    yield origin["source"]


def _source_table(record: Record, shared: Counter[str]) -> str:
    sources = record.get("sources") or {}
    if not sources:
        return "<p>No source outcome in this run's record.</p>"
    rows = []
    for name, counts in sorted(sources.items()):
        statuses = ", ".join(
            f"{key.removeprefix('status_')} {value}"
            for key, value in sorted(counts.items())
            if key.startswith("status_")
        )
        stored = counts.get("photos_stored", 0)
        downloaded = counts.get("photos_downloaded", 0)
        rows.append(
            f"<tr><th>{_badge(name)} {_e(LABELS.get(name, name))}</th><td>{_e(statuses)}</td>"
            f"<td class=n>{stored}</td><td class=n>{downloaded}</td>"
            f"<td class=n>{stored - downloaded}</td><td class=n>{shared[name]}</td>"
            f"<td class=n>{counts.get('photos_rejected', 0)}</td></tr>"
        )
    return (
        "<table class=figures><thead><tr><th>source</th><th>properties</th>"
        "<th>images stored</th><th>downloaded</th><th>already stored</th>"
        '<th title="the same bytes as another URL or source: one file">deduplicated</th>'
        "<th>rejected</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _image_stats(stats: Any) -> str:
    if not isinstance(stats, dict):
        return ""
    rejected = sum(v for k, v in stats.items() if k.startswith("phx/image/rejected/"))
    return (
        f"<p class=meta>All sources: {stats.get('phx/image/stored', 0)} images written, "
        f"{stats.get('phx/image/deduplicated', 0)} downloaded but already stored, "
        f"{stats.get('phx/image/uptodate', 0)} not downloaded (up to date), "
        f"{rejected} rejected.</p>"
    )


def block_chart(breaker: dict[str, Record]) -> str:
    """Block rate and breaker trips per source, as an inline SVG bar chart."""
    rows = [(name, f) for name, f in sorted(breaker.items()) if isinstance(f, dict)]
    if not rows:
        return "<p>No block or breaker figures in this run's record.</p>"
    row, top, bar = 26, 26, 180
    most_trips = max([1] + [int(f.get("trips") or 0) for _, f in rows])
    height = top + row * len(rows) + 6
    out = [
        f'<svg class=chart role=img width=660 height={height} viewBox="0 0 660 {height}">'
        "<title>Block rate and breaker trips per source</title>",
        "<text x=110 y=16 class=axis>block rate (0–100 %)</text>",
        f"<text x=420 y=16 class=axis>breaker trips (0–{most_trips})</text>",
    ]
    for n, (name, f) in enumerate(rows):
        y = top + n * row
        rate = float(f.get("block_rate") or 0)
        trips = int(f.get("trips") or 0)
        rate_text = f"{100 * rate:.0f} % ({f.get('blocks', 0)} of {f.get('requests', 0)})"
        trips_text = f"{trips}" + (
            f", open {float(f.get('open_seconds') or 0):.0f} s" if trips else ""
        )
        if f.get("given_up"):
            trips_text += ", given up"
        out += [
            f"<text x=0 y={y + 15}>{_e(LABELS.get(name, name))}</text>",
            f"<rect x=110 y={y + 3} width={bar} height=16 class=track />",
            f"<rect x=110 y={y + 3} width={bar * min(rate, 1.0):.1f} height=16 class=rate />",
            f"<text x={110 + bar + 6} y={y + 15} class=value>{_e(rate_text)}</text>",
            f"<rect x=420 y={y + 3} width=100 height=16 class=track />",
            f"<rect x=420 y={y + 3} width={100 * trips / most_trips:.1f} height=16 class=trips />",
            f"<text x=526 y={y + 15} class=value>{_e(trips_text)}</text>",
        ]
    return "".join(out) + "</svg>"


def _failures(failures: dict[str, Any]) -> str:
    if not failures:
        return "<p>No failures.</p>"
    rows = "".join(
        f"<tr><td class=n>{_e(count)}</td><td>{_e(key)}</td></tr>"
        for key, count in failures.items()
    )
    return f"<h3>Failures by reason</h3><table class=figures>{rows}</table>"


def _reconcile(root: Path, run_id: str, summary: Any) -> str:
    out = ["<h3>Store check</h3>"]
    if not isinstance(summary, dict):
        return out[0] + "<p>Not recorded for this run.</p>"
    if "failed" in summary:
        return out[0] + f"<p class=bad>The check failed: {_e(summary['failed'])}</p>"
    errors, warnings = summary.get("errors", 0), summary.get("warnings", 0)
    level = "bad" if errors else "warn" if warnings else "good"
    out.append(
        f"<p class={level}>{_e(errors)} errors, {_e(warnings)} warnings, "
        f"{_e(summary.get('pending', 0))} pending; {_e(summary.get('files_checked', 0))} "
        "files re-hashed (details: <code>scrapy reconcile</code>)</p>"
    )
    try:
        report = json.loads((root / RUNS_DIR / f"{run_id}.reconcile.json").read_text())
    except (OSError, ValueError):
        return "".join(out)
    for word in ("errors", "warnings"):
        issues = report.get(word) or []
        if issues:
            items = "".join(f"<li>{_e(i.get('message'))}</li>" for i in issues[:ISSUE_LIMIT])
            more = (
                f"<li>… {len(issues) - ISSUE_LIMIT} more</li>" if len(issues) > ISSUE_LIMIT else ""
            )
            out.append(
                f"<details><summary>{len(issues)} {word}</summary><ul>{items}{more}</ul></details>"
            )
    return "".join(out)


def _run_list(
    root: Path, runs: list[RunFile], current: str | None, written: str | None, to_root: str
) -> str:
    """Every recorded run, linked to its report when it has one (``written``: being written)."""
    if not runs:
        return ""
    rows = []
    for run in runs:
        s = summarize(run.record)
        exists = run.run_id == written or run_report_path(root, run.run_id).exists()
        href = f"{to_root}{RUNS_DIR}/{run.run_id}.report.html"
        name = f'<a href="{_e(href)}">{_e(run.run_id)}</a>' if exists else _e(run.run_id)
        mark = " (this report)" if run.run_id == current else ""
        rows.append(
            f"<tr><td>{name}{mark}</td><td>{_e(s['finished_at'] or '-')}</td>"
            f"<td>{_e(s['spider'])}</td><td>{_e(s['finish_reason'])}</td>"
            f"<td class=n>{_e(s['properties'])}</td><td class=n>{s['photos_stored']}</td>"
            f"<td class=n>{s['photos_downloaded']}</td><td class=n>{s['photos_rejected']}</td>"
            f"<td class=n>{s['blocks']}</td></tr>"
        )
    return (
        "<h3>Runs</h3><table class=figures id=runs><thead><tr><th>run</th><th>finished</th>"
        "<th>spider</th><th>reason</th><th>properties</th><th>stored</th><th>downloaded</th>"
        "<th>rejected</th><th>blocks</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _badge(name: str) -> str:
    label = LABELS.get(name, name)
    return f'<span class="badge src-{_e(name)}" title="{_e(label)}">{_e(label[0])}</span>'


def _e(value: Any) -> str:
    return html.escape("-" if value is None else str(value))


def _script_json(data: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``</script>``, no ``<!--``."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


TEMPLATE = """<!doctype html>
<html lang=en>
<head>
<meta charset=utf-8>
<meta name=viewport content="width=device-width, initial-scale=1">
<title>%(title)s</title>
<style>%(css)s</style>
</head>
<body>
<header>%(header)s</header>
%(run)s
<section id=properties>
<h2>Properties</h2>
<noscript><p>The property list is drawn by the page's own script: allow JavaScript.</p></noscript>
<div class=controls>
<input id=search type=search placeholder="Search addresses or property_hash" aria-label="Search">
<nav class=pager><button id=prev type=button>‹ Previous</button>
<span id=position></span><button id=next type=button>Next ›</button></nav>
</div>
<div id=props></div>
</section>
<script type="application/json" id=phx-data>%(data)s</script>
<script>%(script)s</script>
</body>
</html>
"""
#: TEMPLATE around the page's data, which is written in pieces (see ``_write_page``).
BEFORE_DATA, AFTER_DATA = TEMPLATE.split("%(data)s")

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:0 16px;color:#222}
h1{font-size:22px;margin:16px 0 4px}h2{font-size:18px;margin:20px 0 8px}
h3{font-size:15px;margin:16px 0 6px}.meta{color:#666;margin:2px 0}
table.figures{border-collapse:collapse;margin:4px 0}
table.figures th,table.figures td{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.good{color:#1a7f37}.warn{color:#9a6700}.bad{color:#cf222e}
.badge{display:inline-block;min-width:14px;padding:0 4px;border-radius:3px;color:#fff;
font-size:11px;font-weight:600;text-align:center;background:#6e7781}
.src-zillow{background:#006aff}.src-redfin{background:#c82021}
.src-maricopa{background:#8250df}.src-phoenix_mls{background:#1a7f37}
svg.chart text{font-size:12px;fill:#222}svg.chart .axis{fill:#666}
svg.chart .track{fill:#eee}svg.chart .rate{fill:#cf222e}svg.chart .trips{fill:#9a6700}
.controls{display:flex;gap:16px;align-items:center;flex-wrap:wrap;margin-bottom:8px}
#search{font-size:15px;padding:4px 8px;width:320px}
article.prop{border:1px solid #ddd;border-radius:6px;padding:8px 12px;margin:0 0 12px}
article.prop h3{margin:0;font-size:16px;display:inline}
.score{float:right;font-weight:600}.score small{font-weight:400;color:#666}
table.outcomes td{padding:1px 8px 1px 0}.status-ok{color:#1a7f37}
.status-blocked,.status-failed{color:#cf222e}.status-no_match,.status-no_photos{color:#9a6700}
.facts{margin:4px 0}.fact{display:inline-block;margin-right:14px}.fact .k{color:#666}
.sheet{display:flex;flex-wrap:wrap;gap:6px;margin:8px 0}
.group{padding:2px 4px 4px;border:2px dashed #9a6700;border-radius:6px}
.group>.label{display:block;font-size:12px;color:#9a6700}
.group>.members{display:flex;flex-wrap:wrap;gap:6px}
a.thumb{position:relative;display:block;width:160px;height:120px;background:#f3f3f3}
a.thumb img{width:160px;height:120px;object-fit:cover;display:block}
a.thumb .badges{position:absolute;left:3px;top:3px;display:flex;gap:2px}
a.thumb .best{position:absolute;right:3px;top:3px;background:#9a6700;color:#fff;
font-size:11px;padding:0 4px;border-radius:3px}
table.rejected td{padding:1px 8px 1px 0;font-size:12px;word-break:break-all}
"""

SCRIPT = r"""
"use strict";
const DATA = JSON.parse(document.getElementById("phx-data").textContent);
const all = DATA.properties;
for (const p of all) p.hay = (p.a + " " + p.c + " " + p.k).toLowerCase();
let matches = all;
let page = 0;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value; else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function badge(index) {
  const name = DATA.sources[index], label = DATA.labels[index];
  return el("span", {class: "badge src-" + name, title: label}, label[0]);
}

function label(name) { return DATA.labels[DATA.sources.indexOf(name)] || name; }

function num(value) { return value === null || value === undefined ? "-" : String(value); }

function thumb(image, best) {
  const path = image.p || "full/" + image.m.slice(0, 2) + "/" + image.m + "." + image.e;
  const full = DATA.root + path;
  const src = image.t ? DATA.root + "thumbs/" + image.t + "/" + image.m + ".jpg" : full;
  const sources = image.s.map(i => DATA.labels[i]).join(", ");
  return el("a", {class: "thumb", href: full, title: image.w + "×" + image.h + " · " + sources},
    el("img", {src: src, loading: "lazy", alt: image.w + "×" + image.h + " photo from " + sources}),
    el("span", {class: "badges"}, ...image.s.map(badge)),
    best ? el("span", {class: "best"}, "★ best") : null);
}

function card(p) {
  const q = p.q;
  const parts = ["completeness", "resolution", "coverage", "rejected_share"]
    .filter(k => q[k] !== null).map(k => k.replace("_", " ") + " " + q[k]);
  const outcomes = el("table", {class: "outcomes"}, ...p.o.map(o => el("tr", {},
    el("td", {}, badge(DATA.sources.indexOf(o.source)), " " + label(o.source)),
    el("td", {class: "status-" + o.status}, o.status + (o.reason ? " (" + o.reason + ")" : "")),
    el("td", {}, o.id ? "id " + o.id : ""),
    el("td", {}, "photos: expected " + num(o.expected) + ", listed " + num(o.listed) +
      ", stored " + num(o.stored)))));
  const facts = p.f.map(([label, pairs]) => el("div", {class: "facts"},
    el("strong", {}, label + " facts "),
    ...pairs.map(([k, v]) => el("span", {class: "fact"}, el("span", {class: "k"}, k), " " + v))));
  const sheet = el("div", {class: "sheet"},
    ...p.g.map(members => el("div", {class: "group"},
      el("span", {class: "label"}, "near-duplicates (" + members.length + ")"),
      el("div", {class: "members"}, ...members.map(m => thumb(m, m.b))))),
    ...p.i.map(m => thumb(m, false)));
  const images = p.i.length + p.g.reduce((n, g) => n + g.length, 0);
  const rejected = p.r.length ? el("details", {class: "rejected", open: true},
    el("summary", {}, p.r.length + " rejected"),
    el("table", {class: "rejected"}, ...p.r.map(([source, reason, url, id]) => el("tr", {},
      el("td", {}, label(source)), el("td", {}, reason),
      el("td", {}, id || ""), el("td", {}, url))))) : null;
  return el("article", {class: "prop", id: "p-" + p.k, "data-key": p.k},
    el("div", {class: "score", title: parts.join(", ")}, "quality " + q.score + " ",
      el("small", {}, parts.join(" · "))),
    el("h3", {}, p.a), el("div", {class: "meta"}, p.c + " · " + p.k + " · " + images + " images" +
      (p.x ? " · " + p.x + " missing (scrapy reconcile)" : "")),
    outcomes, ...facts, sheet, rejected);
}

function draw() {
  const pages = Math.max(1, Math.ceil(matches.length / DATA.page_size));
  page = Math.min(page, pages - 1);
  const shown = matches.slice(page * DATA.page_size, (page + 1) * DATA.page_size);
  document.getElementById("props").replaceChildren(...shown.map(card));
  document.getElementById("position").textContent = " Page " + (page + 1) + " of " + pages +
    " · " + matches.length + (matches.length === all.length ? "" : " of " + all.length) +
    " properties ";
  document.getElementById("prev").disabled = page === 0;
  document.getElementById("next").disabled = page >= pages - 1;
}

document.getElementById("search").addEventListener("input", event => {
  const words = event.target.value.toLowerCase().split(/\s+/).filter(Boolean);
  matches = all.filter(p => words.every(w => p.hay.includes(w)));
  page = 0;
  draw();
});
for (const [id, step] of [["prev", -1], ["next", 1]]) {
  document.getElementById(id).addEventListener("click", () => {
    page += step;
    draw();
    document.getElementById("properties").scrollIntoView();
  });
}
draw();
"""
