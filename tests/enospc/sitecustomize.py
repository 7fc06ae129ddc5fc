"""Loaded by the ENOSPC test's crawl subprocess: fsync fails with ENOSPC after N files.

The store's write primitive (temp file, write, fsync, rename) meets the error
where a full disk really reports it, so the real clean-up code runs.
"""

import errno
import os
import stat
from typing import Any

_fsync = os.fsync
_left = [int(os.environ["PHX_TEST_ENOSPC_AFTER"])]


def fsync(fd: Any) -> None:
    if stat.S_ISREG(os.fstat(fd).st_mode):
        if _left[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        _left[0] -= 1
    _fsync(fd)


os.fsync = fsync
