"""Test-time augmentation: the same batch seen several ways, probabilities averaged.

Views are whole-batch tensor ops (flip, padded crops): no per-image Python. Each view is run through the
model separately, so memory stays that of one batch however many views there are.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
import torch.nn.functional as F

# (dy, dx) offsets of the shifted views, in pixels before scaling by `shift`
_SHIFTS = ((0, 1), (0, -1), (1, 0), (-1, 0))
DEFAULT_SHIFT = 2  # px: predict.py's tta_shift default

# model.test_tta (training) -> (flip, shift px): the same views as predict.py's tta=true [tta_shifts=true]
NAMED_VIEWS: dict[str, tuple[bool, int] | None] = {"none": None, "flip": (True, 0),
                                                   "flip_shifts": (True, DEFAULT_SHIFT)}


def shift_batch(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """[B,C,H,W] moved by (dy, dx) pixels; the uncovered border repeats the edge pixels (no black bars)."""
    if dy == 0 and dx == 0:
        return x
    p = max(abs(dy), abs(dx))
    h, w = x.shape[-2:]
    padded = F.pad(x, (p, p, p, p), mode="replicate")
    top, left = p - dy, p - dx
    return padded[..., top:top + h, left:left + w]


def tta_views(x: torch.Tensor, flip: bool = True, shift: int = 0) -> Iterator[torch.Tensor]:
    """The identity, its horizontal mirror (flip), and copies shifted by +-shift px left/right/up/down."""
    yield x
    if flip:
        yield torch.flip(x, dims=(-1,))
    if shift:
        for dy, dx in _SHIFTS:
            yield shift_batch(x, dy * shift, dx * shift)


def n_views(flip: bool = True, shift: int = 0) -> int:
    return 1 + int(flip) + (len(_SHIFTS) if shift else 0)


def tta_proba(predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, flip: bool = True,
              shift: int = 0) -> torch.Tensor:
    """Mean of predict(view) over the views: [B,7] float32."""
    total = None
    for view in tta_views(x, flip, shift):
        p = predict(view).float()
        total = p if total is None else total.add_(p)
    return total.div_(n_views(flip, shift))
