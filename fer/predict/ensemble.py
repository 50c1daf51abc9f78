"""Several trained models as one: the mean of their class probabilities (any families mixed)."""

from __future__ import annotations

from pathlib import Path

import torch


class Ensemble:
    """predict_proba(x) = mean over members of member.predict_proba(x). Members keep their own input handling
    (normalisation, upscaling, feature pipelines): nothing here knows which family a model is."""

    def __init__(self, models: list, names: list[str] | None = None):
        if not models:
            raise ValueError("an ensemble needs at least one model")
        self.models = list(models)
        self.names = list(names) if names else [type(m).__name__ for m in self.models]

    def __len__(self) -> int:
        return len(self.models)

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for model in self.models:
            p = model.predict_proba(x).float()
            total = p if total is None else total.add_(p)
        return total.div_(len(self.models))

    __call__ = predict_proba


def load_ensemble(paths: list[str | Path], device: torch.device) -> Ensemble:
    from fer.models.loading import load_model

    models = [load_model(p, map_location=device) for p in paths]
    return Ensemble(models, [f"{type(m).__name__}({Path(p).name})" for m, p in zip(models, paths)])
