"""predict.py, export.py and the runtime never replace a file they did not write. They keep a ledger of their
outputs (path -> SHA-256 of what was written) in <cache_dir>/outputs.json: an existing file may be replaced when the ledger has it
with the same content, i.e. an earlier output nobody has edited since; anything else (a labels CSV, a file of the
user's, an output edited by hand) only with overwrite=true."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fer.errors import UserError
from fer.runtime.atomic import atomic_path

log = logging.getLogger(__name__)


def env_cache_dir() -> Path | None:
    """$FER_CACHE_DIR (None when unset), checked: a path that exists and is not a folder is one line here, not a
    FileExistsError from deep inside whatever first writes there."""
    value = os.environ.get("FER_CACHE_DIR")
    if not value:
        return None
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"FER_CACHE_DIR={value} is a file, not a folder: point it at a folder (made if missing)")
    return path


def default_ledger() -> Path:
    """The runtime's ledger: in $FER_CACHE_DIR, as predict.py's (which defaults to the checkout's .cache/fer), else
    in the user's cache folder."""
    return (env_cache_dir() or Path.home() / ".cache" / "fer") / "outputs.json"


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class OutputGuard:
    def __init__(self, ledger: str | Path, overwrite: bool = False):
        self.ledger, self.overwrite = Path(ledger).expanduser(), bool(overwrite)

    @contextmanager
    def _locked(self) -> Iterator[dict[str, str]]:
        """The ledger, read and (on exit) written back under a lock: parallel predict.py runs share it."""
        self.ledger.parent.mkdir(parents=True, exist_ok=True)
        with open(self.ledger.with_name(self.ledger.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                entries = json.loads(self.ledger.read_text()) if self.ledger.is_file() else {}
            except ValueError:
                entries = {}
            before = dict(entries)
            yield entries
            if entries != before:
                with atomic_path(self.ledger, shown_as=f"fer's output ledger {self.ledger}") as tmp:
                    tmp.write_text(json.dumps(entries, indent=1))

    @contextmanager
    def claimed(self, *paths: Path | None) -> Iterator[None]:
        """Hold `paths` for this process alone (a lock per target, in the ledger's folder) from the check to the
        last use of what was written there (its metadata, its MLflow artifact): a second run writing the same
        output waits for the first, so each run's records describe its own file, never the other run's."""
        targets = sorted({str(Path(p).expanduser().resolve()) for p in paths if p is not None})
        folder = self.ledger.parent / "claims"
        folder.mkdir(parents=True, exist_ok=True)
        held: list[int] = []
        try:
            for target in targets:
                fd = os.open(folder / f"{hashlib.sha1(target.encode()).hexdigest()[:16]}.lock",
                             os.O_RDWR | os.O_CREAT, 0o644)
                held.append(fd)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    log.warning("waiting for another fer run that writes %s", target)
                    fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            for fd in held:
                os.close(fd)

    def check(self, path: Path, setting: str = "output") -> None:
        """Refuse (one line) to replace an existing file that is not an unchanged output of ours."""
        path = Path(path).expanduser().resolve()
        if path.is_dir():  # overwrite=true replaces files, never a folder
            raise UserError(f"{setting}={path} is a folder; give a file name")
        if not path.exists() or self.overwrite:
            return
        with self._locked() as entries:
            if entries.get(str(path)) == _sha256(path):
                return
        raise UserError(f"{setting}={path} exists and is not an output of fer (or was changed since fer wrote "
                        "it); refusing to replace it: give another path, or overwrite=true to replace it")

    def record(self, *paths: Path) -> None:
        with self._locked() as entries:
            for path in paths:
                path = Path(path).expanduser().resolve()
                entries[str(path)] = _sha256(path)
