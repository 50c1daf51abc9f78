"""Optuna searches through train.py end to end (-m slow: each trial is a training run): the search on the synthetic
data as the README gives it, and two workers sharing one study through one sqlite storage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from helpers import ROOT

pytestmark = pytest.mark.slow

# tiny trials: a 32-unit MLP for two epochs of the small synthetic set, on the search space of the shipped config
TINY = ["model=mlp", "model.net.hidden=[32]", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
        "data.source.n_train=700", "data.source.n_test=140", "data.progress=false"]
STUDY = "fer2013_mlp_search"


def _train(tmp_path: Path, *args: str, log: str = "sweep") -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
           "FER_CACHE_DIR": str(tmp_path / "cache")}
    out = open(tmp_path / f"{log}.log", "w")
    options = [a for a in args if a.startswith("-m")]  # Hydra's flags before the overrides
    overrides = [a for a in args if not a.startswith("-m")]
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *options, "hparams_search=fer2013_mlp", *TINY,
                             f"paths.log_dir={tmp_path / 'outputs'}", *overrides],
                            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, text=True)


def _finish(proc: subprocess.Popen, tmp_path: Path, log: str = "sweep") -> str:
    assert proc.wait(timeout=600) == 0, (tmp_path / f"{log}.log").read_text()[-4000:]
    return (tmp_path / f"{log}.log").read_text()


def _client(tmp_path: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")


def _trial_runs(tmp_path: Path) -> list:
    client = _client(tmp_path)
    experiment = client.get_experiment_by_name(STUDY)
    return [r for r in client.search_runs([experiment.experiment_id]) if "optuna.trial" in r.data.tags]


def test_a_search_of_three_trials_on_the_synthetic_data(tmp_path):
    """As README gives it: python train.py -m hparams_search=<name> hydra.sweeper.n_trials=3."""
    log = _finish(_train(tmp_path, "-m", "hydra.sweeper.n_trials=3"), tmp_path)
    [sweep] = (tmp_path / "outputs" / "train" / "multiruns").iterdir()
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert study.trials[0].params["model.optimizer.lr"] == 0.002  # the enqueued recipe trial ran first
    for trial in study.trials:  # every trial reported each epoch's val/acc (what the pruner judges)
        assert sorted(trial.intermediate_values) == [0, 1], trial
    runs = _trial_runs(tmp_path)
    assert sorted(int(r.data.tags["optuna.trial"]) for r in runs) == [0, 1, 2]
    finished = {int(r.data.tags["optuna.trial"]): r for r in runs if r.info.status == "FINISHED"}
    for number, run in finished.items():  # the objective is the run's best epoch's val/acc, never a test metric
        history = _client(tmp_path).get_metric_history(run.info.run_id, "val/acc")
        assert study.trials[number].value == pytest.approx(max(m.value for m in history))
        assert "test/acc" not in run.data.metrics
        assert float(run.data.params["model.optimizer.lr"]) == study.trials[number].params["model.optimizer.lr"]
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    assert results.n_trials == 3 and results.best_value == max(t.value for t in study.trials if t.value is not None)
    assert f"best trial {results.best_trial} of study {STUDY}" in log
    best = OmegaConf.load(sweep / "best_experiment.yaml")
    assert best.model.optimizer.lr == study.best_trial.params["model.optimizer.lr"]
    assert "root" not in best.get("data", {})  # this machine's data folder stays out of the recipe
    assert (sweep / "plots" / "optimization_history.png").is_file()


def test_two_workers_share_one_study(tmp_path):
    """Two processes on one sqlite storage: the study holds the sum of their trials, each trial number ran once
    and is one run in MLflow; the second worker prunes every trial it can (a mixed study)."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    shared = ["-m", f"hydra.sweeper.storage={storage}", "hydra.sweeper.n_trials=2"]
    first = _train(tmp_path, *shared, "hydra.sweeper.sampler.seed=1", log="first")
    prune_all = ["hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner",  # no val/acc reaches 1.01
                 "~hydra.sweeper.pruner.n_startup_trials", "+hydra.sweeper.pruner.lower=1.01",
                 "hydra.sweeper.pruner.n_warmup_steps=0"]
    second = _train(tmp_path, *shared, "hydra.sweeper.sampler.seed=2", *prune_all, log="second")
    _finish(first, tmp_path, "first")
    log = _finish(second, tmp_path, "second")
    study = optuna.load_study(study_name=STUDY, storage=storage)
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    states = [t.state for t in study.trials]
    assert set(states) <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}, states
    assert states.count(optuna.trial.TrialState.PRUNED) >= 2  # the second worker's own
    assert sum(p == {"model.optimizer.lr": 0.002} or p.get("model.optimizer.lr") == 0.002
               for p in (t.params for t in study.trials)) == 1  # the enqueued recipe trial: run once, not per worker
    runs = _trial_runs(tmp_path)
    assert sorted(int(r.data.tags["optuna.trial"]) for r in runs) == [0, 1, 2, 3]
    for run in runs:
        trial = study.trials[int(run.data.tags["optuna.trial"])]
        expected = "KILLED" if trial.state == optuna.trial.TrialState.PRUNED else "FINISHED"
        assert run.info.status == expected, (trial, run.info)
        if expected == "KILLED":
            assert "pruned after epoch" in run.data.tags["stopped"]
    assert "trials finished so far" in log
