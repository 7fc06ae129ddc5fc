"""The benchmark's corpus: photo-like JPEGs on disk, and a tiny HTTP server for them.

Layout (``PHOTOS_PER_PROPERTY`` photos per property, the last property may have fewer)::

    <cache>/<j:06d>.jpg               image j, the same bytes for a given j on every machine
    /<source>/p<k>.json               listing of property k on a source: {"address", "photos"}
    /<source>/p<k>/<i>.jpg            photo i of property k (image j = k * 20 + i)
    /_stats                           {"photos": n, "bytes": n} served since the last reset
    /_stats?reset=1                   the same, then back to zero

Even photos belong to ``zillow``, odd ones to ``redfin``; every tenth image
(``j % 10 == 0``) is listed by both sources, under two URLs with the same bytes,
as a photo shared between sites is. A crawl therefore requests ``urls(n)``
photos for ``n`` images.

Run ``python benchmarks/corpus.py serve --dir DIR --images N``: it binds
127.0.0.1 on a free port and prints the port on its first line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import Pool
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

#: Bump when the generator changes, so cached corpora are not mixed up.
VERSION = 1
PHOTOS_PER_PROPERTY = 20
SOURCES = ("zillow", "redfin")
SHARED_EVERY = 10
MIN_BYTES, MAX_BYTES = 150 * 1024, 400 * 1024
#: Tried in order; the first that lands the file in [MIN_BYTES, MAX_BYTES] wins.
QUALITIES = (85, 80, 75, 70, 65, 60, 90, 95)

_PHOTO = re.compile(r"^/(?P<source>[a-z]+)/p(?P<k>\d+)/(?P<i>\d+)\.jpg$")
_LISTING = re.compile(r"^/(?P<source>[a-z]+)/p(?P<k>\d+)\.json$")


def properties(n: int) -> int:
    return -(-n // PHOTOS_PER_PROPERTY)


def address(k: int) -> str:
    return f"{1000 + k} E BENCHMARK ST, PHOENIX, AZ 85001"


def owners(j: int) -> tuple[str, ...]:
    """The sources listing image j: its own, and the other one for a shared image."""
    own = SOURCES[j % 2]
    return SOURCES if j % SHARED_EVERY == 0 else (own,)


def listing(source: str, k: int, n: int) -> list[int]:
    """Photo numbers (i) of property k on ``source``."""
    first = k * PHOTOS_PER_PROPERTY
    return [
        j - first for j in range(first, min(n, first + PHOTOS_PER_PROPERTY)) if source in owners(j)
    ]


def urls(n: int) -> int:
    return sum(len(owners(j)) for j in range(n))


def cache_dir(base: Path) -> Path:
    return base / f"v{VERSION}"


def image_path(directory: Path, j: int) -> Path:
    return directory / f"{j:06d}.jpg"


def render(j: int) -> bytes:
    """Image j: sky and ground gradients, flat blocks, soft texture and sensor-like noise."""
    # Imported here: the crawl processes import this module for the layout alone,
    # and numpy would add to the start-up time they are measured with.
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(j)
    w, h = (1024, 1536) if j % 8 == 7 else (1536, 1024)
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    sky_top, sky_bottom, ground_top, ground_bottom = (
        rng.uniform(0, 255, 3).astype(np.float32) for _ in range(4)
    )
    horizon = rng.uniform(0.35, 0.6)
    sky = sky_top + (sky_bottom - sky_top) * (y / horizon)
    ground = ground_top + (ground_bottom - ground_top) * ((y - horizon) / (1 - horizon))
    tilt = (x - 0.5) * rng.uniform(-60, 60, 3).astype(np.float32)
    pixels = np.broadcast_to(np.where(y < horizon, sky, ground) + tilt, (h, w, 3)).copy()
    for _ in range(int(rng.integers(4, 12))):
        bw, bh = int(rng.integers(w // 12, w // 3)), int(rng.integers(h // 12, h // 3))
        bx, by = int(rng.integers(0, w - bw)), int(rng.integers(int(h * 0.2), h - bh))
        pixels[by : by + bh, bx : bx + bw] = rng.uniform(0, 255, 3)
    coarse = rng.normal(128, 20, (h // 32, w // 32, 3)).clip(0, 255).astype(np.uint8)
    texture = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
    pixels += np.asarray(texture, dtype=np.float32) - 128
    pixels += rng.normal(0, rng.uniform(3, 9), (h, w, 1)).astype(np.float32)
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x010F] = "BenchCam"  # Make
    exif[0x0110] = "Model 1"  # Model
    exif[0x0112] = 1  # Orientation: upright
    exif[0x0132] = "2024:01:01 12:00:00"  # DateTime
    for quality in QUALITIES:
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=quality, exif=exif.tobytes())
        if MIN_BYTES <= buf.tell() <= MAX_BYTES:
            return buf.getvalue()
    raise RuntimeError(f"image {j}: no quality lands in {MIN_BYTES}-{MAX_BYTES} bytes")


def _write(job: tuple[Path, int]) -> None:
    directory, j = job
    target = image_path(directory, j)
    temp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    temp.write_bytes(render(j))
    temp.replace(target)  # a present file is a complete one


def build(base: Path, n: int, workers: int | None = None) -> Path:
    """Generate the images missing from the cache (in a process pool); returns its directory."""
    directory = cache_dir(base)
    directory.mkdir(parents=True, exist_ok=True)
    missing = [(directory, j) for j in range(n) if not image_path(directory, j).exists()]
    if missing:
        print(f"Generating {len(missing)} corpus images in {directory}", file=sys.stderr)
        with Pool(workers or os.cpu_count() or 1) as pool:
            pool.map(_write, missing, chunksize=8)
    return directory


class CorpusServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops connections when a crawl opens 16
    # at once; a dropped SYN costs the client seconds of retransmission timeouts.
    request_queue_size = 128

    def __init__(self, directory: Path, n: int) -> None:
        super().__init__(("127.0.0.1", 0), CorpusHandler)
        self.directory = directory
        self.n = n
        self.lock = threading.Lock()
        self.photos = 0
        self.bytes = 0


class CorpusHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as CDNs do
    server: CorpusServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/_stats":
            self._stats(reset="reset" in parse_qs(parts.query))
        elif match := _LISTING.match(parts.path):
            self._listing(match["source"], int(match["k"]))
        elif match := _PHOTO.match(parts.path):
            self._photo(match["source"], int(match["k"]), int(match["i"]))
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

    def _stats(self, reset: bool) -> None:
        with self.server.lock:
            body = {"photos": self.server.photos, "bytes": self.server.bytes}
            if reset:
                self.server.photos = self.server.bytes = 0
        self._send(HTTPStatus.OK, json.dumps(body).encode(), "application/json")

    def _listing(self, source: str, k: int) -> None:
        if source not in SOURCES or k >= properties(self.server.n):
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
            return
        photos = [f"/{source}/p{k}/{i}.jpg" for i in listing(source, k, self.server.n)]
        body = json.dumps({"address": address(k), "photos": photos}).encode()
        self._send(HTTPStatus.OK, body, "application/json")

    def _photo(self, source: str, k: int, i: int) -> None:
        j = k * PHOTOS_PER_PROPERTY + i
        if i >= PHOTOS_PER_PROPERTY or j >= self.server.n or source not in owners(j):
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
            return
        body = image_path(self.server.directory, j).read_bytes()
        with self.server.lock:
            self.server.photos += 1
            self.server.bytes += len(body)
        self._send(HTTPStatus.OK, body, "image/jpeg")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # thousands of requests; the counts are in /_stats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve DIR on 127.0.0.1, print the port")
    serve.add_argument("--dir", type=Path, required=True)
    serve.add_argument("--images", type=int, required=True)
    generate = commands.add_parser("build", help="generate the images missing under DIR")
    generate.add_argument("--dir", type=Path, required=True)
    generate.add_argument("--images", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "build":
        print(build(args.dir, args.images))
        return
    server = CorpusServer(args.dir, args.images)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
