"""Probabilities for rows of a uint8 image array (a memory-mapped cache, or face crops) with an ONNX model: the
numpy twin of fer.inference.engine, so that predict.py ckpt=model.onnx runs without torch."""

from __future__ import annotations

import numpy as np

from fer.classes import NUM_CLASSES
from fer.errors import UserError
from fer.runtime.tta import tta_proba


def row_batches(indices: np.ndarray, batch_size: int):
    """(start, rows) per batch of `indices`: rows a slice where the indices run contiguously, else the indices.
    Shared with fer.inference.engine (numpy only, so the torch-free runtime can own it)."""
    for start in range(0, len(indices), batch_size):
        part = indices[start:start + batch_size]
        # a contiguous run of rows (the usual case: a split is stored together) is a view, not a gather
        if len(part) and part[-1] - part[0] + 1 == len(part) and (np.diff(part) == 1).all():
            yield start, slice(int(part[0]), int(part[-1]) + 1)
        else:
            yield start, part


def score_rows(score, images: np.ndarray, indices: np.ndarray | None, batch_size: int,
               progress: bool = False) -> np.ndarray:
    """[len(indices),7] float32: `score` (uint8 [B,48,48] -> probabilities [B,7]) over images[indices] in batches
    (all images when indices is None), with a progress bar where asked and worth it. The batch may be a read-only
    view of a memory-mapped cache. Serves both engines: this one's ONNX models and fer.inference.engine's torch."""
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")
    indices = np.arange(len(images)) if indices is None else np.asarray(indices, dtype=np.int64)
    out = np.empty((len(indices), NUM_CLASSES), dtype=np.float32)
    bar = None
    if progress and len(indices) > batch_size:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(indices), desc="predicting", unit="img", mininterval=0.5)
    for start, sel in row_batches(indices, batch_size):
        batch = np.ascontiguousarray(images[sel])
        out[start:start + len(batch)] = score(batch)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    return out


def predict_rows(model, images: np.ndarray, indices: np.ndarray | None = None, batch_size: int = 512,
                 tta: bool = False, tta_shift: int = 0, progress: bool = False) -> np.ndarray:
    """Probabilities [len(indices),7] float32 for images[indices] (all images when indices is None). `model`:
    anything with predict_proba(uint8 [B,48,48]) -> [B,7] (an ExpressionModel, an ensemble of them)."""
    def score(batch: np.ndarray) -> np.ndarray:
        return tta_proba(model.predict_proba, batch, True, tta_shift) if tta else model.predict_proba(batch)

    return score_rows(score, images, indices, batch_size, progress)
