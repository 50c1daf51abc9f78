"""predict.py's outputs: the CSV rows (one per image, or one per face found in a photo), written atomically, and
the result that the summary and the tests read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fer.classes import CLASS_NAMES, NUM_CLASSES
from fer.models.calibration import expected_calibration_error
from fer.predict.settings import Outputs
from fer.runtime.table import face_table, output_names, prediction_table, video_table, write_csv_atomic


@dataclass
class PredictResult:
    output: Path
    names: list[str]  # CSV order (images, or photos with a face index for face_detect)
    probs: np.ndarray  # [rows with a prediction, 7] in CSV order
    counts: dict[str, int]
    seconds: dict[str, float]
    images_per_s: float
    split: str | None = None
    accuracy: float | None = None
    f1_macro: float | None = None
    ece: float | None = None  # expected calibration error, when the split has labels
    skipped: int = 0
    skipped_file: str | None = None
    resized: int = 0
    color: int = 0
    rows: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _metrics(labels: np.ndarray, preds: np.ndarray) -> tuple[float, float]:
    """Accuracy and macro-F1 over the classes that occur in labels or predictions (scikit-learn's definition with
    zero_division=0), in numpy: the ONNX path imports neither torch nor scikit-learn."""
    accuracy = float((labels == preds).mean())
    f1 = []
    for c in np.unique(np.concatenate([labels, preds])):
        tp = int(((preds == c) & (labels == c)).sum())
        wrong = int(((preds == c) & (labels != c)).sum()) + int(((preds != c) & (labels == c)).sum())
        f1.append(2 * tp / (2 * tp + wrong) if tp + wrong else 0.0)
    return accuracy, float(np.mean(f1))


def _counts(preds: np.ndarray) -> dict[str, int]:
    n = np.bincount(preds, minlength=NUM_CLASSES) if len(preds) else np.zeros(NUM_CLASSES, dtype=int)
    return {CLASS_NAMES[i]: int(n[i]) for i in range(NUM_CLASSES)}


def write_images(outputs: Outputs, data, probs: np.ndarray, seconds: dict[str, float]) -> PredictResult:
    """One row per image (`data`: fer.predict.inputs.Images), sorted by name, with accuracy when labelled."""
    names, idx, cache = data.names, data.idx, data.data.cache
    header, rows = prediction_table(names, probs, data.columns, outputs.label_format, outputs.probabilities)
    if len(rows) != len(idx):  # never a submission that silently lost images
        raise RuntimeError(f"{len(rows)} CSV rows for {len(idx)} predicted images")
    written = write_csv_atomic(outputs.csv, header, rows, outputs.guard())
    if written != len(idx):
        raise RuntimeError(f"wrote {written} CSV rows for {len(idx)} predicted images")

    order = np.argsort(np.asarray(names, dtype=object), kind="stable")
    preds = probs.argmax(1) if len(probs) else np.empty(0, dtype=np.int64)
    result = PredictResult(output=outputs.csv, names=[names[i] for i in order], probs=probs[order],
                           counts=_counts(preds), seconds=seconds,
                           images_per_s=len(idx) / max(seconds["predict"], 1e-9), split=data.split, rows=written,
                           skipped=int(cache.info.get("skipped", 0)), resized=int(cache.info.get("resized", 0)),
                           color=int(cache.info.get("color", 0)))
    if result.skipped:
        result.skipped_file = str(cache.path / "skipped.csv")
    result.extra.update(source=data.data.source.name, cache_images=len(cache), columns=list(header))
    labels = cache.labels[idx]
    if len(labels) and (labels >= 0).all():
        result.accuracy, result.f1_macro = _metrics(labels, preds)
        result.ece = expected_calibration_error(probs, labels)
    return result


def write_faces(outputs: Outputs, scan, probs: np.ndarray, seconds: dict[str, float]) -> PredictResult:
    """One row per face (`scan`: fer.predict.faces.FaceScan), left to right in each photo; a row for a photo
    without one. Optionally annotated copies of the photos."""
    from fer.predict.faces import annotate_photo, annotated_path

    shown = output_names(scan.photos)
    starts = np.cumsum([0] + [len(b) for b in scan.boxes])
    header, rows = face_table(shown, scan.boxes, probs, outputs.label_format, outputs.probabilities)
    order = sorted(range(len(scan.photos)), key=lambda k: shown[k])  # the CSV's order
    row_names = [f"{shown[p]}#{f}" for p in order for f in range(len(scan.boxes[p]))]
    row_probs = [probs[starts[p] + f] for p in order for f in range(len(scan.boxes[p]))]
    no_face = sum(1 for b in scan.boxes if not b)
    if len(rows) != scan.n_faces + no_face:
        raise RuntimeError(f"{len(rows)} CSV rows for {scan.n_faces} faces and {no_face} photos without one")
    guard = outputs.guard()
    written = write_csv_atomic(outputs.csv, header, rows, guard)
    skipped_file = None
    if len(scan.skipped):
        out = outputs.csv.expanduser()
        skipped_file = out.with_name(f"{out.stem}_skipped.csv")
        write_csv_atomic(skipped_file, ["file", "reason"], scan.skipped.entries, guard, "output (skipped list)")
    annotated = []
    if outputs.annotate is not None:
        folder = outputs.annotate
        for p, photo in enumerate(scan.photos):
            target = annotated_path(folder / shown[p])
            guard.check(target, "annotate")
            drawn = annotate_photo(photo, scan.boxes[p], probs[starts[p]:starts[p + 1]], target)
            guard.record(drawn)
            annotated.append(str(drawn))

    stacked = np.stack(row_probs) if row_probs else np.empty((0, NUM_CLASSES), dtype=np.float32)
    result = PredictResult(output=outputs.csv, names=row_names, probs=stacked,
                           counts=_counts(stacked.argmax(1) if len(stacked) else np.empty(0, dtype=np.int64)),
                           seconds=seconds, images_per_s=scan.n_faces / max(seconds["predict"], 1e-9),
                           rows=written, skipped=len(scan.skipped),
                           skipped_file=str(skipped_file) if skipped_file else None)
    result.extra.update(photos=len(scan.photos), faces=scan.n_faces, no_face=no_face, detector=scan.detector,
                        annotated=annotated, columns=header)
    return result


def write_video(outputs: Outputs, spec: str, rows: list, stats, seconds: dict[str, float]) -> PredictResult:
    """One CSV row per face per sampled frame (fer.runtime.video.FaceRow), in frame order."""
    header, lines = video_table(rows, outputs.label_format, outputs.probabilities)
    written = write_csv_atomic(outputs.csv, header, lines, outputs.guard())
    probs = np.stack([r.probabilities for r in rows]).astype(np.float32) if rows else \
        np.empty((0, NUM_CLASSES), np.float32)
    result = PredictResult(output=outputs.csv, names=[f"{r.frame}#{r.face_id}" for r in rows], probs=probs,
                           counts=_counts(probs.argmax(1) if len(probs) else np.empty(0, dtype=np.int64)),
                           seconds=seconds, images_per_s=stats.faces / max(stats.seconds, 1e-9), rows=written)
    result.extra.update(video=spec, frames_read=stats.frames_read, frames_sampled=stats.frames_sampled,
                        faces=stats.faces, tracks=stats.tracks, interrupted=stats.interrupted,
                        fps=stats.frames_sampled / max(stats.seconds, 1e-9), columns=header,
                        annotated=[str(outputs.annotate_video)] if outputs.annotate_video else [])
    return result
