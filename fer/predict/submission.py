"""Submission CSV: column names, image names, labels, and an atomic write (never a partial file)."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from fer.classes import CLASS_NAMES
from fer.errors import UserError
from fer.predict.output_guard import OutputGuard

DEFAULT_COLUMNS = ("image", "label")
LABEL_FORMATS = ("index", "name")
PROB_COLUMNS = tuple(f"prob_{c}" for c in CLASS_NAMES)


def submission_columns(source) -> tuple[str, str] | None:
    """The (image, label) column names a data source's submissions use (a challenge source: those of its training
    CSV, found as for training), or None for the default ones."""
    columns = getattr(source, "submission_columns", None)
    return columns() if callable(columns) else None


def format_label(index: int, label_format: str) -> str:
    return CLASS_NAMES[index] if label_format == "name" else str(index)


def check_label_format(label_format: str) -> str:
    if label_format not in LABEL_FORMATS:
        raise UserError(f"label_format={label_format}: expected one of {', '.join(LABEL_FORMATS)}")
    return label_format


def prediction_table(names: Sequence[str], probs: np.ndarray, columns: Sequence[str] = DEFAULT_COLUMNS,
                     label_format: str = "index", probabilities: bool = False) -> tuple[list[str], list[list[str]]]:
    """(header, rows) sorted by image name: name, label[, prob_angry..prob_neutral]."""
    check_label_format(label_format)
    if len(names) != len(probs):
        raise ValueError(f"{len(names)} names for {len(probs)} predictions")
    header = list(columns) + (list(PROB_COLUMNS) if probabilities else [])
    preds = probs.argmax(1) if len(probs) else np.empty(0, dtype=np.int64)
    rows = []
    for i in sorted(range(len(names)), key=lambda k: names[k]):
        row = [names[i], format_label(int(preds[i]), label_format)]
        if probabilities:
            row += [f"{p:.6f}" for p in probs[i]]
        rows.append(row)
    return header, rows


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_csv_atomic(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[object]],
                     guard: OutputGuard | None = None, setting: str = "output") -> int:
    """Write to a temporary file in the same folder, then rename over `path`: readers see the old file or the
    complete new one, never a partial one. `guard` refuses to replace a file predict.py did not write, and
    records this one. Returns the number of data rows written."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{setting}={path} is a folder; give a file name, e.g. {setting}={path / 'submission.csv'}")
    if guard is not None:
        guard.check(path, setting)
    tmp = None
    n = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for row in rows:
                writer.writerow(row)
                n += 1
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a normal file is what the user expects
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, a read-only folder: one line, and no partial file left behind
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write {setting}={path}: {exc.strerror or exc}") from exc
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    if guard is not None:
        guard.record(path)
    return n
