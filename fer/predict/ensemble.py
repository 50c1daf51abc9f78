"""Several trained models as one: the (weighted) mean of their class probabilities (any families mixed), and
the mixture weights: equal, given, or fitted on the val split that training held out (`ensemble_weights=val`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fer.errors import UserError

log = logging.getLogger(__name__)


class Ensemble:
    """predict_proba(x) = sum over members of weight * member.predict_proba(x); equal weights unless set.
    Members keep their own input handling (normalisation, upscaling, feature pipelines): nothing here knows
    which family a model is, nor whether they take torch tensors (checkpoints) or uint8 numpy arrays (ONNX).
    `temperature` re-tempers the mixture (fitted on the val split with the weights): applied by `calibrated` to
    the final probabilities, after any TTA averaging, because that is what it was fitted on."""

    def __init__(self, models: list, names: list[str] | None = None, weights: Sequence[float] | None = None):
        if not models:
            raise ValueError("an ensemble needs at least one model")
        self.models = list(models)
        self.names = list(names) if names else [type(m).__name__ for m in self.models]
        self.weights = [1.0 / len(self.models)] * len(self.models)
        self.temperature = 1.0
        if weights is not None:
            self.set_weights(weights)

    def __len__(self) -> int:
        return len(self.models)

    def set_weights(self, weights: Sequence[float]) -> None:
        w = np.asarray(list(weights), dtype=np.float64)
        if w.shape != (len(self.models),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise UserError(f"ensemble_weights={list(weights)}: give {len(self.models)} non-negative numbers, one "
                            "per checkpoint and not all 0 (or equal, or val to fit them on the val split)")
        self.weights = (w / w.sum()).tolist()

    def _mix(self, member_proba):
        """sum over members of weight * member_proba(member)."""
        total = None
        for model, weight in zip(self.models, self.weights):
            if weight == 0:
                continue  # a member fitted out of the mix costs nothing
            p = member_proba(model) * weight
            total = p if total is None else total + p
        return total

    def predict_proba(self, x):
        return self._mix(lambda model: model.predict_proba(x))

    __call__ = predict_proba

    def tta_proba(self, x, flip: bool = True, shift: int = 0):
        """The mixture of the members' TTA means: the same as the TTA mean of the mixture (both are linear), but
        each member skips the views it does not need (its own tta_proba)."""
        return self._mix(lambda model: model.tta_proba(x, flip, shift))

    @property
    def mirror_invariant(self) -> bool:
        return all(model.mirror_invariant for model in self.models)

    val_split_record = None  # its members' records are checked one by one (fit_weights_on_val)

    def calibrated(self, probs: np.ndarray) -> np.ndarray:
        """The mixture's final probabilities [N,7] (TTA views already averaged), re-tempered by `temperature`."""
        if self.temperature == 1.0:
            return probs
        from fer.models.calibration import temper

        return temper(probs, self.temperature)


def fit_weights(member_probs: np.ndarray, labels: np.ndarray, max_iter: int = 1000, tol: float = 1e-7) -> np.ndarray:
    """Weights w (>= 0, summing to 1) that maximise the likelihood of `labels` under sum_m w_m p_m, from the
    members' probabilities [M, N, C] on labelled images (the val split).

    The log-likelihood is concave in w, and this is the EM update for mixture proportions (each step raises it),
    so it reaches the optimum without a learning rate. Likelihood rather than accuracy: smooth, and it rewards a
    member for being confidently right, which is what averaging probabilities uses."""
    member_probs = np.asarray(member_probs, dtype=np.float64)
    m, n = member_probs.shape[:2]
    if n == 0 or len(labels) != n:
        raise ValueError(f"fit_weights: {n} images of probabilities for {len(labels)} labels")
    p_true = member_probs[:, np.arange(n), labels] + 1e-12  # [M, N]: each member's probability of the truth
    w = np.full(m, 1.0 / m)
    for _ in range(max_iter):
        new = w * (p_true / (w @ p_true)).mean(axis=1)
        done = np.abs(new - w).max() < tol
        w = new
        if done:
            break
    return w / w.sum()


def load_ensemble(paths: list[str | Path], device) -> Ensemble:
    """Checkpoints as torch models on `device`; ONNX files through onnxruntime, taking the same torch batches."""
    from fer.models.loading import load_model

    models = [OnnxMember(p) if Path(p).suffix.lower() == ".onnx" else load_model(p, map_location=device)
              for p in paths]
    return Ensemble(models, [f"{_family(m)}({Path(p).name})" for m, p in zip(models, paths)])


def load_onnx_ensemble(paths: list[str | Path], threads: int | None = None) -> Ensemble:
    """ONNX files only: members that take uint8 numpy batches (fer.runtime), no torch anywhere."""
    from fer.runtime import ExpressionModel

    models = [ExpressionModel(p, threads) for p in paths]
    return Ensemble(models, [f"{_family(m)}({Path(p).name})" for m, p in zip(models, paths)])


def _family(model) -> str:
    """onnx:<model> for exported models (ONNX files, alone or in a torch ensemble), else the model's class."""
    from fer.runtime import ExpressionModel

    if isinstance(model, (OnnxMember, ExpressionModel)):
        return f"onnx:{model.info.model}"
    return type(model).__name__


class OnnxMember:
    """An exported model in a torch ensemble: takes the float [B,1,48,48] batches (in [0,1], made from uint8 images,
    so x * 255 gives the bytes back exactly) and returns torch probabilities on the same device."""

    def __init__(self, path: str | Path):
        from fer.runtime import ExpressionModel

        self.model = ExpressionModel(path)
        self.info, self.val_split_record = self.model.info, self.model.val_split_record
        self.mirror_invariant = self.model.mirror_invariant

    def predict_proba(self, x):
        import torch

        faces = (x[:, 0].float() * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        return torch.from_numpy(self.model.predict_proba(faces)).to(x.device)

    def tta_proba(self, x, flip: bool = True, shift: int = 0):
        from fer.tta import tta_proba

        return tta_proba(self.predict_proba, x, flip and not self.mirror_invariant, shift)


def parse_ensemble_weights(value: Any, n_checkpoints: int) -> str | list[float]:
    """ensemble_weights: equal (default) | val | a list of numbers, one per checkpoint. Checked before any loading."""
    if value is None or (isinstance(value, str) and value in ("equal", "val")):
        return value or "equal"
    try:
        numbers = [float(v) for v in value] if not isinstance(value, str) else []
    except (TypeError, ValueError):
        numbers = []
    if len(numbers) != n_checkpoints or min(numbers) < 0 or sum(numbers) <= 0:
        example = ",".join(["1"] * n_checkpoints)
        raise UserError(f"ensemble_weights={value}: expected equal, val (fitted on the val split), or "
                        f"{n_checkpoints} non-negative numbers, one per checkpoint, e.g. [{example}]")
    return numbers


def fit_weights_on_val(ensemble: Ensemble, specs: list[str], data, score) -> dict[str, Any]:
    """ensemble_weights=val: score each member on the val split that training held out (`data`: the OpenedData of
    the training data config, so the split is drawn exactly as train.py drew it) with `score(member, images,
    rows)` (the same TTA as the predictions), and fit the mixture weights there. The test split stays unseen."""
    from fer.data.splits import split_digest

    s = data.settings
    _, val = data.train_val
    if len(val) == 0:
        raise UserError(f"ensemble_weights=val: data={data.name} has an empty val split "
                        f"(data.val_fraction={s.val_fraction})")
    split = f"data={data.name} val_fraction={s.val_fraction} split_seed={s.split_seed}"
    digest, unrecorded = split_digest(data.cache, val), []
    for spec, member in zip(specs, ensemble.models):
        record = member.val_split_record
        if record is None:
            unrecorded.append(spec)
        elif record.get("digest") != digest:
            # weights fitted on images a member was trained on would favour that member for no good reason
            raise UserError(f"ensemble_weights=val: {spec} was trained with another val split ({record.get('n')} "
                            f"images of {record.get('data')}) than {split} gives ({len(val)} images); give the data "
                            "settings it was trained with, or use ensemble_weights=equal")
    if unrecorded:
        log.warning("ensemble_weights=val: %s record no val split (checkpoints written before fer recorded it); "
                    "assuming they held out the one of %s", ", ".join(unrecorded), split)
    probs = np.stack([score(member, data.cache.images, val) for member in ensemble.models])
    labels = data.cache.labels[val]
    ensemble.set_weights(fit_weights(probs, labels))
    mixture = np.tensordot(ensemble.weights, probs, axes=1)
    # the mixture is calibrated like a single model: one temperature, fitted on the same val probabilities
    from fer.models.calibration import expected_calibration_error, fit_temperature, temper

    ensemble.temperature = 1.0 / fit_temperature(np.log(np.clip(mixture, 1e-12, None)), labels)

    def acc(p: np.ndarray) -> float:
        return float((p.argmax(1) == labels).mean())

    return {"how": "val", "n_val": int(len(val)), "member_acc": [acc(p) for p in probs],
            "equal_acc": acc(probs.mean(0)), "fitted_acc": acc(mixture), "temperature": ensemble.temperature,
            "ece_before": expected_calibration_error(mixture, labels),
            "ece_after": expected_calibration_error(temper(mixture, ensemble.temperature), labels)}
