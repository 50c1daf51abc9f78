"""Room on disk for a cache entry: a build the disk cannot hold is refused before decoding, and the pixel file's
blocks are reserved before it is mapped (a mapped sparse file on a disk that fills up kills the process with SIGBUS,
no message, and leaves the half-built folder filling the disk)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np

from fer.classes import IMAGE_SIZE
from fer.errors import DataError

_PIXELS = IMAGE_SIZE * IMAGE_SIZE


def entry_bytes(n: int) -> int:
    """An upper bound of an entry's size on disk: pixels, labels and splits, names (JSON-escaped), small files."""
    return n * (_PIXELS + 8 + 1 + 256) + 2**20


def check_free_space(cache_dir: Path, n: int) -> None:
    """Refuse up front a build the disk cannot hold (it would fail after decoding everything)."""
    needed, free = entry_bytes(n), shutil.disk_usage(cache_dir).free
    if needed > free:
        raise DataError(f"not enough free space for the image cache in {cache_dir}: {n} images need up to "
                        f"{needed / 2**20:.0f} MB, {free / 2**20:.0f} MB are free; free some space, or point "
                        "FER_CACHE_DIR (data.cache_dir) at another disk")


def reserved_map(path: Path, n: int) -> np.memmap:
    """A writable [n,48,48] uint8 map whose blocks are allocated now: writing into a sparse mapped file on a disk
    that fills up meanwhile kills the process with SIGBUS, with no message; a reservation fails as ENOSPC here."""
    with open(path, "wb") as fh:
        try:
            os.posix_fallocate(fh.fileno(), 0, n * _PIXELS)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            fh.truncate(n * _PIXELS)  # a file system without fallocate: a sparse file, as before
    return np.memmap(path, mode="r+", dtype=np.uint8, shape=(n, IMAGE_SIZE, IMAGE_SIZE))
