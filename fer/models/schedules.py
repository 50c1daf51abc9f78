"""Learning-rate schedules whose length may change mid-run through public attributes (the time budget,
fer.training.time_budget, fits a schedule to the epochs that fit in a wall-clock budget).

`OneCycle` is torch's OneCycleLR (two phases, cosine annealing, momentum cycled against the learning rate: the
same values at every step, tested against it) with its phase ends computed from `total_steps` and `pct_start` at
every step instead of stored at construction: setting `total_steps` moves every phase end with it. torch's
OneCycleLR keeps its phase ends only in a private list, which an upgrade may rename or lay out differently."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


def _cosine(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


class OneCycle(LRScheduler):
    def __init__(self, optimizer: Optimizer, max_lr: float | Sequence[float], total_steps: int,
                 pct_start: float = 0.3, div_factor: float = 25.0, final_div_factor: float = 1e4,
                 cycle_momentum: bool = True, base_momentum: float = 0.85, max_momentum: float = 0.95,
                 last_epoch: int = -1):
        if int(total_steps) < 1:
            raise ValueError(f"OneCycle: total_steps must be >= 1, got {total_steps}")
        if not 0.0 < float(pct_start) < 1.0:
            raise ValueError(f"OneCycle: pct_start must be between 0 and 1, got {pct_start}")
        self.total_steps, self.pct_start = int(total_steps), float(pct_start)
        groups = optimizer.param_groups
        peaks = list(max_lr) if isinstance(max_lr, Sequence) else [float(max_lr)] * len(groups)
        self.max_lrs = [float(p) for p in peaks]
        self.start_lrs = [p / div_factor for p in self.max_lrs]
        self.min_lrs = [s / final_div_factor for s in self.start_lrs]
        self.use_beta1 = "betas" in optimizer.defaults
        self.cycle_momentum = cycle_momentum and (self.use_beta1 or "momentum" in optimizer.defaults)
        self.base_momentum, self.max_momentum = float(base_momentum), float(max_momentum)
        if last_epoch == -1:
            for group, start in zip(groups, self.start_lrs):
                group["initial_lr"] = start
                if self.cycle_momentum:
                    self._set_momentum(group, self.max_momentum)
        super().__init__(optimizer, last_epoch)

    def stretch(self, ratio: float) -> None:
        """Make the schedule `ratio` times as long (steps rounded up: it must never be stepped past its end);
        the warm-up keeps its share."""
        self.total_steps = math.ceil(self.total_steps * ratio)

    def _set_momentum(self, group: dict, momentum: float) -> None:
        if self.use_beta1:
            group["betas"] = (momentum, *group["betas"][1:])
        else:
            group["momentum"] = momentum

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"OneCycle stepped {step} times, past its {self.total_steps} steps")
        warm_end, last = self.pct_start * self.total_steps - 1, self.total_steps - 1
        if step <= warm_end:
            pct, lr_ends, momentum_ends = step / warm_end, (self.start_lrs, self.max_lrs), (self.max_momentum,
                                                                                            self.base_momentum)
        else:
            pct, lr_ends, momentum_ends = (step - warm_end) / (last - warm_end), (self.max_lrs, self.min_lrs), (
                self.base_momentum, self.max_momentum)
        if self.cycle_momentum:
            for group in self.optimizer.param_groups:
                self._set_momentum(group, _cosine(*momentum_ends, pct))
        return [_cosine(start, end, pct) for start, end in zip(*lr_ends)]
