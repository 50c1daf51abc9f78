"""Files that readers see whole or not at all: written under a temporary name beside the target, flushed to disk,
given the mode a normal file gets (0666 less the umask; mkstemp's 0600 would hide a shared model or CSV from
others), then renamed over the target. On any failure the temporary file is removed and the target is untouched;
a failure that comes from the target's disk (full, read-only, no permission) is one line naming the file.

A writer holds a lock on its temporary file while it lives (fcntl.flock: the kernel drops it when the process ends,
however it ends). So the temporary files of a writer that was killed (kill -9, power loss) are found by the next
write to the same target, unlocked, and removed, while those of a writer still at work are left alone."""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
import time
from contextlib import contextmanager
from glob import escape
from pathlib import Path
from typing import Iterator

from fer.errors import UserError

# failures a user fixes on their side (free space, another folder, permissions), not bugs: told in one line
_FULL, _CLOSED = "free some space, or choose another place", "choose a place you can write to"
_TARGET_FAULTS = {
    errno.ENOSPC: ("no space left on the device", _FULL),
    errno.EDQUOT: ("the disk quota is used up", _FULL),
    errno.EFBIG: ("the file would be larger than the file system (or ulimit -f) allows", _FULL),
    errno.EROFS: ("the file system is read-only", _CLOSED),
    errno.EACCES: ("permission denied", _CLOSED),
    errno.EPERM: ("permission denied", _CLOSED),
}
_CREATION_GRACE_S = 5.0  # a temporary file younger than this may be one whose writer has not locked it yet


def target_fault(exc: BaseException) -> tuple[str, str] | None:
    """(what went wrong, what to do), in words, when `exc` is a write failing because of its target's disk."""
    return _TARGET_FAULTS.get(exc.errno) if isinstance(exc, OSError) else None


@contextmanager
def reporting_target_faults(shown_as: str | Path) -> Iterator[None]:
    """Turn a disk-full / read-only / permission failure inside the block into one UserError naming the target
    (`shown_as`: its path, or e.g. "output=<path>" where a setting chose it)."""
    try:
        yield
    except OSError as exc:
        fault = target_fault(exc)
        if fault is None:
            raise
        raise UserError(f"cannot write {shown_as}: {fault[0]}; nothing was left there ({fault[1]})") from exc


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temporary_names(path: Path) -> tuple[str, str]:
    """(prefix, suffix) of the temporary files of `path`: the real suffix last, for writers that choose a format
    from the file name (OpenCV's video writer)."""
    return f".{path.name}.", f".tmp{path.suffix}"


def remove_abandoned(path: Path) -> int:
    """Remove the temporary files that killed writers left beside `path`; returns how many."""
    prefix, suffix = _temporary_names(path)
    removed = 0
    for candidate in path.parent.glob(f"{escape(prefix)}*{escape(suffix)}"):
        try:
            if time.time() - candidate.stat().st_mtime < _CREATION_GRACE_S:
                continue
            fd = os.open(candidate, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live writer's
        else:
            candidate.unlink(missing_ok=True)
            removed += 1
        finally:
            os.close(fd)
    return removed


class Staged:
    """A temporary file beside `path`, locked by this process until it is published or discarded."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned(self.path)
        prefix, suffix = _temporary_names(self.path)
        self._fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=self.path.parent)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self.tmp = Path(tmp)

    def publish(self) -> None:
        publish(self.tmp, self.path)
        self._close()

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)
        self._close()

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@contextmanager
def atomic_path(path: str | Path, shown_as: str | None = None) -> Iterator[Path]:
    """Yields the temporary path to write; on leaving the block it becomes `path` (fsynced, mode 0666 & ~umask).
    `shown_as` names the target in the one-line error of a full or unwritable disk (default: the path)."""
    with reporting_target_faults(shown_as or path):
        staged = Staged(path)
        try:
            yield staged.tmp
            staged.publish()
        finally:
            staged.discard()  # after publish: nothing left to remove


def publish(tmp: str | Path, path: str | Path) -> None:
    """A finished temporary file becomes `path`: flushed to disk first (the name never points at data still in
    flight), given a normal file's mode, then renamed over the target."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def publish_folder(tmp: str | Path, path: str | Path) -> None:
    """A finished temporary folder (its files written, none open for writing) becomes `path`, as publish() does for
    one file: every file and the folder itself flushed to disk first, then one rename. OSError when `path` is taken
    (a non-empty folder): the caller decides whose copy stays."""
    for file in sorted(Path(tmp).iterdir()):
        if file.is_file():
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())
    folder = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    os.rename(tmp, path)
