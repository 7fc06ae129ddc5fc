"""Content-addressed files: names derived from MD5 digests, atomic durable writes.

Plain Python (no Scrapy): the store can be checked and repaired by tools that
never start a crawl. Layout under the store root::

    full/<md5[:2]>/<md5>.<ext>      the stored image; md5 = MD5 of this file's bytes
    thumbs/<size>/<md5>.jpg         its thumbnails (longest side = size)
    originals/<md5[:2]>/<md5>.<ext> the bytes as downloaded (PHX_STORE_ORIGINALS), md5 = source_md5
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

#: Prefix of every temporary file, so reconciliation can tell them from orphans.
TEMP_PREFIX = ".tmp-"

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def content_path(md5: str, ext: str, kind: str = "full") -> str:
    """Relative path of a stored image: ``full/ab/ab…ef.jpg`` (or ``originals/…``)."""
    return f"{kind}/{md5[:2]}/{md5}.{ext}"


def thumb_path(md5: str, size: int) -> str:
    """Relative path of a thumbnail: ``thumbs/256/ab…ef.jpg``."""
    return f"thumbs/{size}/{md5}.jpg"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path, data: bytes | Callable[[BinaryIO], None], *, exclusive: bool = False
) -> bool:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one.

    ``data`` may be a function that writes to the open file (a large document
    written in pieces, never held whole in memory).

    Temp file in the same directory, fsync, rename, fsync of the directory.
    ``exclusive``: an existing file is left alone and False returned; checking
    and creating are one step (a hard link), so two threads or processes
    storing the same content store it once. Returns whether it was written.
    """
    tmp = path.parent / f"{TEMP_PREFIX}{path.name}.{os.getpid()}.{os.urandom(4).hex()}"
    try:
        with _create(tmp) as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                tmp.unlink()
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
    return True


def _create(path: Path) -> BinaryIO:
    """Open a new file for writing, making its directory only when it is missing
    (a ``mkdir`` per file was 1 % of a crawl's CPU)."""
    try:
        return open(path, "wb")
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "wb")


def store_content(
    root: Path, data: bytes, ext: str, kind: str = "full", md5: str | None = None
) -> tuple[str, str, bool]:
    """Store ``data`` under its MD5 name (``md5``, when the caller already has it)
    unless it is already there.

    Returns ``(md5, relative path, written)``. An existing file is never
    rewritten; its mtime is refreshed so cleanup's grace period counts from
    the last time a crawl wanted it.
    """
    md5 = md5 or md5_hex(data)
    rel = content_path(md5, ext, kind)
    path = root / rel
    if path.exists() or not atomic_write(path, data, exclusive=True):
        with contextlib.suppress(OSError):
            os.utime(path)
        return md5, rel, False
    return md5, rel, True
