"""Files that readers see whole or not at all: written under a temporary name beside the target, flushed to disk,
given the mode a normal file gets (0666 less the umask; mkstemp's 0600 would hide a shared model or CSV from
others), then renamed over the target. On any failure the temporary file is removed and the target is untouched."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields the temporary path to write; on leaving the block it becomes `path` (fsynced, mode 0666 & ~umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        publish(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def publish(tmp: str | Path, path: str | Path) -> None:
    """A finished temporary file becomes `path`: flushed to disk first (the name never points at data still in
    flight), given a normal file's mode, then renamed over the target."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
