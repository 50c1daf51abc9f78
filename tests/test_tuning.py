"""Hyper-parameter search, unit by unit (fer.tuning): the search-space grammar, the overrides a trial gets, the
best trial as an experiment config, the run's link back to its trial (reports, pruning) and the study's summary.
The whole sweep through train.py, and two workers on one study, are in tests/test_hparams_search.py (-m slow)."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from fer.errors import RunStoppedEarly, UserError
from fer.tuning.space import choice_values, parse_search_space, suggest
from fer.tuning.study import open_study, summarise_study, trial_state
from fer.tuning.summary import experiment_config
from fer.tuning.trial import TrialPruned, TrialPruning
from helpers import CONF, compose_train, mlflow_overrides

optuna.logging.set_verbosity(optuna.logging.WARNING)
SEARCH = OmegaConf.load(CONF / "hparams_search" / "fer2013_mlp.yaml").hydra.sweeper


@pytest.mark.parametrize("text, expected", [
    ("choice(64, 128, 256)", CategoricalDistribution([64, 128, 256])),
    ("choice([1.0,1.0], [0.9,1.1])", CategoricalDistribution(["[1.0,1.0]", "[0.9,1.1]"])),  # lists as override text
    ("range(10, 35, 5)", IntDistribution(10, 30, step=5)),  # stop excluded, as in Hydra's own range()
    ("range(0, 5)", IntDistribution(0, 4)),
    ("interval(0.0, 0.5)", FloatDistribution(0.0, 0.5)),
    ("tag(log, interval(0.0005, 0.008))", FloatDistribution(0.0005, 0.008, log=True)),
])
def test_search_space_reads_hydras_sweep_grammar(text, expected):
    space = parse_search_space({"key": text}, [])
    assert space.distributions == {"key": expected} and space.fixed == []


def test_command_line_wins_over_params_and_fixed_values_pass_as_written():
    space = parse_search_space({"model.net.dropout": "interval(0.0, 0.5)", "callbacks.time_budget.minutes": "4"},
                               ["model.net.dropout=0.1", "data.root=../shared/fer2013",
                                "model.label_smoothing=choice(0,0.1)"])
    assert set(space.distributions) == {"model.label_smoothing"}
    assert space.fixed == ["callbacks.time_budget.minutes=4", "model.net.dropout=0.1", "data.root=../shared/fer2013"]


@pytest.mark.parametrize("params, message", [
    ({"model.net.dropout": "interval(0.0"}, "hydra.sweeper.params.model.net.dropout=interval(0.0"),
    ({"data.augment.shift": "range(5, 0)"}, "an empty range"),
    ({"data.root": "glob(*)"}, "use choice(), range(), interval()"),
])
def test_a_bad_search_value_names_its_key(params, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_search_space(params, [])


def test_a_trials_overrides_compose_into_the_config_it_trains(tmp_path):
    """The shipped search space: every value a trial draws reaches the composed config (lists included)."""
    space = parse_search_space(OmegaConf.to_container(SEARCH.params), [])
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=3))
    study.enqueue_trial(choice_values(OmegaConf.to_container(SEARCH.enqueue[0])))
    for _ in range(3):  # the enqueued recipe trial, then two drawn ones
        trial = study.ask()
        values = suggest(trial, space)
        cfg = compose_train(tmp_path, ["model=mlp", *space.overrides(values)])
        for key, value in values.items():
            expected = OmegaConf.to_container(OmegaConf.create({"v": value}))["v"]
            if isinstance(value, str):  # a list choice, as override text
                expected = [float(x) for x in value.strip("[]").split(",")]
            got = OmegaConf.select(cfg, key)
            assert (OmegaConf.to_container(got) if OmegaConf.is_list(got) else got) == expected, key
        assert cfg.callbacks.time_budget.minutes == SEARCH.params["callbacks.time_budget.minutes"]  # the fixed value
    assert study.trials[0].params["model.optimizer.lr"] == 0.002  # the recipe's trial came first


def _compose_experiment(tmp_path: Path, text: str, extra: list[str]):
    """Compose `experiment=found` from a copy of conf/ with `text` as conf/experiment/found.yaml."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "experiment" / "found.yaml").write_text(text)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return compose(config_name="train", overrides=["experiment=found", *extra])


def test_the_best_trial_is_written_as_a_ready_experiment_config(tmp_path):
    overrides = ["hparams_search=fer2013_mlp", "experiment=fer2013_mlp", "data.root=/somewhere/fer2013",
                 "model/optimizer=sgd", "model.optimizer.lr=0.0123", "data.augment.scale=[0.95,1.05]",
                 "trainer.max_epochs=25", "trial.number=7"]
    is_group = {"model/optimizer", "model", "data", "experiment", "hparams_search"}.__contains__
    text = experiment_config(overrides, is_group, "Best trial 7\nsecond line")
    assert text.startswith("# @package _global_\n# Best trial 7\n# second line\n")
    assert "/somewhere" not in text and "hparams_search" not in text and "trial" not in text.split("\n", 3)[3]
    cfg = _compose_experiment(tmp_path, text, ["data.root=/elsewhere"])
    assert cfg.model.net._target_.endswith("MLP") and cfg.model.optimizer._target_ == "torch.optim.SGD"
    assert cfg.model.optimizer.lr == 0.0123 and list(cfg.data.augment.scale) == [0.95, 1.05]
    assert cfg.trainer.max_epochs == 25 and cfg.test is True  # the found recipe tests; the search did not
    assert cfg.model.label_smoothing == 0.1  # what it did not change comes from its base recipe


def _trainer(epoch: int, value: float) -> SimpleNamespace:
    """What TrialPruning reads of Lightning's Trainer, for one validation epoch on one process."""
    return SimpleNamespace(sanity_checking=False, callback_metrics={"val/acc": torch.tensor(value)},
                           current_epoch=epoch, is_global_zero=True,
                           strategy=SimpleNamespace(broadcast=lambda obj, src=0: obj))


def test_a_run_reports_each_epoch_to_its_trial_and_stops_when_pruned(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=1)
    study = open_study("s", url, optuna.samplers.RandomSampler(seed=0), pruner, "maximize")
    good, weak = study.ask(), study.ask()
    for number, values in ((good.number, [0.4, 0.5, 0.6]), (weak.number, [0.45, 0.55, 0.7])):
        callback = TrialPruning("s", number, url, pruner)
        callback.on_fit_start(_trainer(0, 0), None)
        for epoch, value in enumerate(values):
            callback.on_validation_end(_trainer(epoch, value), None)
        study.tell(number, values[-1])
    bad = study.ask()
    callback = TrialPruning("s", bad.number, url, pruner)
    callback.on_fit_start(_trainer(0, 0), None)
    callback.on_validation_end(_trainer(0, 0.1), None)  # below the median, but within the warm-up
    assert trial_state(study, bad.number) is None
    with pytest.raises(TrialPruned, match=f"trial {bad.number} of study s pruned after epoch 1") as stop:
        callback.on_validation_end(_trainer(1, 0.2), None)
    assert isinstance(stop.value, RunStoppedEarly)  # what train.py records as KILLED, not FAILED
    trials = optuna.load_study(study_name="s", storage=url).trials
    expected = [{0: 0.4, 1: 0.5, 2: 0.6}, {0: 0.45, 1: 0.55, 2: 0.7}, {0: 0.1, 1: 0.2}]  # float32 metrics
    assert [t.intermediate_values for t in trials] == [pytest.approx(e) for e in expected]
    assert trial_state(study, bad.number) == optuna.trial.TrialState.PRUNED  # the sweeper finds it finished


def test_pruning_is_refused_outside_the_sweeper():
    with pytest.raises(UserError, match="run hparams_search configs with the Optuna sweeper"):
        TrialPruning(None, None, None)


def _study_with_trials(url: str):
    study = open_study("mlp_search", url, optuna.samplers.RandomSampler(seed=0), None, "maximize")
    space = parse_search_space({"model.optimizer.lr": "tag(log, interval(0.001, 0.01))",
                                "data.batch_size": "choice(64, 128)"}, ["experiment=fer2013_mlp", "data.root=/d"])
    for value in (0.41, 0.47, None, 0.44):
        trial = study.ask()
        suggest(trial, space)
        for epoch in range(3):
            trial.report((value or 0.2) - 0.05 * (2 - epoch), epoch)
        study.tell(trial, value) if value is not None else study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return study, space


def test_the_study_summary_in_the_sweep_folder_and_one_mlflow_run(tmp_path):
    from mlflow.tracking import MlflowClient

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study, space = _study_with_trials(url)
    config = compose_train(tmp_path, ["experiment=fer2013_mlp", "data.root=/d", *mlflow_overrides(tmp_path)])
    config.logger.mlflow.experiment_name = "mlp_search"
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    results = summarise_study(study, space, ["experiment=fer2013_mlp", "data.root=/d"],
                              {"experiment"}.__contains__, sweep, config)
    assert results["best_trial"] == 1 and results["best_value"] == 0.47
    assert (results["n_trials"], results["n_complete"], results["n_pruned"], results["n_fail"]) == (4, 3, 1, 0)
    assert OmegaConf.load(sweep / "optimization_results.yaml").best_params == study.trials[1].params
    best = OmegaConf.load(sweep / "best_experiment.yaml")
    assert best.defaults == ["fer2013_mlp"] and best.model.optimizer.lr == study.trials[1].params["model.optimizer.lr"]
    assert (sweep / "trials.csv").read_text().count("\n") == 5
    plots = sorted(p.name for p in (sweep / "plots").iterdir())
    assert plots == ["intermediate_values.png", "optimization_history.png", "param_importances.png"]

    client = MlflowClient(config.logger.mlflow.tracking_uri)
    experiment = client.get_experiment_by_name("mlp_search")

    def summary_runs():
        return client.search_runs([experiment.experiment_id], "tags.`optuna.summary` = 'true'")

    [run] = summary_runs()
    assert run.data.metrics["study/best_value"] == 0.47 and run.data.metrics["study/n_pruned"] == 1
    assert run.data.tags["best.model.optimizer.lr"] == str(study.trials[1].params["model.optimizer.lr"])
    files = {f.path for f in client.list_artifacts(run.info.run_id, "study")}
    assert {"study/best_experiment.yaml", "study/trials.csv", "study/optimization_history.png"} <= files

    trial = study.ask()  # another worker finishes later, with a better trial: the same summary run is updated
    study.tell(trial, 0.52)
    summarise_study(study, space, [], {"experiment"}.__contains__, sweep, config)
    [run] = summary_runs()
    assert run.data.metrics["study/best_value"] == 0.52 and run.data.metrics["study/n_trials"] == 5


def test_a_misspelt_search_is_one_line_with_the_choices():
    from fer.cli import check_config_choices

    message = "hparams_search=fer2013_mpl: no such hparams_search; choose one of fer2013_mlp"
    with pytest.raises(UserError, match=message):
        check_config_choices(["hparams_search=fer2013_mpl"], CONF)


def test_a_search_for_another_recipe_is_one_line_and_a_failed_trial(tmp_path):
    """The MLP search run with a model that has no optimiser (the SVM): refused before anything trains, in one line
    that says what to do; the trial it had asked for is FAIL in the study, not left RUNNING."""
    import os
    import subprocess
    import sys

    from helpers import ROOT

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "hparams_search=fer2013_mlp", "model=svm",
                           "hydra.sweeper.n_trials=1", f"paths.log_dir={tmp_path / 'out'}"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    [error] = [line for line in proc.stderr.splitlines() if line.strip()]
    assert error.startswith("error: a trial of study fer2013_mlp_search does not compose: Could not override "
                            "'model.optimizer.lr'") and "give that experiment=" in error
    [db] = (tmp_path / "out").rglob("optuna.db")
    [trial] = optuna.load_study(study_name="fer2013_mlp_search", storage=f"sqlite:///{db}").trials
    assert trial.state == optuna.trial.TrialState.FAIL
