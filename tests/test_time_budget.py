"""callbacks.time_budget: the epoch count fitted to a wall-clock budget, with the learning-rate schedule shrunk so
that it still anneals to its end (a clock that advances by given seconds per epoch stands in for the GPU)."""

from __future__ import annotations

import json

from pathlib import Path

import pytest
import torch
from torch.optim.lr_scheduler import OneCycleLR

from fer.training import run_training, time_budget
from fer.training.time_budget import TimeBudget

from helpers import FAST, compose_train


class EpochClock:
    """time.monotonic for the callback: 0 at fit start, then `seconds[i]` more at the end of epoch i."""

    def __init__(self, seconds: list[float]):
        self.seconds, self.now, self.calls = seconds, 0.0, 0

    def monotonic(self) -> float:
        if self.calls:
            self.now += self.seconds[min(self.calls - 1, len(self.seconds) - 1)]
        self.calls += 1
        return self.now


# a small network unless a case needs the default one: what is checked is the epoch count and the schedule, and each
# epoch writes last.ckpt (28 MB for the default MLP)
TINY_MLP = ["model.net.hidden=[32]"]


def _train(tmp_path, monkeypatch, epoch_seconds: list[float], parts: list[str], minutes: float = 1.0) -> dict:
    monkeypatch.setattr(time_budget, "time", EpochClock(epoch_seconds))
    fast = [o for o in FAST if not o.startswith(("trainer.max_epochs", "+trainer.limit_train_batches"))]
    logger = [] if any(p.startswith("logger=") for p in parts) else ["logger=none"]
    cfg = compose_train(tmp_path, ["model=mlp", *TINY_MLP, *logger, *fast, "trainer.max_epochs=12",
                                   "+trainer.limit_train_batches=3", "callbacks.early_stopping=null",
                                   f"callbacks.time_budget.minutes={minutes}", "model.optimizer.lr=0.01", *parts])
    results = run_training(cfg)
    last = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    assert results["fit/epochs"] == last["epoch"] + 1  # results.json says how many epochs ran
    return last


def onecycle_end_lr(total_steps: int) -> float:
    """The learning rate of the recipe's one-cycle schedule (max 0.01, 25% warm-up) of `total_steps` steps, stepped
    to its end."""
    reference = OneCycleLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.01), max_lr=0.01,
                           total_steps=total_steps, pct_start=0.25)
    for _ in range(total_steps):
        reference.optimizer.step()
        reference.step()
    return reference.get_last_lr()[0]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
@pytest.mark.parametrize("total_steps,pct_start", [(36, 0.25), (7, 0.3), (200, 0.15)])
def test_fers_onecycle_is_torchs_onecyclelr_step_for_step(optimizer, total_steps, pct_start):
    """fer.models.schedules.OneCycle (a length the time budget may change through public attributes) gives the
    learning rate and momentum of torch's OneCycleLR at every step."""
    from fer.models.schedules import OneCycle

    def make(kind):
        param = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([param], lr=0.05, momentum=0.9) if optimizer == "sgd" else \
            torch.optim.AdamW([param], lr=0.002)
        return kind(opt, max_lr=0.05 if optimizer == "sgd" else 0.002, total_steps=total_steps, pct_start=pct_start)

    ours, theirs = make(OneCycle), make(OneCycleLR)
    momentum = "momentum" if optimizer == "sgd" else "betas"
    for _ in range(total_steps):
        for s in (ours, theirs):
            assert s.optimizer.param_groups[0]["lr"] == pytest.approx(theirs.optimizer.param_groups[0]["lr"],
                                                                       rel=1e-12)
            assert s.optimizer.param_groups[0][momentum] == pytest.approx(theirs.optimizer.param_groups[0][momentum])
            s.optimizer.step()
            s.step()
    assert ours.get_last_lr() == pytest.approx(theirs.get_last_lr(), rel=1e-12)
    with pytest.raises(ValueError):  # one step past the end, as torch's
        ours.step()


def test_onecycle_shrinks_to_the_epochs_that_fit_and_still_anneals(tmp_path, monkeypatch):
    # 10 s per epoch, 60 s budget less the 3% margin: 5 epochs of 12, i.e. 15 steps of 36
    last = _train(tmp_path, monkeypatch, [10.0], ["model/optimizer=sgd", "model/scheduler=onecycle"])
    assert last["epoch"] == 4 and last["global_step"] == 15
    scheduler = last["lr_schedulers"][0]
    assert scheduler["total_steps"] == 15
    assert scheduler["pct_start"] == 0.25  # the warm-up keeps its share of the shorter schedule
    # the shrunk schedule is the one-cycle schedule of a 15-step run, stepped to its end (not the middle of the
    # 36-step descent: 0.0078 there)
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(onecycle_end_lr(15))
    assert last["callbacks"]["TimeBudget"]["max_epochs"] == 5  # kept for resume


@pytest.mark.slow  # a training per case; onecycle trains in the fast suite (CI runs the slow tests)
def test_cosine_shrinks_and_a_slower_epoch_shortens_the_run_again(tmp_path, monkeypatch):
    # 5 s epochs: 11 of 12 fit in 58.2 s; 15 s epochs from the fourth on: shortened to 7, then 6 epochs
    last = _train(tmp_path, monkeypatch, [5.0, 5.0, 5.0, 15.0], ["model/optimizer=adamw", "model/scheduler=cosine"])
    assert last["epoch"] == 5 and last["global_step"] == 18
    assert last["lr_schedulers"][0]["T_max"] == 6
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-9)  # eta_min


@pytest.mark.slow  # a training per case; onecycle trains in the fast suite (CI runs the slow tests)
def test_slow_first_epochs_are_made_up_for_early_but_never_late(tmp_path, monkeypatch):
    """2 s epochs, then 1 s: the count first drops to what the slow epochs predict (29 of 60), then rises again with
    the faster ones while the first quarter of the budget lasts (to 55: the whole 58.2 s), and the stretched
    one-cycle schedule still ends at its end. Faster epochs only after that quarter change nothing: stretching an
    annealing schedule would raise its learning rate again."""
    sgd = ["model/optimizer=sgd", "model/scheduler=onecycle", "trainer.max_epochs=60"]
    last = _train(tmp_path / "early", monkeypatch, [2.0, 2.0, 2.0, 1.0], sgd)
    assert last["epoch"] == 54 and last["global_step"] == 165
    assert last["callbacks"]["TimeBudget"]["max_epochs"] == 55 and last["lr_schedulers"][0]["total_steps"] == 165
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(onecycle_end_lr(165))
    # the same speed-up after 16 s (past 15 s, a quarter of the minute): 29 epochs, as first predicted
    last = _train(tmp_path / "late", monkeypatch, [2.0] * 8 + [1.0], sgd)
    assert last["epoch"] == 28 and last["callbacks"]["TimeBudget"]["max_epochs"] == 29


@pytest.mark.slow  # a training per case; onecycle trains in the fast suite (CI runs the slow tests)
def test_no_budget_and_a_generous_one_change_nothing(tmp_path, monkeypatch):
    last = _train(tmp_path / "none", monkeypatch, [10.0], ["model/scheduler=cosine", "trainer.max_epochs=4"],
                  minutes="null")
    assert last["global_step"] == 12 and last["lr_schedulers"][0]["T_max"] == 4
    last = _train(tmp_path / "ample", monkeypatch, [10.0], ["model/scheduler=cosine", "trainer.max_epochs=4"],
                  minutes=10)
    assert last["global_step"] == 12 and last["callbacks"]["TimeBudget"]["max_epochs"] is None


@pytest.mark.slow  # a training per case; onecycle trains in the fast suite (CI runs the slow tests)
def test_csv_logger_keeps_every_epoch(tmp_path, monkeypatch):
    """logger=csv (machines without MLflow): each epoch's val/acc and learning rate in the run folder."""
    import pandas as pd

    # lr 1.0: a val accuracy that is not best in the last epoch (0.14, 0.14, 0.11), so that last and best differ
    _train(tmp_path, monkeypatch, [10.0], ["model/scheduler=cosine", "trainer.max_epochs=3", "logger=csv",
                                           "model.optimizer.lr=1.0", "model.net.hidden=[2048,1024,512]"],
           minutes="null")
    metrics = pd.read_csv(tmp_path / "run" / "csv" / "version_0" / "metrics.csv")
    assert metrics["val/acc"].notna().sum() == 3 and metrics.filter(like="lr-").notna().sum().item() == 3
    assert metrics["train/loss"].notna().sum() == 3  # summed on the device, logged once per epoch
    # results.json: val/ holds the last epoch; val/best_acc and fit/best_epoch the checkpoint that was tested
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    val = metrics.dropna(subset=["val/acc"]).set_index("epoch")["val/acc"]
    assert results["val/acc"] == pytest.approx(val.iloc[-1]) and results["val/best_acc"] == pytest.approx(val.max())
    assert results["fit/best_epoch"] == val.idxmax()
    assert val.idxmax() != val.index[-1]


def test_resume_keeps_the_shortened_length():
    """A resumed run stops where the shrunk schedule ends (the checkpoint's schedule has that length), not at the
    config's max_epochs, past which one-cycle would raise."""
    from types import SimpleNamespace

    callback = TimeBudget(minutes=1)
    callback.load_state_dict({"max_epochs": 5})
    trainer = SimpleNamespace(max_epochs=12, fit_loop=SimpleNamespace(max_epochs=12))
    callback.on_train_start(trainer, None)
    assert trainer.fit_loop.max_epochs == 5


@pytest.mark.parametrize("kwargs", [{"minutes": 0}, {"minutes": 1, "probe_epochs": 0},
                                    {"minutes": 1, "raise_within": 1.5}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="callbacks.time_budget"):
        TimeBudget(**kwargs)
