"""Fit the number of epochs to a wall-clock budget (`callbacks.time_budget.minutes`), so that a recipe written for
one GPU finishes in time on another one, or beside other runs on the same GPU.

Lightning's own `trainer.max_time` stops training when time is up, which cuts a one-cycle or cosine schedule before
its low-learning-rate end, the part that gives most of the accuracy. This callback instead measures the seconds per
epoch (training + validation + checkpointing; the first epoch, with cuDNN autotuning and compilation, is not
counted), lowers `trainer.max_epochs` to what fits, and shrinks the learning-rate schedule to the new length, so it
still anneals to its end. Re-checked after every epoch: lowered whenever the run slows down (e.g. because another
one started beside it), and raised again while the first `raise_within` share of the budget has not passed, so that
slow first epochs do not cost the whole run epochs: on an H100 a solo cnn_deep_gpu run measured 1.33-1.37 s per
epoch on its first epochs, then ran at 1.07 s, and stopped 47 s before its budget with 157 epochs. Later
on the count is only lowered: stretching a schedule that is already annealing would raise its learning rate
again. `trainer.max_epochs` stays the ceiling."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from torch.optim.lr_scheduler import CosineAnnealingLR, OneCycleLR

from fer.models.schedules import OneCycle

log = logging.getLogger(__name__)


class TimeBudget(pl.Callback):
    def __init__(self, minutes: float | None = None, probe_epochs: int = 2, recent_epochs: int = 3,
                 margin: float = 0.03, raise_within: float = 0.25, clock: Callable[[], float] | None = None):
        if minutes is not None and minutes <= 0:
            raise ValueError(f"callbacks.time_budget.minutes must be > 0 (or null for no budget), not {minutes}")
        if probe_epochs < 1:
            raise ValueError(f"callbacks.time_budget.probe_epochs must be >= 1, not {probe_epochs}")
        self.seconds = None if minutes is None else 60.0 * minutes
        if not 0.0 <= raise_within <= 1.0:
            raise ValueError(f"callbacks.time_budget.raise_within must be a share of the budget (0..1), not "
                             f"{raise_within}")
        self.probe_epochs, self.recent_epochs, self.margin = probe_epochs, recent_epochs, margin
        self.raise_within = raise_within
        self.ceiling: int | None = None  # trainer.max_epochs as configured
        self.clock = clock or (lambda: time.monotonic())  # looked up when called: tests replace the clock
        self.started = 0.0
        self.epoch_ends: list[float] = []
        self.max_epochs: int | None = None  # what this callback set (kept in checkpoints, for resume)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started, self.epoch_ends, self.ceiling = self.clock(), [], trainer.max_epochs

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # resume: the schedule in the checkpoint was shrunk to this length, so the fit loop must stop there too
        if self.max_epochs is not None and self.max_epochs < trainer.max_epochs:
            trainer.fit_loop.max_epochs = self.max_epochs

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # in Lightning 2 this runs after the epoch's validation: an epoch's time includes it
        if self.seconds is None:
            return
        now = self.clock()
        self.epoch_ends.append(now)
        durations = [b - a for a, b in zip(self.epoch_ends, self.epoch_ends[1:])]  # from the second epoch on
        if len(durations) < self.probe_epochs:
            return
        per_epoch = sum(durations[-self.recent_epochs:]) / len(durations[-self.recent_epochs:])
        done = trainer.current_epoch + 1
        elapsed = now - self.started
        left = self.seconds * (1.0 - self.margin) - elapsed
        fits = min(max(done, done + int(left // per_epoch)), self.ceiling or trainer.max_epochs)
        may_raise = self.max_epochs is not None and elapsed <= self.raise_within * self.seconds
        if fits == trainer.max_epochs or (fits > trainer.max_epochs and not may_raise):
            return
        # the first cut and large changes at INFO; the one-epoch trims of a run that slowed a little at DEBUG
        large = self.max_epochs is None or abs(fits - trainer.max_epochs) > 0.03 * trainer.max_epochs
        log.log(logging.INFO if large else logging.DEBUG,
                "time budget %.1f min: %.2f s per epoch, so %d epochs instead of %d (learning-rate schedule %s to "
                "match)", self.seconds / 60, per_epoch, fits, trainer.max_epochs,
                "shrunk" if fits < trainer.max_epochs else "stretched")
        for config in trainer.lr_scheduler_configs:
            rescale_schedule(config.scheduler, trainer.max_epochs, fits)
        trainer.fit_loop.max_epochs = self.max_epochs = fits

    def state_dict(self) -> dict[str, Any]:
        return {"max_epochs": self.max_epochs}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.max_epochs = state_dict.get("max_epochs")


def rescale_schedule(scheduler: Any, old_epochs: int, new_epochs: int) -> None:
    """Rescale a learning-rate schedule sized for `old_epochs` to end after `new_epochs` (steps per epoch fixed;
    fewer epochs or, early in a run, more), through the schedule's public length: fer's OneCycle stretches (the
    warm-up keeps its share), cosine's T_max scales. Others (plateau, step, torch's own OneCycleLR, whose phase
    ends are private) have no end that can be moved: left as they are, with a warning."""
    ratio = new_epochs / old_epochs
    if isinstance(scheduler, OneCycle):
        scheduler.stretch(ratio)
    elif isinstance(scheduler, CosineAnnealingLR):
        scheduler.T_max = max(1, math.ceil(scheduler.T_max * ratio))
    else:
        log.warning("time budget: %s has no end to move; its learning rates are left as they were%s",
                    type(scheduler).__name__, " (model/scheduler=onecycle gives one that can be fitted)"
                    if isinstance(scheduler, OneCycleLR) else "")
