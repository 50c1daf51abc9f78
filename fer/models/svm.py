"""HOG features -> StandardScaler -> PCA -> SVC, as a FERClassifier so the Trainer, logging, checkpoints and
predict path are the same as for the neural models.

How it trains: one pass over the training batches (no optimiser, un-augmented images) collects HOG
features; the sklearn pipeline is fitted once, when the first validation after that epoch starts (in
Lightning 2.x validation runs before `on_train_epoch_end`); the validation set then fits a temperature for
the SVC's one-vs-rest decision scores (softmax(T * scores) minimises the NLL), and training stops after
that one epoch whatever `trainer.max_epochs` is.

`forward` returns T * decision scores [B,7] as logits: predictions are the argmax of the SVC decision
(SVC(break_ties=True), so `pipeline.predict` agrees), probabilities are softmax(logits).

Checkpoints: the fitted pipeline is pickled to bytes under checkpoint["svm_pipeline"] (the temperature is a
buffer in the state dict). Unpickling can run code, so it goes through an unpickler that refuses anything
outside numpy, scipy, scikit-learn and this module: a much narrower surface than plain pickle, but not a
sandbox; load checkpoints you trust. The fit counts as the run's one optimisation step (global_step 1), else
ModelCheckpoint would never save. Single process only (DDP would fit one SVM per shard; refused).
"""

from __future__ import annotations

import io
import logging
import pickle
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn

from fer.classes import IMAGE_SIZE, NUM_CLASSES
from fer.models.base import FERClassifier

log = logging.getLogger(__name__)

CHECKPOINT_KEY = "svm_pipeline"
_TRAIN_METRICS_MAX = 2000  # training images scored after the fit for train/loss, train/acc (the SVM's own fit)


# ---- HOG ---------------------------------------------------------------------------------------------
def hog_batch(images: np.ndarray, orientations: int = 9, cell: int = 8, block: int = 2, block_norm: str = "L2-Hys",
              transform_sqrt: bool = False, soft_binning: bool = False, eps: float = 1e-5) -> np.ndarray:
    """HOG of a whole batch [N,H,W] (floats) at once -> float32 [N, n_features].

    With soft_binning=False this is exactly skimage.feature.hog(image, orientations, (cell, cell),
    (block, block), block_norm) per image (central differences, unsigned 0-180 degree orientations, one bin per
    pixel, cell means, overlapping blocks with stride one cell); soft_binning splits each pixel's vote linearly
    between the two nearest orientation bins (Dalal & Triggs)."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"hog_batch expects [N,H,W] images, got shape {x.shape}")
    if transform_sqrt:
        x = np.sqrt(np.clip(x, 0, None))
    n, h, w = x.shape
    ncy, ncx = h // cell, w // cell
    if ncy < block or ncx < block:
        raise ValueError(f"{h}x{w} images are too small for {block}x{block} blocks of {cell}-pixel cells")
    g_row = np.zeros_like(x)
    g_col = np.zeros_like(x)
    g_row[:, 1:-1, :] = x[:, 2:, :] - x[:, :-2, :]
    g_col[:, :, 1:-1] = x[:, :, 2:] - x[:, :, :-2]
    g_row, g_col = g_row[:, :ncy * cell, :ncx * cell], g_col[:, :ncy * cell, :ncx * cell]
    magnitude = np.hypot(g_row, g_col)
    position = (np.rad2deg(np.arctan2(g_row, g_col)) % 180.0) * (orientations / 180.0)  # in bin widths
    if soft_binning:
        low = np.floor(position - 0.5)
        frac = position - 0.5 - low
        b0 = low.astype(np.int64) % orientations
        bins = np.stack([b0, (b0 + 1) % orientations])
        weights = np.stack([magnitude * (1 - frac), magnitude * frac])
    else:
        bins = np.minimum(position.astype(np.int64), orientations - 1)[None]
        weights = magnitude[None]
    # flat index (image, cell row, cell col, bin) of every vote, summed with one bincount for the whole batch
    cell_of_pixel = (np.arange(ncy * cell) // cell)[:, None] * ncx + (np.arange(ncx * cell) // cell)[None, :]
    base = (np.arange(n)[:, None, None] * (ncy * ncx) + cell_of_pixel[None]) * orientations
    hist = np.bincount((base[None] + bins).ravel(), weights=weights.ravel().astype(np.float64),
                       minlength=n * ncy * ncx * orientations)
    hist = hist.reshape(n, ncy, ncx, orientations) / (cell * cell)
    nby, nbx = ncy - block + 1, ncx - block + 1
    blocks = np.stack([hist[:, i:i + nby, j:j + nbx] for i in range(block) for j in range(block)], axis=3)
    blocks = blocks.reshape(n, nby, nbx, block * block * orientations)

    def l2(a: np.ndarray) -> np.ndarray:
        return a / np.sqrt((a * a).sum(axis=-1, keepdims=True) + eps ** 2)

    if block_norm == "L2":
        out = l2(blocks)
    elif block_norm == "L2-Hys":
        out = l2(np.minimum(l2(blocks), 0.2))
    elif block_norm == "L1":
        out = blocks / (np.abs(blocks).sum(axis=-1, keepdims=True) + eps)
    elif block_norm == "L1-sqrt":
        out = np.sqrt(blocks / (np.abs(blocks).sum(axis=-1, keepdims=True) + eps))
    else:
        raise ValueError(f"block_norm must be L1, L1-sqrt, L2 or L2-Hys, got {block_norm!r}")
    return out.reshape(n, -1).astype(np.float32)


class HogFeatures(TransformerMixin, BaseEstimator):
    """Stateless sklearn transformer: images (flattened [N,2304], [N,48,48] or [N,1,48,48], floats in [0,1])
    -> HOG features, one descriptor per cell size, concatenated."""

    def __init__(self, orientations: int = 9, cell_sizes: tuple[int, ...] = (8,), cells_per_block: int = 2,
                 block_norm: str = "L2-Hys", transform_sqrt: bool = False, soft_binning: bool = False,
                 chunk: int = 1024):
        self.orientations, self.cell_sizes, self.cells_per_block = orientations, cell_sizes, cells_per_block
        self.block_norm, self.transform_sqrt, self.soft_binning, self.chunk = \
            block_norm, transform_sqrt, soft_binning, chunk

    def fit(self, X: Any = None, y: Any = None) -> "HogFeatures":
        self.n_features_in_ = IMAGE_SIZE * IMAGE_SIZE
        return self

    def transform(self, X: Any) -> np.ndarray:
        x = np.asarray(X, dtype=np.float32).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
        parts = []
        for start in range(0, len(x), self.chunk):  # bounds the temporary [chunk,48,48] arrays
            part = x[start:start + self.chunk]
            parts.append(np.concatenate([
                hog_batch(part, self.orientations, int(c), self.cells_per_block, self.block_norm,
                          self.transform_sqrt, self.soft_binning) for c in self.cell_sizes], axis=1))
        return np.concatenate(parts) if parts else np.empty((0, 0), np.float32)

    def __sklearn_is_fitted__(self) -> bool:
        return True  # nothing to learn


# ---- checkpoint (un)pickling -------------------------------------------------------------------------
_ALLOWED_BUILTINS = {"slice", "set", "frozenset", "complex", "range", "bytearray", "dict", "list", "tuple", "int",
                     "float", "str", "bool", "object", "type"}


class _PipelineUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] in ("numpy", "scipy", "sklearn") or module == "fer.models.svm" \
                or (module == "builtins" and name in _ALLOWED_BUILTINS) \
                or (module == "copyreg" and name == "_reconstructor") \
                or (module == "collections" and name == "OrderedDict"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"svm checkpoint refers to {module}.{name}, which a fitted "
                                     "HOG/SVM pipeline never holds; refusing to load it")


def load_pipeline_bytes(data: bytes) -> Any:
    return _PipelineUnpickler(io.BytesIO(data)).load()


# ---- the model ---------------------------------------------------------------------------------------
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


class HogSVM(FERClassifier):
    """HOG -> StandardScaler -> PCA -> SVC. `class_weighting` (none/balanced/sqrt, as for the neural models) becomes
    the SVC's class_weight."""

    train_augmentation = False  # the SVM is fitted once on the images as they are

    def __init__(self, orientations: int = 9, cell_sizes: tuple[int, ...] = (8, 6, 4), cells_per_block: int = 2,
                 block_norm: str = "L2-Hys", transform_sqrt: bool = False, soft_binning: bool = True,
                 pca_components: int | float | None = 200, pca_whiten: bool = False, kernel: str = "rbf",
                 C: float = 3.0, gamma: str | float = "scale", svc_cache_mb: int = 1000, random_state: int = 0,
                 **kwargs):
        self.hog_settings = dict(orientations=int(orientations), cell_sizes=tuple(int(c) for c in cell_sizes),
                                 cells_per_block=int(cells_per_block), block_norm=block_norm,
                                 transform_sqrt=bool(transform_sqrt), soft_binning=bool(soft_binning))
        kwargs.setdefault("channels_last", False)
        super().__init__(**kwargs)
        # no optimiser: drop the base's optimizer=None / scheduler=None from the saved and logged hyper-parameters
        # (Lightning's way for a subclass; rebuilding from a checkpoint gets the same None defaults)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.automatic_optimization = False
        # the fitted softmax temperature; a buffer, so it travels in the state dict
        self.register_buffer("temperature", torch.ones(()))
        self.hog = HogFeatures(**self.hog_settings)
        self.pipeline: Pipeline | None = None
        self.fit_info: dict[str, float] = {}
        self._train_features: list[np.ndarray] = []
        self._train_labels: list[np.ndarray] = []
        self._val_scores: list[np.ndarray] = []
        self._val_labels: list[np.ndarray] = []
        self._temperature_pending = False
        self._train_sample: tuple[np.ndarray, np.ndarray] | None = None

    def build_net(self) -> nn.Module:
        return nn.Identity()  # nothing to train by gradient

    def configure_optimizers(self) -> None:
        return None

    @property
    def fitted(self) -> bool:
        return self.pipeline is not None

    def new_pipeline(self) -> Pipeline:
        hp = self.hparams
        weighting = hp.get("class_weighting", "none")
        # base.setup() filled class_weight from the training counts (balanced / sqrt); mean 1 like the loss
        class_weight = None if weighting == "none" else dict(enumerate(self.class_weight.cpu().tolist()))
        steps: list[tuple[str, Any]] = [("hog", HogFeatures(**self.hog_settings)), ("scale", StandardScaler())]
        if hp.pca_components:
            steps.append(("pca", PCA(n_components=hp.pca_components, whiten=hp.pca_whiten, svd_solver="auto",
                                     random_state=hp.random_state)))
        steps.append(("svc", SVC(kernel=hp.kernel, C=hp.C, gamma=hp.gamma, class_weight=class_weight,
                                 decision_function_shape="ovr", break_ties=True, cache_size=hp.svc_cache_mb,
                                 random_state=hp.random_state)))
        return Pipeline(steps)

    # ---- features and scores ---------------------------------------------------------------------------
    @staticmethod
    def _pixels(x: torch.Tensor) -> np.ndarray:
        return x.detach().float().reshape(len(x), -1).cpu().numpy()

    def decision_scores(self, x: torch.Tensor) -> np.ndarray:
        """The SVC's one-vs-rest decision values [B,7] (argmax = the SVC's prediction)."""
        if self.pipeline is None:
            raise RuntimeError("HogSVM is not fitted: train it (one epoch) or load a checkpoint of a trained one")
        return self._all_classes(self.pipeline.decision_function(self._pixels(x)))

    def _all_classes(self, decision: np.ndarray) -> np.ndarray:
        """Decision values in all NUM_CLASSES columns. A class absent from the training data (tiny sets) gets a
        score below every other in its row, so it is never predicted."""
        classes = self.pipeline.named_steps["svc"].classes_
        decision = np.asarray(decision, dtype=np.float64)
        if decision.ndim == 1:  # two classes: sklearn gives one column, > 0 for classes[1]
            decision = np.stack([-decision, decision], axis=1)
        if len(classes) == NUM_CLASSES:
            return decision
        full = np.repeat(decision.min(axis=1, keepdims=True) - 1.0, NUM_CLASSES, axis=1)
        full[:, classes] = decision
        return full

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = torch.from_numpy(np.asarray(self.decision_scores(x), dtype=np.float32)).to(x.device)
        return scores * self.temperature.to(x.device, torch.float32)

    # ---- training: collect, then fit once --------------------------------------------------------------
    def on_fit_start(self) -> None:
        if self.trainer.world_size > 1:  # each process would fit its own SVM on its shard
            raise RuntimeError("HogSVM fits in one process (scikit-learn on the CPU): train it with "
                               "trainer.devices=1, not a multi-process strategy")

    def on_train_epoch_start(self) -> None:
        if self.fitted:  # e.g. resumed from a checkpoint of a fitted model: nothing left to do
            self.trainer.should_stop = True

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        if self.fitted:
            return None
        x, y = batch
        self._train_features.append(self.hog.transform(self._pixels(x)))
        self._train_labels.append(y.detach().cpu().numpy())
        return None

    def fit_pipeline(self) -> None:
        """Fit the pipeline on the features collected this epoch (HOG step is stateless: fitted on features)."""
        if not self._train_features:
            raise RuntimeError("HogSVM: no training batches were collected; nothing to fit")
        features = np.concatenate(self._train_features)
        labels = np.concatenate(self._train_labels)
        self._train_features, self._train_labels = [], []
        pipeline = self.new_pipeline()
        pca = pipeline.named_steps.get("pca")
        most = min(features.shape)
        if pca is not None and isinstance(pca.n_components, int) and pca.n_components > most:
            log.warning("HogSVM: pca_components=%d > what %d images of %d features allow; using %d",
                        pca.n_components, features.shape[0], features.shape[1], most)
            pca.set_params(n_components=most)
        # a fixed random subsample of the training set, scored after the fit for train/loss and train/acc
        keep = np.random.default_rng(self.hparams.random_state).permutation(len(labels))[:_TRAIN_METRICS_MAX]
        self._train_sample = (features[np.sort(keep)], labels[np.sort(keep)])
        started = time.perf_counter()
        pipeline.steps[0][1].fit()
        pipeline[1:].fit(features, labels)  # same estimator objects: fits the full pipeline in place
        seconds = time.perf_counter() - started
        svc = pipeline.named_steps["svc"]
        self.fit_info = {"svm_fit_seconds": seconds, "svm_n_train": float(len(labels)),
                         "svm_n_features": float(features.shape[1]), "svm_n_support": float(svc.n_support_.sum())}
        log.info("HogSVM fitted on %d images (%d HOG features) in %.1fs, %d support vectors", len(labels),
                 features.shape[1], seconds, svc.n_support_.sum())
        self.pipeline = pipeline
        self.temperature.fill_(1.0)
        self._temperature_pending = True
        if self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING:
            self._count_fit_as_a_step()
            self.trainer.should_stop = True  # one epoch is the whole training

    def _count_fit_as_a_step(self) -> None:
        # Lightning counts global_step in optimiser steps; with no optimiser it would stay 0 and ModelCheckpoint
        # would never save ("no step taken since the last save"). The fit is this model's one step.
        try:
            progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        except AttributeError:  # a Lightning whose loops are laid out differently
            log.warning("HogSVM: cannot advance trainer.global_step; checkpoints may not be saved")
            return
        progress.increment_ready()
        progress.increment_completed()

    def on_validation_epoch_start(self) -> None:
        self._val_scores, self._val_labels = [], []
        if self.trainer.sanity_checking or self.fitted or not self._train_features:
            return
        self.fit_pipeline()

    def on_train_epoch_end(self) -> None:
        if not self.fitted and self._train_features:  # no validation ran this epoch: fit now
            self.fit_pipeline()
        if self.fit_info:
            self.log_dict({f"train/{k}": v for k, v in self.fit_info.items()})
        if self.fitted and self._train_sample is not None:
            # how well the SVM fits (a subsample of) its own training images, after the temperature is known
            features, labels = self._train_sample
            self._train_sample = None
            scores = self._all_classes(self.pipeline[1:].decision_function(features))
            logits = torch.from_numpy(scores.astype(np.float32)).to(self.device) * self.temperature
            y = torch.from_numpy(labels).to(self.device)
            self.train_metrics.update(logits, y)
            self.log("train/loss", self._loss(logits, y), batch_size=len(y))
            self.log_dict(self.train_metrics.compute())
            self.train_metrics.reset()
        if self.fitted:
            self.trainer.should_stop = True

    # ---- validation: temperature -----------------------------------------------------------------------
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        if not self.fitted:  # sanity check before the fit
            return None
        x, y = batch
        self._val_scores.append(self.decision_scores(x))
        self._val_labels.append(y.detach().cpu().numpy())
        return None

    def on_validation_epoch_end(self) -> None:
        if not self._val_scores:
            self.val_metrics.reset()
            return
        scores = np.concatenate(self._val_scores)
        labels = np.concatenate(self._val_labels)
        self._val_scores, self._val_labels = [], []
        if self._temperature_pending:
            weight = None if self.hparams.get("class_weighting", "none") == "none" else self.class_weight.cpu()
            self.temperature.fill_(fit_temperature(scores, labels, weight))
            self._temperature_pending = False
            log.info("HogSVM temperature fitted on %d validation images: T=%.3f", len(labels),
                     float(self.temperature))
        logits = torch.from_numpy(scores.astype(np.float32)).to(self.device) * self.temperature
        y = torch.from_numpy(labels).to(self.device)
        self.val_metrics.update(logits, y)
        self.log("val/loss", self._loss(logits, y), batch_size=len(y), sync_dist=True)
        self.log("val/temperature", self.temperature.float(), sync_dist=True)
        super().on_validation_epoch_end()

    # ---- checkpoints and export ------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.pipeline is not None:
            checkpoint[CHECKPOINT_KEY] = pickle.dumps(self.pipeline, protocol=pickle.HIGHEST_PROTOCOL)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        data = checkpoint.get(CHECKPOINT_KEY)
        self.pipeline = load_pipeline_bytes(data) if data is not None else None
        self._temperature_pending = False

    def log_mlflow_model(self, artifact_path: str = "model") -> None:
        """Log the fitted sklearn pipeline with MLflow's sklearn flavour. Its input: flattened 48x48 images,
        float in [0,1], shape [N,2304]; predict gives class indices. The fer package travels as code, for
        the HOG step."""
        import mlflow
        import mlflow.sklearn

        import fer
        from fer.tracking.mlflow_logger import model_requirements

        if self.pipeline is None:
            raise RuntimeError("HogSVM is not fitted; nothing to log")
        example = np.zeros((1, IMAGE_SIZE * IMAGE_SIZE), dtype=np.float32)
        mlflow.sklearn.log_model(self.pipeline, name=artifact_path, input_example=example,
                                 code_paths=[fer.__path__[0]], pip_requirements=model_requirements(),
                                 skops_trusted_types=[f"{HogFeatures.__module__}.{HogFeatures.__qualname__}"])
        mlflow.log_param("svm_temperature", float(self.temperature))


__all__ = ["HogSVM", "HogFeatures", "hog_batch", "fit_temperature", "load_pipeline_bytes"]
