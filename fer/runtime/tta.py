"""Test-time augmentation views of a uint8 batch [N,H,W] in numpy: the same views as fer.tta (the image, its
mirror, copies moved by +-shift px with the edge pixels repeated), for the torch-free runtime."""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

_SHIFTS = ((0, 1), (0, -1), (1, 0), (-1, 0))  # (dy, dx), as fer.tta


def shift_batch(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """[N,H,W] moved by (dy, dx) pixels; the uncovered border repeats the edge pixels."""
    if dy == 0 and dx == 0:
        return x
    p = max(abs(dy), abs(dx))
    h, w = x.shape[-2:]
    padded = np.pad(x, ((0, 0), (p, p), (p, p)), mode="edge")
    return padded[:, p - dy:p - dy + h, p - dx:p - dx + w]


def tta_views(x: np.ndarray, flip: bool = True, shift: int = 0) -> Iterator[np.ndarray]:
    yield x
    if flip:
        yield x[:, :, ::-1]
    if shift:
        for dy, dx in _SHIFTS:
            yield shift_batch(x, dy * shift, dx * shift)


def tta_proba(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, flip: bool = True,
              shift: int = 0) -> np.ndarray:
    """Mean of predict(view) over the views."""
    total, n = None, 0
    for view in tta_views(x, flip, shift):
        p = predict(np.ascontiguousarray(view)).astype(np.float32)
        total = p if total is None else total + p
        n += 1
    return total / n
