"""After training: fit the calibration temperature of the best checkpoint on the val split (the images that chose
it, never the test split) and write it into that checkpoint, so that the test, predict.py and the export all use
calibrated probabilities."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fer.models.base import CALIBRATION_KEY
from fer.models.calibration import expected_calibration_error, fit_temperature, temper
from fer.runtime.atomic import atomic_path

log = logging.getLogger(__name__)


@dataclass
class Calibration:
    temperature: float
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    n_val: int
    probs_before: np.ndarray
    probs_after: np.ndarray
    labels: np.ndarray


def _nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())


def calibrate_checkpoint(path: str | Path, datamodule, device: torch.device, bf16: bool) -> Calibration | None:
    """Fit T on the datamodule's val split for the checkpoint at `path` and store it there; None without a val
    split."""
    from fer.models.loading import load_model
    from fer.inference.engine import predict_array

    val = datamodule.idx.get("val")
    if val is None or len(val) == 0:
        log.info("calibration skipped: no val split (data.val_fraction=0)")
        return None
    model = load_model(path, map_location=device)
    getattr(model, CALIBRATION_KEY).fill_(1.0)  # fit from the raw logits (a resumed run may hold an older T)
    probs = predict_array(model, datamodule.cache.images, val, datamodule.eval_batch_size, device,
                          torch.bfloat16 if bf16 else None)
    labels = datamodule.cache.labels[val]
    # log-probabilities are the logits up to a per-row constant, which softmax ignores
    temperature = 1.0 / fit_temperature(np.log(np.clip(probs, 1e-12, None)), labels)
    after = temper(probs, temperature)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint["state_dict"][CALIBRATION_KEY] = torch.tensor(temperature, dtype=torch.float32)
    with atomic_path(path) as tmp:  # never a half-written checkpoint
        torch.save(checkpoint, tmp)
    result = Calibration(temperature, expected_calibration_error(probs, labels), expected_calibration_error(after, labels),
                         _nll(probs, labels), _nll(after, labels), len(labels), probs, after, labels)
    log.info("calibrated on %d val images: T=%.3f, ECE %.4f -> %.4f, NLL %.4f -> %.4f", len(labels), temperature,
             result.ece_before, result.ece_after, result.nll_before, result.nll_after)
    return result
