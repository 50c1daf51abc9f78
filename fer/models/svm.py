"""HOG features -> StandardScaler -> PCA -> SVC, as a FERClassifier so the Trainer, logging, checkpoints and
predict path are the same as for the neural models.

How it trains: one pass over the training batches (un-augmented images) collects HOG features; the sklearn
pipeline is fitted once, at the epoch's last training batch, and training stops after that one epoch whatever
`trainer.max_epochs` is. The fit counts as the run's one optimisation step (global_step 1), else ModelCheckpoint
would never save. Single process only (DDP would fit one SVM per shard; refused).

`forward` returns the SVC's one-vs-rest decision scores [B,7] as logits: predictions are the argmax of the SVC
decision (SVC(break_ties=True), so `pipeline.predict` agrees). Probabilities are softmax(logits / T) with the
calibration every model shares (fer.training.calibrate fits T on the val split after training).

Checkpoints: the fitted pipeline is stored in a format whose loading cannot run code (fer.models.svm_storage).
Checkpoints written before 2026-12-06 also hold the SVM's own score scale k (state dict key "temperature",
logits = k * scores), fitted on val during training; they load with it folded into the shared temperature.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from torch import nn

from fer.classes import NUM_CLASSES
from fer.models.base import CALIBRATION_KEY, FERClassifier
from fer.models.hog import HogFeatures
from fer.models.registry import register_model
from fer.models.svm_storage import dump_pipeline, load_pipeline

log = logging.getLogger(__name__)

_TRAIN_METRICS_MAX = 2000  # training images scored after the fit for train/loss, train/acc (the SVM's own fit)


@register_model("svm")
class HogSVM(FERClassifier):
    """HOG -> StandardScaler -> PCA -> SVC. `class_weighting` (none/balanced/sqrt, as for the neural models) becomes
    the SVC's class_weight."""

    train_augmentation = False  # the SVM is fitted once on the images as they are
    onnx_exportable = False
    onnx_refusal = ("the svm model (HOG features + a scikit-learn SVC) cannot be exported to ONNX: HOG is no ONNX "
                    "operator; use the checkpoint with predict.py, or export one of the neural models")

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
        # no network, no optimiser: drop the base's net=None / optimizer=None / scheduler=None from the saved and
        # logged hyper-parameters (Lightning's way for a subclass; rebuilding from a checkpoint gets the same None)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.automatic_optimization = False
        self.hog = HogFeatures(**self.hog_settings)
        self.pipeline: Pipeline | None = None
        self.fit_info: dict[str, float] = {}
        self._train_features: list[np.ndarray] = []
        self._train_labels: list[np.ndarray] = []
        self._train_sample: tuple[np.ndarray, np.ndarray] | None = None

    def build_net(self, net: dict | None) -> nn.Module:
        return nn.Identity()  # nothing to train by gradient: no network

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # The fit is this model's one training step, taken through this optimiser (fit_pipeline): Lightning counts
        # global_step in optimiser steps, and a run with no step saves no checkpoint. Its one tensor has no
        # gradient (the step changes nothing) and is no part of the model (not in the state dict).
        return torch.optim.SGD([torch.zeros((), requires_grad=True)], lr=0.0)

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
        return scores

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
        if batch_idx == self.trainer.num_training_batches - 1:  # every training image is in: fit
            self.fit_pipeline()
            # the fit is the run's one optimiser step (configure_optimizers), counted by Lightning as any step
            self.optimizers().step()
            self.trainer.should_stop = True  # one epoch is the whole training
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

    def on_train_epoch_end(self) -> None:
        if not self.fitted and self._train_features:  # the epoch ended before its announced last batch: fit now
            self.fit_pipeline()
        if self.fit_info:
            self.log_dict({f"train/{k}": v for k, v in self.fit_info.items()})
        if self.fitted and self._train_sample is not None:
            # how well the SVM fits (a subsample of) its own training images
            features, labels = self._train_sample
            self._train_sample = None
            scores = self._all_classes(self.pipeline[1:].decision_function(features))
            logits = torch.from_numpy(scores.astype(np.float32)).to(self.device)
            y = torch.from_numpy(labels).to(self.device)
            self.add_to_epoch("train/acc", (logits.argmax(1) == y).sum(), (y >= 0).sum())
            self.log("train/loss", self._loss(logits, y), batch_size=len(y))
            self.log_epoch_sums("train/acc")
        if self.fitted:
            self.trainer.should_stop = True

    # ---- validation -------------------------------------------------------------------------------------
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        if self.fitted:  # not in Lightning's sanity check, before the fit
            super().validation_step(batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        if self.fitted:
            super().on_validation_epoch_end()

    # ---- checkpoints and export ------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.pipeline is not None:
            checkpoint.update(dump_pipeline(self.pipeline))

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.pipeline = load_pipeline(checkpoint)
        state = checkpoint.get("state_dict", {})
        if "temperature" in state:  # before 2026-12-06: softmax(k * scores / T) is softmax(scores / (T / k))
            scale = state.pop("temperature")
            state[CALIBRATION_KEY] = state.get(CALIBRATION_KEY, torch.ones(())) / scale
