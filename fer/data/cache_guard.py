"""Keeping cache entries intact: checksums of an entry's files, and locks that say an entry is in use.

Every process that has an entry open holds a shared lock on the entry's `.lock` file (fcntl.flock: released by the
kernel when the process ends, however it ends). A builder holds an exclusive lock on its temporary folder's lock.
Removing an entry or a temporary folder first takes its lock exclusively without waiting: if that fails, someone
uses it (or is still building it) and it stays. So parallel runs with different data settings never delete each
other's entries, and the folders of a builder that was killed are cleaned up by the next one.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

LOCK = ".lock"


def file_checksum(path: Path) -> str:
    """SHA-256 of a file, read in chunks (never mapped: reading a big cache does not grow our RSS)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def checksums(folder: Path, names: list[str]) -> dict[str, str]:
    return {name: file_checksum(folder / name) for name in names}


def damaged_files(folder: Path, recorded: dict[str, str]) -> list[str]:
    """The files whose bytes no longer match the checksums recorded when the entry was built."""
    bad = []
    for name, digest in recorded.items():
        try:
            if file_checksum(folder / name) != digest:
                bad.append(name)
        except OSError:
            bad.append(name)
    return bad


def hold(folder: Path, exclusive: bool = False, wait: bool = True) -> int | None:
    """An open descriptor holding the folder's lock (close it to release), or None when `wait` is false and someone
    else holds it in a conflicting mode. FileNotFoundError when the folder is gone."""
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def remove_if_unused(folder: Path) -> bool:
    """Delete `folder` when nobody holds its lock; True if it was deleted."""
    try:
        fd = hold(folder, exclusive=True, wait=False)
    except FileNotFoundError:
        return False
    if fd is None:
        return False
    try:
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        os.close(fd)
    return True


def remove_unused(folders: list[Path], what: str) -> None:
    for folder in folders:
        if remove_if_unused(folder):
            log.info("removed %s %s", what, folder)
        else:
            log.debug("kept %s %s: in use", what, folder)
