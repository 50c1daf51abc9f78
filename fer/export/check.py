"""An export checks itself: ONNX Runtime against PyTorch on real images, before anyone relies on the file."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fer.classes import NUM_CLASSES

MAX_ABS_DIFF = 1e-3  # probabilities, fp32
MIN_AGREEMENT = 0.999  # share of images with the same top class


@dataclass
class Comparison:
    n: int
    max_abs_diff: float
    agreement: float  # share of images whose top class is the same

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= MAX_ABS_DIFF and self.agreement >= MIN_AGREEMENT


def torch_probabilities(model, images: np.ndarray, batch_size: int = 512, views: str = "none") -> np.ndarray:
    """The checkpoint's calibrated probabilities in fp32 on the CPU, averaged over the named test-time views as
    predict.py's tta does (the model's tta_proba): the reference the export must match."""
    from fer.tta import NAMED_VIEWS

    model = model.cpu().float().eval()
    flip_shift = NAMED_VIEWS[views]
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size])).float().div(255).unsqueeze(1)
            p = model.predict_proba(x) if flip_shift is None else model.tta_proba(x, *flip_shift)
            out.append(p.numpy())
    return np.concatenate(out) if out else np.empty((0, NUM_CLASSES), np.float32)


def compare(reference: np.ndarray, candidate: np.ndarray) -> Comparison:
    return Comparison(len(reference), float(np.abs(reference - candidate).max()) if len(reference) else 0.0,
                      float((reference.argmax(1) == candidate.argmax(1)).mean()) if len(reference) else 1.0)
