"""The prediction CSVs, one writer for predict.py and the runtime (`fer-classify`): how images are named, the
columns, the label format, and an atomic write. The same options give the same file from either tool.

    image,label[,prob_angry,...,prob_neutral]                       one row per image (face crops)
    image,face,x,y,w,h,label[,prob_angry,...,prob_neutral],note     one row per face found in a photo; a photo
                                                                     without one gets a row with face -1 and a note
    frame,time,face_id,x,y,w,h,label[,prob_angry,...]               one row per face per sampled video frame
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from fer.classes import CLASS_NAMES
from fer.errors import UserError
from fer.runtime.atomic import atomic_path
from fer.runtime.output_guard import OutputGuard

IMAGE_COLUMNS = ("image", "label")
FACE_COLUMNS = ("image", "face", "x", "y", "w", "h", "label")
VIDEO_COLUMNS = ("frame", "time", "face_id", "x", "y", "w", "h", "label")
LABEL_FORMATS = ("index", "name")
PROB_COLUMNS = tuple(f"prob_{c}" for c in CLASS_NAMES)
NO_FACE = "no face detected"

Box = tuple[int, int, int, int]


def output_names(names: Sequence[str]) -> list[str]:
    """How each image is named in the CSV: its file name when those are unique (images_test/x.jpg -> x.jpg),
    else its path relative to the deepest folder all of them share."""
    base = [os.path.basename(n) for n in names]
    if len(set(base)) == len(base):
        return base
    absolute = [os.path.abspath(n) for n in names]
    common = os.path.commonpath(absolute) if len(absolute) > 1 else os.path.dirname(absolute[0])
    if os.path.isfile(common) or common in absolute:
        common = os.path.dirname(common)
    return [os.path.relpath(a, common) for a in absolute]


def check_label_format(label_format: str) -> str:
    if label_format not in LABEL_FORMATS:
        raise UserError(f"label_format={label_format}: expected one of {', '.join(LABEL_FORMATS)}")
    return label_format


def format_label(index: int, label_format: str) -> str:
    return CLASS_NAMES[index] if label_format == "name" else str(index)


def _probability_cells(probs: np.ndarray) -> list[str]:
    return [f"{float(p):.6f}" for p in probs]


def prediction_table(names: Sequence[str], probs: np.ndarray, columns: Sequence[str] = IMAGE_COLUMNS,
                     label_format: str = "index", probabilities: bool = False) -> tuple[list[str], list[list[str]]]:
    """(header, rows) sorted by image name: name, label[, prob_angry..prob_neutral]."""
    check_label_format(label_format)
    if len(names) != len(probs):
        raise ValueError(f"{len(names)} names for {len(probs)} predictions")
    header = list(columns) + (list(PROB_COLUMNS) if probabilities else [])
    rows = []
    for i in sorted(range(len(names)), key=lambda k: names[k]):
        rows.append([names[i], format_label(int(np.argmax(probs[i])), label_format)]
                    + (_probability_cells(probs[i]) if probabilities else []))
    return header, rows


def face_table(photos: Sequence[str], boxes: Sequence[Sequence[Box]], probs: np.ndarray, label_format: str = "index",
               probabilities: bool = False, notes: Sequence[str] | None = None) -> tuple[list[str], list[list]]:
    """(header, rows): per photo (sorted by name) one row per face, left to right as found, and one row with
    face -1 and a note for a photo without a face. `probs` holds the faces' probabilities in photo order;
    `notes` an optional note per photo (e.g. that it was classified whole, as a face crop)."""
    check_label_format(label_format)
    starts = np.cumsum([0] + [len(b) for b in boxes])
    if starts[-1] != len(probs):
        raise ValueError(f"{len(probs)} predictions for {starts[-1]} faces")
    header = list(FACE_COLUMNS) + (list(PROB_COLUMNS) if probabilities else []) + ["note"]
    rows: list[list] = []
    for p in sorted(range(len(photos)), key=lambda k: photos[k]):
        note = notes[p] if notes else ""
        if not boxes[p]:
            rows.append([photos[p], -1, "", "", "", "", ""] + [""] * (len(PROB_COLUMNS) * probabilities)
                        + [note or NO_FACE])
        for f, box in enumerate(boxes[p]):
            pr = probs[starts[p] + f]
            rows.append([photos[p], f, *box, format_label(int(np.argmax(pr)), label_format)]
                        + (_probability_cells(pr) if probabilities else []) + [note])
    return header, rows


def video_table(rows: Sequence, label_format: str = "index",
                probabilities: bool = False) -> tuple[list[str], list[list]]:
    """(header, rows) for fer.runtime.video.FaceRow rows, in frame order."""
    check_label_format(label_format)
    header = list(VIDEO_COLUMNS) + (list(PROB_COLUMNS) if probabilities else [])
    return header, [[r.frame, f"{r.time:.3f}", r.face_id, *r.box, format_label(int(np.argmax(r.probabilities)),
                                                                                 label_format)]
                    + (_probability_cells(r.probabilities) if probabilities else []) for r in rows]


def write_csv_atomic(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[object]],
                     guard: OutputGuard | None = None, setting: str = "output") -> int:
    """The CSV, written atomically (fer.runtime.atomic: readers see the old file or the complete new one). `guard`
    refuses to replace a file fer did not write, and records this one. Returns the number of data rows written."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{setting}={path} is a folder; give a file name, e.g. {setting}={path / 'predictions.csv'}")
    if guard is not None:
        guard.check(path, setting)
    n = 0
    # a full disk, a read-only folder: one line, and no partial file left behind
    with atomic_path(path, shown_as=f"{setting}={path}") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in rows:
            writer.writerow(row)
            n += 1
    if guard is not None:
        guard.record(path)
    return n
