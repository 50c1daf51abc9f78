"""Temperature scaling: one scalar T > 0 so that softmax(T * scores) gives honest probabilities."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def fit_temperature(scores: np.ndarray, labels: np.ndarray, weight: np.ndarray | None = None) -> float:
    """T > 0 minimising the (class-weighted) mean NLL of softmax(T * scores): a 1-D bounded search on log T."""
    from scipy.optimize import minimize_scalar

    s = torch.as_tensor(scores, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.int64)
    w = None if weight is None else torch.as_tensor(weight, dtype=torch.float64)

    def nll(log_t: float) -> float:
        return float(F.cross_entropy(s * np.exp(log_t), y, weight=w))

    res = minimize_scalar(nll, bounds=(np.log(1e-3), np.log(1e3)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))
