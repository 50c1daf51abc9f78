"""sqlite files named by URL (sqlite:////abs/path.db), as the MLflow store and Optuna's study storage use them: the
file behind a URL, and the lock under which processes starting together create one."""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_PREFIX = "sqlite:///"


def sqlite_file(url: str) -> Path | None:
    """The database file of a sqlite URL; None for any other URL (a server, a journal file)."""
    return Path(url[len(_PREFIX):]) if url.startswith(_PREFIX) else None


@contextmanager
def creation_lock(url: str) -> Iterator[None]:
    """One process at a time creates what a new sqlite file needs (tables, an experiment, a study): processes
    starting together would otherwise each try. A no-op for other URLs, whose servers serialise this themselves."""
    db = sqlite_file(url)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.parent / f".{db.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
