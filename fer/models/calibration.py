"""Calibration: one temperature T so that softmax(logits / T) gives probabilities that mean what they say
(Guo et al. 2017), fitted on the val split by likelihood, and the expected calibration error that measures it.
numpy at import: predict.py's ONNX path reports ECE without torch."""

from __future__ import annotations

import numpy as np


def fit_temperature(scores: np.ndarray, labels: np.ndarray, weight: np.ndarray | None = None) -> float:
    """k > 0 minimising the (class-weighted) mean NLL of softmax(k * scores): a 1-D bounded search on log k.
    (softmax(logits / T) is calibrated with T = 1 / k.)"""
    from scipy.optimize import minimize_scalar

    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=np.float64)[y]  # as torch's cross_entropy

    def nll(log_k: float) -> float:
        z = s * np.exp(log_k)
        z = z - z.max(axis=1, keepdims=True)
        logp = z[np.arange(len(y)), y] - np.log(np.exp(z).sum(axis=1))
        return float(-(w * logp).sum() / w.sum())

    res = minimize_scalar(nll, bounds=(np.log(1e-3), np.log(1e3)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(probs) / T): the same probabilities re-tempered (a mixture of models has no logits of its own)."""
    logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> tuple[np.ndarray, np.ndarray,
                                                                                  np.ndarray]:
    """Per confidence bin (equal width over [0, 1]): (mean confidence, accuracy, number of images)."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    conf = np.bincount(bins, weights=confidence, minlength=n_bins) / np.maximum(count, 1)
    acc = np.bincount(bins, weights=correct, minlength=n_bins) / np.maximum(count, 1)
    return conf, acc, count


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE: the image-weighted mean |accuracy - confidence| over confidence bins (top-label, 15 equal bins)."""
    conf, acc, count = reliability(probs, labels, n_bins)
    return float((np.abs(acc - conf) * count).sum() / max(count.sum(), 1))
