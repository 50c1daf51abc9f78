"""An exponential moving average of the weights (`callbacks=[default,ema]`): Lightning's WeightAveraging with
torch's foreach EMA update, fixed for how fer uses checkpoints.

Lightning's callback swaps the averaged weights in for validation and saves them as each checkpoint's
state_dict, with the raw weights beside them ("current_model_state", for resuming). Two things it does not fit:
- Loading a checkpoint outside fit (the test of the best checkpoint after training) would put the *raw* weights
  back, and with them the uncalibrated temperature: the test would not score the model that val chose.
  Here only fit (resume=) restores the raw weights; test and validate use the checkpoint's state_dict.
- The best checkpoints are for inference (predict.py, the export, MLflow) and resuming uses last.ckpt, so after
  fit the raw weights are dropped from them: otherwise they would be 2-3x the size for nothing.
The update is torch's foreach EMA: a few kernels per step however many tensors the net has (Lightning's
EMAWeightAveraging launches one or more per tensor, which a launch-bound GPU step feels)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint, WeightAveraging
from pytorch_lightning.trainer.states import TrainerFn
from torch.optim.swa_utils import get_ema_multi_avg_fn

from fer.runtime.atomic import atomic_path

log = logging.getLogger(__name__)

RAW_KEYS = ("current_model_state", "averaging_state")  # what WeightAveraging adds to a checkpoint for resuming


class EMA(WeightAveraging):
    def __init__(self, decay: float = 0.999, every_n_steps: int = 1):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"callbacks.ema.decay must be between 0 and 1, not {decay}")
        if every_n_steps < 1:
            raise ValueError(f"callbacks.ema.every_n_steps must be >= 1, not {every_n_steps}")
        super().__init__(use_buffers=True, multi_avg_fn=get_ema_multi_avg_fn(decay))  # BatchNorm statistics too
        self.decay, self.every_n_steps = decay, every_n_steps

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and step_idx % self.every_n_steps == 0

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == TrainerFn.FITTING:  # resume: the raw weights continue, the average too
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.monitor is not None:
                for path in callback.best_k_models:
                    drop_raw_weights(path)


def drop_raw_weights(path: str | Path) -> None:
    """Rewrite a checkpoint without the raw weights and averaging state (atomically; a no-op without them)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not any(key in checkpoint for key in RAW_KEYS):
        return
    for key in RAW_KEYS:
        checkpoint.pop(key, None)
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    log.debug("%s: averaged weights only (the raw ones stay in last.ckpt for resume=)", path)
