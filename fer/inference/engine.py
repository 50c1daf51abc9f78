"""Batched inference over a uint8 [N,48,48] array (the cache's mmap, or face crops).

Batches are index slices of the array -> float [B,1,48,48] in [0,1] (to_unit_float) on the device ->
model.predict_proba under torch.inference_mode and, where it pays, bf16 autocast.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

from fer.devices import native_bf16
from fer.errors import UserError
from fer.data.augment import to_unit_float
from fer.runtime.engine import score_rows  # numpy only: shared with the torch-free runtime

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp32")
_ALIASES = {"bf16-mixed": "bf16", "bfloat16": "bf16", "32": "fp32", "32-true": "fp32", "float32": "fp32"}


def select_device(name: str = "auto") -> torch.device:
    name = str(name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"device={name}: not a device name (auto, cpu, cuda, cuda:1, ...)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name}: CUDA is not available on this machine; use device=auto or cpu")
    return device


def select_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32. auto: bf16 where the hardware has it, else fp32."""
    precision = _ALIASES.get(str(precision).lower(), str(precision).lower())
    if precision not in PRECISIONS:
        raise UserError(f"precision={precision}: expected one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    supported = native_bf16(device.type)
    if precision == "auto":
        return torch.bfloat16 if supported else None
    if not supported:
        log.warning("precision=bf16: %s has no native bf16; it will be emulated (slow)", device)
    return torch.bfloat16


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to n (predict.py's num_threads) inside the block, the caller's count restored
    after: a library call leaves the process's setting as it found it. None: unchanged."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.inference_mode()
def predict_array(model, images: np.ndarray, indices: np.ndarray | None = None, batch_size: int = 512,
                  device: torch.device | str = "cpu", dtype: torch.dtype | None = None, tta: bool = False,
                  tta_shift: int = 0, progress: bool = False) -> np.ndarray:
    """Probabilities [len(indices),7] float32 for images[indices] (all images when indices is None).
    `model` is anything with predict_proba(x) (a FERClassifier or an Ensemble)."""
    device = torch.device(device)

    def score(batch: np.ndarray) -> np.ndarray:
        # a copy: the batch may be a read-only view of a memory-mapped cache, which torch will not wrap
        x = to_unit_float(torch.from_numpy(np.array(batch, copy=True)).to(device, non_blocking=True))
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            probs = model.tta_proba(x, flip=True, shift=tta_shift) if tta else model.predict_proba(x)
        return probs.float().cpu().numpy()

    return score_rows(score, images, indices, batch_size, progress)
