"""Throughput of the images pipeline against Scrapy's stock pipelines (``make bench``).

Builds (once, cached) a corpus of photo-like JPEGs, serves it on 127.0.0.1 and
crawls it, each crawl in its own process, with:

a  our full pipeline: hash, validate, standardize, thumbnail, perceptual hash,
   URL index, manifest (the project's settings), on a fresh store
b  stock ImagesPipeline with a 256x256 thumbnail, fresh store
c  stock ImagesPipeline without thumbnails, fresh store
d  stock FilesPipeline, fresh store
e  (a) again on the store (a) just filled: nothing should be downloaded

(a)-(d) run in alternating order (a b c d, then d c b a, ...) in each of
``--repeat`` repetitions, (e) after them. Wall time, CPU time and peak RSS are
those of the crawl process, from ``os.wait4``. Prints the medians and the
ratios, and writes them to ``--out`` (benchmarks/results/latest.json).
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import corpus  # benchmarks/ is sys.path[0]: this file runs as a script

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

STOCK_ORDER = ("a", "b", "c", "d")
VARIANTS = {
    "a": "our full pipeline",
    "b": "stock ImagesPipeline, 256px thumbnail",
    "c": "stock ImagesPipeline, no thumbnail",
    "d": "stock FilesPipeline",
    "e": "(a) again, store kept",
}
#: ratio name -> (threshold, True when higher is better)
TARGETS = {
    "a_over_b": (4.0, True),
    "a_over_c": (1.5, True),
    "rerun_fraction": (0.10, False),
}
RSS_TARGET_MB = 250.0
SMOKE_IMAGES = 50
MIB = 1024 * 1024


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="corpus size (default 2000)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument(
        "--smoke", action="store_true", help=f"{SMOKE_IMAGES} images, 1 repetition (CI)"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "latest.json")
    parser.add_argument(
        "--corpus-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "phx-bench-corpus",
        help="where generated images are cached (default: $TMPDIR/phx-bench-corpus)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="OUT",
        help="instead of benchmarking, run (a) once under py-spy (all threads) and write "
        "its profile to OUT: speedscope for .json, flamegraph for .svg, else collapsed stacks",
    )
    parser.add_argument(
        "--gil",
        action="store_true",
        help="with --profile: sample only threads holding the GIL (where Python time goes)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.images, args.repeat = SMOKE_IMAGES, 1
    if args.images < 1 or args.repeat < 1:
        parser.error("--images and --repeat must be at least 1")
    return args


@contextmanager
def corpus_server(directory: Path, images: int) -> Any:
    command = [sys.executable, str(HERE / "corpus.py"), "serve", "--dir", str(directory)]
    server = subprocess.Popen(
        [*command, "--images", str(images)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def served(base_url: str) -> dict[str, int]:
    """Photos and bytes the server sent since the last call (and resets them)."""
    with urllib.request.urlopen(f"{base_url}/_stats?reset=1", timeout=10) as answer:
        counts: dict[str, int] = json.load(answer)
    return counts


def crawl_command(variant: str, base_url: str, images: int, store: Path, stats: Path) -> list[str]:
    return [
        *("--variant", variant, "--base-url", base_url, "--images", str(images)),
        *("--store", str(store), "--stats-out", str(stats)),
    ]


def child_env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


def run_variant(
    variant: str, base_url: str, images: int, store: Path, work: Path, timeout: float
) -> dict[str, Any]:
    """One crawl in a child process: its wall time, rusage and what it downloaded."""
    stats_path = work / f"stats-{variant}.json"
    log_path = work / f"crawl-{variant}.log"
    stats_path.unlink(missing_ok=True)
    served(base_url)
    args = crawl_command(variant, base_url, images, store, stats_path)
    with log_path.open("w") as log:
        started = time.monotonic()
        child = subprocess.Popen(
            [sys.executable, str(HERE / "crawl.py"), *args],
            cwd=ROOT,
            env=child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        watchdog = threading.Timer(timeout, child.kill)
        watchdog.start()
        try:
            # wait4, not wait: the rusage of this child alone (CPU of all its threads, peak RSS).
            _, status, usage = os.wait4(child.pid, 0)
        finally:
            watchdog.cancel()
        wall = time.monotonic() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0 or not stats_path.exists():
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"crawl ({variant}) exited with {child.returncode}:\n{tail}")
    stats = json.loads(stats_path.read_text())
    sent = served(base_url)
    urls = corpus.urls(images)
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "wall_s": round(wall, 3),
        "crawl_s": round(stats["crawl_s"], 3),
        "cpu_s": round(cpu, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # ru_maxrss is in KiB on Linux
        "images_per_s": round(urls / wall, 2),
        "mb_per_s": round(sent["bytes"] / MIB / wall, 2),
        "cpu_s_per_image": round(cpu / urls, 5),
        "downloaded": downloaded(variant, stats),
        "served": sent["photos"],
        "served_mb": round(sent["bytes"] / MIB, 1),
        "rejected": sum(v for k, v in stats.items() if k.startswith("phx/image/rejected/")),
        "errors": stats.get("log_count/ERROR", 0),
    }


def downloaded(variant: str, stats: dict[str, Any]) -> int:
    """Images the pipeline downloaded and processed, from its own stats."""
    if variant in ("a", "e"):
        return int(stats.get("phx/image/stored", 0) + stats.get("phx/image/deduplicated", 0))
    return int(stats.get("file_status_count/downloaded", 0))


def order(repetition: int) -> tuple[str, ...]:
    return STOCK_ORDER if repetition % 2 == 0 else STOCK_ORDER[::-1]


def benchmark(args: argparse.Namespace, base_url: str, work: Path) -> dict[str, Any]:
    urls = corpus.urls(args.images)
    timeout = 120 + urls * 2.0  # a hung crawl must not hang the benchmark
    host = machine()  # before the runs: the load average says how busy the machine was
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for repetition in range(args.repeat):
        stores = {v: work / f"store-{v}" for v in STOCK_ORDER}
        for variant in order(repetition):
            shutil.rmtree(stores[variant], ignore_errors=True)
            result = run_variant(variant, base_url, args.images, stores[variant], work, timeout)
            runs[variant].append(result)
            report_run(repetition, variant, result)
            if variant != "a":
                shutil.rmtree(stores[variant])  # the disk holds one full store besides (a)'s
        result = run_variant("e", base_url, args.images, stores["a"], work, timeout)
        runs["e"].append(result)
        report_run(repetition, "e", result)
        shutil.rmtree(stores["a"])
    medians = {v: median_of(results) for v, results in runs.items()}
    ratios = {
        "a_over_b": ratio(medians["a"]["images_per_s"], medians["b"]["images_per_s"]),
        "a_over_c": ratio(medians["a"]["images_per_s"], medians["c"]["images_per_s"]),
        "a_over_d": ratio(medians["a"]["images_per_s"], medians["d"]["images_per_s"]),
        "rerun_fraction": ratio(medians["e"]["wall_s"], medians["a"]["wall_s"]),
        # The same without interpreter start-up and imports (about 1 s per process).
        "rerun_fraction_crawl": ratio(medians["e"]["crawl_s"], medians["a"]["crawl_s"]),
    }
    return {
        "images": args.images,
        "photo_urls": urls,
        "properties": corpus.properties(args.images),
        "repeat": args.repeat,
        "variants": {v: {"name": VARIANTS[v], **medians[v]} for v in VARIANTS},
        "ratios": ratios,
        "targets": targets(ratios, medians),
        "problems": problems(runs, urls),
        "runs": runs,
        "machine": host,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def report_run(repetition: int, variant: str, result: dict[str, Any]) -> None:
    print(
        f"  rep {repetition + 1} ({variant}): {result['wall_s']:.1f} s wall, "
        f"{result['images_per_s']:.1f} images/s, {result['cpu_s']:.1f} s CPU, "
        f"{result['peak_rss_mb']:.0f} MB peak RSS, {result['downloaded']} downloaded",
        file=sys.stderr,
        flush=True,
    )


def median_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("wall_s", "crawl_s", "cpu_s", "images_per_s", "mb_per_s", "cpu_s_per_image")
    medians: dict[str, Any] = {k: round(statistics.median(r[k] for r in results), 5) for k in keys}
    medians["peak_rss_mb"] = statistics.median(r["peak_rss_mb"] for r in results)
    medians["peak_rss_mb_max"] = max(r["peak_rss_mb"] for r in results)
    medians["downloaded"] = max(r["downloaded"] for r in results)
    medians["served"] = max(r["served"] for r in results)
    return medians


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


def targets(ratios: dict[str, float | None], medians: dict[str, Any]) -> dict[str, Any]:
    checked: dict[str, Any] = {}
    for name, (threshold, higher) in TARGETS.items():
        value = ratios[name]
        met = value is not None and (value >= threshold if higher else value <= threshold)
        checked[name] = {"target": threshold, "value": value, "met": met}
    rss = medians["a"]["peak_rss_mb_max"]
    checked["a_peak_rss_mb"] = {"target": RSS_TARGET_MB, "value": rss, "met": rss <= RSS_TARGET_MB}
    return checked


def problems(runs: dict[str, list[dict[str, Any]]], urls: int) -> list[str]:
    """Anything that makes the figures meaningless: a photo not fetched, or fetched again."""
    found = []
    for variant, results in runs.items():
        expected = 0 if variant == "e" else urls
        for n, result in enumerate(results, 1):
            if result["downloaded"] != expected or result["served"] != expected:
                found.append(
                    f"({variant}) repetition {n}: downloaded {result['downloaded']}, "
                    f"served {result['served']}, expected {expected}"
                )
            if result["rejected"] or result["errors"]:
                found.append(
                    f"({variant}) repetition {n}: {result['rejected']} images rejected, "
                    f"{result['errors']} errors logged"
                )
    return found


def machine() -> dict[str, Any]:
    import PIL
    import scrapy

    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        model = names[0].partition(":")[2].strip() if names else ""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "scrapy": scrapy.__version__,
        "pillow": PIL.__version__,
        "platform": platform.platform(),
    }


def print_summary(result: dict[str, Any]) -> None:
    print(
        f"\n{result['images']} images ({result['photo_urls']} photo URLs, "
        f"{result['properties']} properties), median of {result['repeat']}:"
    )
    print(
        f"{'variant':<44} {'images/s':>9} {'MB/s':>7} {'CPU s/img':>10} "
        f"{'peak RSS MB':>12} {'wall s':>8}"
    )
    for variant, figures in result["variants"].items():
        print(
            f"{variant} {figures['name']:<42} {figures['images_per_s']:>9.1f} "
            f"{figures['mb_per_s']:>7.1f} {figures['cpu_s_per_image']:>10.4f} "
            f"{figures['peak_rss_mb']:>12.0f} {figures['wall_s']:>8.1f}"
        )
    print()
    for name, value in result["ratios"].items():
        target = result["targets"].get(name)
        verdict = ""
        if target:
            sign = ">=" if TARGETS[name][1] else "<="
            verdict = (
                f"  (target {sign} {target['target']}: {'met' if target['met'] else 'NOT met'})"
            )
        print(f"{name:<21} {value}{verdict}")
    rss = result["targets"]["a_peak_rss_mb"]
    print(
        f"{'a_peak_rss_mb':<21} {rss['value']}  (target <= {rss['target']}: "
        f"{'met' if rss['met'] else 'NOT met'})"
    )
    for problem in result["problems"]:
        print(f"PROBLEM: {problem}")


def profile(args: argparse.Namespace, base_url: str, work: Path) -> None:
    """(a) on a fresh store, then (e) on it, each under py-spy (every thread, 200 Hz)."""
    venv_bin = Path(sys.executable).parent
    spy = shutil.which("py-spy", path=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}")
    if spy is None:
        sys.exit("--profile needs py-spy (.venv/bin/pip install py-spy)")
    out = args.profile.resolve()
    fmt = {".json": "speedscope", ".svg": "flamegraph"}.get(out.suffix, "raw")
    store = work / "store-profile"
    for variant, target in (("a", out), ("e", out.with_stem(f"{out.stem}-rerun"))):
        command = [
            *(spy, "record", "--threads", "--rate", "200", "--format", fmt),
            *(["--gil"] if args.gil else []),
            *("--output", str(target), "--", sys.executable, str(HERE / "crawl.py")),
            *crawl_command(variant, base_url, args.images, store, work / "stats-profile.json"),
        ]
        subprocess.run(command, cwd=ROOT, env=child_env(), check=True)
        print(f"\nProfile of ({variant}): {target}")
        if fmt == "raw":
            print_profile(target)


def print_profile(path: Path, top: int = 25) -> None:
    """Per thread, and the functions most often on the stack (py-spy's collapsed stacks)."""
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        samples = int(count)
        total += samples
        threads[frames[0]] += samples
        for frame in set(frames[1:]):
            inclusive[frame] += samples
    for name, samples in [*threads.most_common(), *inclusive.most_common(top)]:
        print(f"{samples / total:6.1%}  {name}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    directory = corpus.build(args.corpus_dir, args.images)
    with (
        tempfile.TemporaryDirectory(prefix="phx-bench-") as tmp,
        corpus_server(directory, args.images) as base_url,
    ):
        work = Path(tmp)
        if args.profile:
            profile(args, base_url, work)
            return
        print(
            f"Benchmark: {args.images} images, {args.repeat} repetition(s), "
            f"corpus served at {base_url}",
            file=sys.stderr,
        )
        result = benchmark(args, base_url, work)
    print_summary(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nWritten to {args.out}")
    if result["problems"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
