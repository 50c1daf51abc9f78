"""The LightningModule of every neural model: the network composed from config, loss, metrics, optimiser/scheduler
from config.

A neural model = a network registered by name (fer.models.registry) and named by the config's `net:` node
(conf/model/<name>.yaml, as lightning-hydra-template composes `net`); everything else (Trainer, logging,
checkpoints, predict) is this class, the same for all of them. A model that is no network (the SVM) subclasses it.
"""

from __future__ import annotations

import copy
from typing import Any

import hydra.utils
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (MulticlassAccuracy, MulticlassCalibrationError, MulticlassF1Score,
                                         MulticlassRecall)

from fer.classes import CLASS_NAMES, IMAGE_SIZE, NUM_CLASSES
from fer.models.crops import random_crops, ten_crops, ten_crops_are_mirror_invariant
from fer.models.registry import registered_target
from fer.tta import NAMED_VIEWS, tta_proba

CHECKPOINT_MODEL_KEY = "fer_model"  # the model's registered name, in every checkpoint
CALIBRATION_KEY = "calibration_t"  # the buffer (state_dict key) holding the calibration temperature
# scheduler sizes a config may give as "auto": filled from the Trainer, so one config fits any data size or epochs
AUTO_SIZED = ("total_steps", "T_max")


class FERClassifier(pl.LightningModule):
    """Input: float [B,1,48,48] in [0,1] (see fer.data.augment.to_unit_float). Output: logits [B,7].

    net: the network's config, {"_target_": "fer.models.<name>.<Builder>", **its keys}: a registered network
    (fer.models.registry), built as Builder(**keys, image_size=the side it sees) and mapping [B,1,s,s] to logits
    [B,7]. `model_name` is its registered name (a subclass that is no network is registered itself).

    crop_size (e.g. 40): the network sees crop_size x crop_size crops of the 48x48 faces: a random crop per image
    while training, the mean of the ten-crop logits (four corners and the centre, and their mirrors) otherwise, so
    that predict.py, TTA and the export still give the model 48x48 images. compile: torch.compile the network
    (compile_mode "reduce-overhead" uses CUDA graphs on a GPU)."""

    model_name: str = ""

    # what flows may ask of a model (fer.capabilities.Trainable), with the answers of a neural model
    train_augmentation: bool = True  # False for models that must see the images as they are (a fitted pipeline)
    onnx_exportable: bool = True
    onnx_refusal: str = ""
    val_split_record: dict | None = None  # set from the checkpoint by fer.models.loading

    def __init__(self, net: dict | None = None, optimizer: dict | None = None, scheduler: dict | None = None,
                 class_weighting: str = "none", label_smoothing: float = 0.0, input_mean: float = 0.5,
                 input_std: float = 0.25, channels_last: bool = True, test_tta: str = "none",
                 crop_size: int | None = None, compile: bool = False, compile_mode: str = "default"):
        if test_tta not in NAMED_VIEWS:
            raise ValueError(f"model.test_tta must be one of {', '.join(NAMED_VIEWS)}, got {test_tta!r}")
        if crop_size is not None and not 8 <= int(crop_size) <= IMAGE_SIZE:
            raise ValueError(f"model.crop_size must be null or 8..{IMAGE_SIZE} pixels, got {crop_size!r}")
        super().__init__()
        self.save_hyperparameters()
        self.net_input_size = int(crop_size) if crop_size else IMAGE_SIZE  # the side the network sees
        self.net = self.build_net(net)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        if compile:
            # kept out of the module tree (no second copy of the weights in state_dict, checkpoints unchanged)
            self.__dict__["_compiled_net"] = torch.compile(self.net, mode=compile_mode)
        # a buffer (not a plain attribute) so the weights used in training are saved with the checkpoint
        self.register_buffer("class_weight", torch.ones(NUM_CLASSES))
        # probabilities are softmax(logits / T): T is fitted on the val split after training (fer.training)
        self.register_buffer(CALIBRATION_KEY, torch.ones(()))
        # ignore_index: evaluation padding under DDP carries label -1 (fer.data.batches.IGNORE)
        # validate_args=False: the checks read values back from the device, a synchronisation on every step
        checked = {"ignore_index": -1, "validate_args": False}
        metrics = MetricCollection({"acc": MulticlassAccuracy(NUM_CLASSES, average="micro", **checked),
                                    "f1_macro": MulticlassF1Score(NUM_CLASSES, average="macro", **checked)})
        # epoch sums (value, weight) for train/acc and the eval losses, kept on the device and read once per
        # epoch: a torchmetrics update or a per-step batch mean reads values back on every step, and an
        # all-padding DDP batch (labels -1) has no mean at all
        self._epoch_sums: dict[str, torch.Tensor] = {}
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        # with test_tta, the test split is also scored with test-time augmentation (test_tta/acc ...), so one
        # run reports both; the plain test/ metrics and the reports (fer.training.test_outputs) stay TTA-free
        self.test_tta_metrics = metrics.clone(prefix="test_tta/")
        self.test_tta_views = NAMED_VIEWS[test_tta]
        self.test_recall = MulticlassRecall(NUM_CLASSES, average="none", **checked)
        self.test_ece = MulticlassCalibrationError(NUM_CLASSES, n_bins=15, norm="l1", **checked)

    def build_net(self, net: dict | None) -> nn.Module:
        """The network its config names; sets model_name to its registered name. (A subclass that is no network
        returns its own stand-in.)"""
        if not net or "_target_" not in net:
            raise ValueError("model.net: which network? a node with the _target_ of a registered network "
                             "(see conf/model/cnn.yaml)")
        try:
            self.model_name, build = registered_target(net["_target_"])
        except ValueError as exc:
            raise ValueError(f"model.net._target_={exc}") from None
        return build(**{k: v for k, v in net.items() if k != "_target_"}, image_size=self.net_input_size)

    # ---- forward -------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.hparams.input_mean) / self.hparams.input_std
        crop = self.hparams.get("crop_size")
        if crop and self.training:
            x = random_crops(x, crop)
        elif crop:
            return self._net(ten_crops(x, crop)).unflatten(0, (10, -1)).mean(0)  # no fixed batch: export-safe
        return self._net(x)

    @property
    def mirror_invariant(self) -> bool:  # its prediction already averages each image with its mirror (fer.tta)
        return ten_crops_are_mirror_invariant(self.hparams.get("crop_size"), IMAGE_SIZE)

    def tta_proba(self, x: torch.Tensor, flip: bool = True, shift: int = 0) -> torch.Tensor:
        """predict_proba averaged over the test-time views, without the mirror view where it adds nothing."""
        return tta_proba(self.predict_proba, x, flip and not self.mirror_invariant, shift)

    def _net(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.__dict__.get("_compiled_net", self.net)(x)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated class probabilities [B,7] (float32) for a float [B,1,48,48] batch in [0,1]."""
        return F.softmax(self(x).float() / getattr(self, CALIBRATION_KEY), dim=1)

    # ---- training ------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule  # None when fit() was given bare dataloaders
        if stage == "fit" and dm is not None and self.hparams.class_weighting != "none":
            counts = torch.as_tensor(dm.class_counts, dtype=torch.float32).clamp(min=1)
            weight = counts.sum() / (NUM_CLASSES * counts)  # "balanced": each class contributes equally
            if self.hparams.class_weighting == "sqrt":
                weight = weight.sqrt()  # softer: helps rare classes without wrecking calibration
            elif self.hparams.class_weighting != "balanced":
                raise ValueError(f"model.class_weighting must be none, balanced or sqrt, "
                                 f"got {self.hparams.class_weighting!r}")
            self.class_weight.copy_(weight / weight.mean())

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), y, weight=self.class_weight, ignore_index=-1,
                               label_smoothing=self.hparams.label_smoothing)

    def _add_eval_loss(self, name: str, logits: torch.Tensor, y: torch.Tensor) -> None:
        """The split's loss: the same weighted mean as _loss, over every (non-padding) image of the epoch."""
        total = F.cross_entropy(logits.float(), y, weight=self.class_weight, ignore_index=-1,
                                label_smoothing=self.hparams.label_smoothing, reduction="sum")
        self.add_to_epoch(name, total, (self.class_weight[y.clamp_min(0)] * (y >= 0)).sum())

    def add_to_epoch(self, name: str, value: torch.Tensor, weight: torch.Tensor) -> None:
        """Adds to the epoch sums of `name`, logged as sum(value) / sum(weight) by log_epoch_sums."""
        pair = torch.stack([value.detach().float(), weight.detach().float()])
        self._epoch_sums[name] = self._epoch_sums[name] + pair if name in self._epoch_sums else pair

    def log_epoch_sums(self, *names: str) -> None:
        for name in names:
            pair = self._epoch_sums.pop(name, None)
            if pair is None:
                continue
            if self.trainer.world_size > 1:  # every rank adds to every name (padding batches too): same order
                pair = self.trainer.strategy.reduce(pair, reduce_op="sum")
            # equal on every rank after the reduction; sync_dist keeps Lightning's DDP epoch-logging contract
            self.log(name, pair[0] / pair[1].clamp_min(1e-12), prog_bar=name.startswith("train/"), sync_dist=True)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self._loss(logits, y)
        # epoch sums, not self.log: each self.log call walks Lightning's whole result collection (~1 ms of
        # Python per step, which a GPU step at batch 128 does not have to spare)
        images = (y >= 0).sum()
        self.add_to_epoch("train/loss", loss * images, images)  # batch losses weighted by batch size, as before
        self.add_to_epoch("train/acc", (logits.argmax(1) == y).sum(), images)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_epoch_sums("train/loss", "train/acc")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_metrics.update(logits, y)
        self._add_eval_loss("val/loss", logits, y)

    def on_validation_epoch_end(self) -> None:
        self.log_epoch_sums("val/loss")
        values = self.val_metrics.compute()
        self.log("val/acc", values.pop("val/acc"), prog_bar=True, sync_dist=True)
        self.log_dict(values, sync_dist=True)
        self.val_metrics.reset()

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Scores a test batch; returns its calibrated probabilities (for callbacks: fer.training.test_outputs)."""
        x, y = batch
        probs = self.predict_proba(x)
        self.test_metrics.update(probs, y)
        self.test_recall.update(probs, y)
        self.test_ece.update(probs, y)
        self._add_eval_loss("test/loss", torch.log(probs.clamp_min(1e-12)), y)
        if self.test_tta_views is not None:
            tta_probs = self.tta_proba(x, *self.test_tta_views)
            self.test_tta_metrics.update(tta_probs, y)
            self._add_eval_loss("test_tta/loss", torch.log(tta_probs.clamp_min(1e-12)), y)
        return probs

    def on_test_epoch_end(self) -> None:
        self.log_epoch_sums("test/loss", "test_tta/loss")
        self.log_dict(self.test_metrics.compute(), sync_dist=True)
        if self.test_tta_views is not None:
            self.log_dict(self.test_tta_metrics.compute(), sync_dist=True)
            self.test_tta_metrics.reset()
        recall = self.test_recall.compute()
        self.log_dict({f"test/recall_{name}": recall[i] for i, name in enumerate(CLASS_NAMES)}, sync_dist=True)
        self.log("test/ece", self.test_ece.compute(), sync_dist=True)
        self.test_metrics.reset()
        self.test_recall.reset()
        self.test_ece.reset()

    # ---- optimisation --------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = hydra.utils.instantiate(optimizer_config(self.hparams.optimizer, self.device),
                                            params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        cfg = copy.deepcopy(dict(self.hparams.scheduler))
        monitor, interval = cfg.pop("monitor", "val/acc"), cfg.pop("interval", "epoch")
        for key in AUTO_SIZED:
            if cfg.get(key) == "auto":
                cfg[key] = int(self.trainer.estimated_stepping_batches if interval == "step"
                               else self.trainer.max_epochs)
        scheduler = hydra.utils.instantiate(cfg, optimizer=optimizer)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": monitor, "interval": interval}}

    # ---- checkpoints ---------------------------------------------------------------------------------
    @classmethod
    def inference_kwargs(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        """Constructor arguments to rebuild a trained model from its checkpoint's hyper-parameters, for inference:
        not compiled, whatever training did, and no pretrained weights read (the checkpoint holds every weight, and
        the file they came from may not be installed): a network that reads some takes `pretrained`."""
        kwargs = {**hparams, "compile": False}
        if isinstance(kwargs.get("net"), dict) and "pretrained" in kwargs["net"]:
            kwargs["net"] = {**kwargs["net"], "pretrained": False}
        return kwargs

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # which model to rebuild: its registered name (fer.models.registry), never an import path
        checkpoint[CHECKPOINT_MODEL_KEY] = self.model_name

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # checkpoints from before calibration: uncalibrated (T = 1), as they were
        checkpoint.get("state_dict", {}).setdefault(CALIBRATION_KEY, torch.ones(()))


class Probabilities(nn.Module):
    """A classifier as a plain module returning its calibrated probabilities (for the ONNX export)."""

    def __init__(self, model: FERClassifier):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.model(x).float() / getattr(self.model, CALIBRATION_KEY), dim=1)


def optimizer_config(cfg: dict, device: torch.device) -> dict:
    """The optimizer's config for the device: on CUDA, the fused kernels (one launch for all parameters instead of
    several per parameter) where the optimizer offers them and the config does not say otherwise."""
    import importlib
    import inspect

    cfg = dict(cfg)
    if device.type == "cuda" and "fused" not in cfg:
        module, _, name = str(cfg["_target_"]).rpartition(".")
        if "fused" in inspect.signature(getattr(importlib.import_module(module), name)).parameters:
            cfg["fused"] = True
    return cfg
