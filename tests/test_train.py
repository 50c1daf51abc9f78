"""train.py's core on every model in conf/model/ (a new model is covered with no test edits)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fer.classes import CLASS_NAMES
from fer.data.augment import to_unit_float
from fer.models.loading import load_model
from fer.training import run_training

from helpers import (FAST, MODEL_NAMES, ROOT, SMALL, compose_train, mlflow_overrides, nll, score_test_split,
                     untrained_checkpoint)


def _predict(model, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.predict_proba(x).numpy()


# one representative model trains in the fast suite; every model's training step is checked there without a Trainer
# (tests/test_registry.py), and each model's whole tracked run here in -m slow
@pytest.mark.parametrize("model_name", [m if m == "mlp" else pytest.param(m, marks=pytest.mark.slow)
                                        for m in MODEL_NAMES])
def test_one_epoch_mlflow_run_and_reload(model_name, tmp_path):
    """One tracked run per model: what MLflow holds (params, metrics, reports, the best checkpoint, the logged
    model) and that the saved checkpoint scores the test split exactly as the run reported, with and without TTA."""
    import mlflow.pyfunc
    from mlflow.tracking import MlflowClient

    overrides = [f"model={model_name}", *FAST, *mlflow_overrides(tmp_path), "model.test_tta=flip_shifts",
                 *SMALL.get(model_name, [])]
    cfg = compose_train(tmp_path, overrides)
    results = run_training(cfg)

    client = MlflowClient(cfg.logger.mlflow.tracking_uri)
    exp = client.get_experiment_by_name(cfg.experiment_name)
    (run,) = client.search_runs([exp.experiment_id])
    rid = run.info.run_id
    assert run.info.status == "FINISHED" and run.data.params["model"] == model_name
    # the short flat set of params, each as the composed config has it (MLflow keeps text)
    optimizer, scheduler = cfg.model.get("optimizer") or {}, cfg.model.get("scheduler") or {}
    logged = {"model": model_name, "data": "synthetic", "data_root": "None", "lr": str(optimizer.get("lr")),
              "optimizer": str(optimizer.get("_target_", ".none")).rsplit(".", 1)[1],
              "scheduler": str(scheduler.get("_target_", ".none")).rsplit(".", 1)[1],
              "batch_size": str(cfg.data.batch_size), "augment_copies": str(cfg.data.augment_copies),
              "max_epochs": str(cfg.trainer.max_epochs), "precision": str(cfg.trainer.precision),
              "seed": str(cfg.seed), "label_smoothing": str(cfg.model.label_smoothing),
              "class_weighting": str(cfg.model.class_weighting), "ema_decay": "None"}
    assert {key: run.data.params.get(key) for key in logged} == logged
    assert run.data.params["device"].startswith("CPU") and re.fullmatch(r"[0-9a-f]{7,40}(-dirty)?|unknown",
                                                                       run.data.params["git_commit"])
    metrics = run.data.metrics
    assert {"test/acc", "test/f1_macro", "test_tta/acc", "val/acc", "train/loss", "train/acc",
            "test/recall_disgust"} <= set(metrics)
    assert 0 <= metrics["train/acc"] <= 1
    if cfg.model.get("optimizer"):  # LearningRateMonitor: the learning rate of every epoch
        lr_keys = [k for k in metrics if k.startswith("lr-")]
        assert len(lr_keys) == 1 and metrics[lr_keys[0]] > 0, sorted(metrics)
    reports = {a.path for a in client.list_artifacts(rid, "reports")}
    assert {"reports/confusion_matrix.png", "reports/per_class_report.csv"} <= reports
    assert "config.yaml" in {a.path for a in client.list_artifacts(rid)}

    # the best checkpoint is the tagged file, uploaded as an artifact byte for byte
    best = Path(run.data.tags["best_checkpoint"])
    assert best.parent == Path(cfg.paths.output_dir) / "checkpoints" and best.name.startswith("epoch_")
    uploaded = Path(client.download_artifacts(rid, f"checkpoints/{best.name}", str(tmp_path / "dl")))
    assert uploaded.read_bytes() == best.read_bytes()
    info = json.loads((Path(cfg.paths.output_dir) / "run_info.json").read_text())
    assert info["mlflow_run_id"] == rid

    # the reloaded checkpoint reproduces the run's test figures (same bf16 precision and batch size)
    model = load_model(best)
    probs, labels = score_test_split(cfg, model)
    preds = probs.argmax(1)
    assert len(labels) == cfg.data.source.n_test
    assert results["test/acc"] == metrics["test/acc"] == pytest.approx(float((preds == labels).mean()), abs=1e-6)
    assert metrics["test/loss"] == pytest.approx(nll(probs, labels), rel=1e-4, abs=1e-5)
    # test_tta/ (training) and predict.py's tta=true tta_shifts=true score the same six views
    tta_probs, _ = score_test_split(cfg, model, tta=True)
    assert metrics["test_tta/acc"] == pytest.approx(float((tta_probs.argmax(1) == labels).mean()), abs=1e-6)
    assert metrics["test_tta/loss"] == pytest.approx(nll(tta_probs, labels), rel=1e-4, abs=1e-5)
    # misclassified grid: logged whenever the model got a test image wrong
    assert ("reports/misclassified.png" in reports) == bool((preds != labels).any())

    # the logged MLflow model serves uint8 faces: the best checkpoint's calibrated probabilities for x / 255 and the
    # label (tests/test_serving.py checks the rest of its contract)
    faces = torch.randint(0, 256, (16, 48, 48), dtype=torch.uint8)
    served = mlflow.pyfunc.load_model(f"runs:/{rid}/model", dst_path=str(tmp_path)).predict(faces.numpy())
    assert list(served.columns) == [*CLASS_NAMES, "label"]
    expected = _predict(model, to_unit_float(faces))
    np.testing.assert_allclose(served[list(CLASS_NAMES)].to_numpy(), expected, atol=1e-5)
    assert served["label"].tolist() == [CLASS_NAMES[i] for i in expected.argmax(1)]


@pytest.mark.parametrize("mode", ["balanced", "sqrt"])
def test_class_weights_follow_training_counts_and_change_the_loss(mode):
    from types import SimpleNamespace

    from fer.models.base import FERClassifier

    model = FERClassifier({"_target_": "fer.models.mlp.MLP", "hidden": (16,)}, {"_target_": "torch.optim.Adam"},
                          class_weighting=mode, label_smoothing=0.1)
    counts = np.array([400, 15, 400, 700, 480, 320, 500])  # disgust is rare, as in FER2013
    model._trainer = SimpleNamespace(datamodule=SimpleNamespace(class_counts=counts))
    type(model).trainer = property(lambda self: self._trainer)
    try:
        model.setup("fit")
    finally:
        del type(model).trainer
    w = model.class_weight
    assert w.argmax() == 1 and w.argmin() == 3 and torch.isclose(w.mean(), torch.tensor(1.0))
    ratio = (counts[3] / counts[1]) ** (1.0 if mode == "balanced" else 0.5)
    assert torch.isclose(w[1] / w[3], torch.tensor(ratio, dtype=torch.float32), rtol=1e-4)
    logits = torch.zeros(2, 7)
    logits[:, 3] = 5.0  # both predicted "happy": right for the second, wrong for the rare-class first
    y = torch.tensor([1, 3])
    plain = torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1)
    assert model._loss(logits, y) > plain  # the rare class's error weighs more


@pytest.mark.slow  # a train.py process killed and resumed: ~30 s (CI runs the slow tests)
def test_resume_after_kill_9_finishes_the_same_mlflow_run(tmp_path):
    """A real train.py killed with SIGKILL after its first epoch: MLflow shows the run RUNNING; resume= continues
    it from last.ckpt in the same MLflow run, which ends FINISHED with one val/acc per epoch. The resumed train.py
    writes into the run's folder (its train.log goes on), not into a new one."""
    import os
    import signal
    import time

    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run"
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    cmd = [sys.executable, str(ROOT / "train.py"), "model=mlp", *FAST, "trainer.max_epochs=3",
           "callbacks.early_stopping=null", "+callbacks.slow._target_=helpers.SlowEpochs", f"hydra.run.dir={run_dir}",
           f"paths.cache_dir={tmp_path / 'cache'}", f"logger.mlflow.tracking_uri={uri}",
           f"logger.mlflow.artifact_location={tmp_path / 'mlruns' / 'artifacts'}"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "MLFLOW_TRACKING_URI")}
    env.update(FER_TEST_SLOW_EPOCH="120", PYTHONPATH=f"{ROOT / 'tests'}{os.pathsep}{env.get('PYTHONPATH', '')}")
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            last = run_dir / "checkpoints" / "last.ckpt"
            deadline = time.monotonic() + 240
            while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.0)  # epoch 2 is sleeping by now: last.ckpt is complete
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert torch.load(last, weights_only=True)["epoch"] == 0
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("fer").experiment_id])
    assert run.info.status == "RUNNING"  # killed: nobody could mark it finished

    saved_config = (run_dir / ".hydra" / "config.yaml").read_text()
    env.pop("FER_TEST_SLOW_EPOCH")
    logs = tmp_path / "outputs"  # where a new run folder would go
    resumed = subprocess.run([sys.executable, str(ROOT / "train.py"), f"resume={run_dir}", f"paths.log_dir={logs}"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # the session wrote into the run it continued: no new run folder, one log, the run's own config kept
    assert not logs.exists()
    log = (run_dir / "train.log").read_text()
    assert log.index("Seed set to") < log.index("Restoring states from the checkpoint") < log.index('"test/acc"')
    assert (run_dir / ".hydra" / "config.yaml").read_text() == saved_config
    (session,) = (run_dir / "resumed").iterdir()  # Hydra's record of the resume command
    assert f"resume={run_dir}" in (session / ".hydra" / "overrides.yaml").read_text()
    (run,) = client.search_runs([client.get_experiment_by_name("fer").experiment_id])
    assert run.info.status == "FINISHED"
    val_steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/acc")]
    assert len(val_steps) == len(set(val_steps)) == 3  # one value per epoch: none lost, none twice
    assert "test/acc" in run.data.metrics
    assert torch.load(last, weights_only=True)["global_step"] == 3 * 2


@pytest.mark.slow  # two trainings: ~12 s (CI runs the slow tests)
def test_resume_needs_last_checkpoint_and_survives_a_lost_run_info(tmp_path, caplog):
    from mlflow.tracking import MlflowClient

    common = ["model=mlp", *FAST, *mlflow_overrides(tmp_path), "callbacks.early_stopping=null"]
    cfg = compose_train(tmp_path, [*common, "trainer.max_epochs=1"])
    with caplog.at_level("WARNING"):
        run_training(cfg)
    # a model of the synthetic default data says, at the end, that it knows drawn faces only
    assert "learned the synthetic drawn faces only" in caplog.text and "ckpt=pretrained" in caplog.text
    caplog.clear()
    run_dir = Path(cfg.paths.output_dir)
    from omegaconf import OmegaConf

    (run_dir / ".hydra").mkdir()  # what train.py's Hydra writes: the composed config
    OmegaConf.save(compose_train(tmp_path, [*common, "trainer.max_epochs=2"]), run_dir / ".hydra" / "config.yaml")
    from fer.errors import DataError

    with pytest.raises(DataError, match="this run finished .*nothing to resume"):  # its test would be logged twice
        run_training(compose_train(tmp_path / "other", [f"resume={run_dir}", "logger=none"]))
    (run_dir / "results.json").unlink()  # as if killed before its end
    # no run_info.json (deleted, or a folder copied without it): a new MLflow run, with its params and config
    (run_dir / "run_info.json").unlink()
    with caplog.at_level("WARNING"):
        run_training(compose_train(tmp_path / "other", [f"resume={run_dir}", "logger=none"]))
    assert "no run_info.json" in caplog.text
    client = MlflowClient(cfg.logger.mlflow.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(cfg.experiment_name).experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    newest = max(runs, key=lambda r: r.info.start_time)
    assert newest.data.params["model"] == "mlp" and "config.yaml" in {a.path for a in client.list_artifacts(
        newest.info.run_id)}
    assert json.loads((run_dir / "run_info.json").read_text())["mlflow_run_id"] == newest.info.run_id
    # no last.ckpt: nothing to resume from, said in one line
    (run_dir / "checkpoints" / "last.ckpt").unlink()
    with pytest.raises(DataError, match="no checkpoints/last.ckpt in it"):
        run_training(compose_train(tmp_path / "again", [f"resume={run_dir}", "logger=none"]))


@pytest.mark.slow  # two train.py processes under DDP: ~30 s (CI runs the slow tests)
def test_ddp_two_cpu_processes(tmp_path):
    """A real 2-process DDP fit (gloo on CPU) through train.py: each rank trains on its own half, the step count is
    that of one rank's shard, and the test split (odd-sized, so one rank's shard is padded) counts every image once."""
    import pandas as pd

    out = tmp_path / "ddp"
    cmd = [sys.executable, str(ROOT / "train.py"), "model=mlp", "trainer=ddp", "trainer.accelerator=cpu",
           "trainer.devices=2", "trainer.sync_batchnorm=false", "trainer.precision=32", "logger=none", *FAST,
           f"hydra.run.dir={out}", f"paths.cache_dir={tmp_path / 'cache'}", "trainer.max_epochs=2",
           "data.source.n_test=71", "callbacks.early_stopping=null"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    assert "litlogger" not in text and "model summary" not in text  # library noise a user cannot act on
    # 280 train images less a 10% val split = 252; 126 per rank; drop_last batches of 32: 3 per epoch
    for rank in (0, 1):
        assert f"training on rank {rank} of 2: 96 images per epoch in 3 batches of 32" in text, text[-3000:]
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2 * 2  # 2 epochs of limit_train_batches=2 steps, the same on both ranks
    report = pd.read_csv(out / "reports" / "per_class_report.csv")
    assert report["support"].sum() == 71  # the whole test split, the padding copy not counted
    # test/acc is the single-process accuracy of the tested checkpoint over the 71 test images, exactly
    results = json.loads((out / "results.json").read_text())
    best = [p for p in (out / "checkpoints").glob("epoch_*.ckpt")]
    assert len(best) == 1
    cfg = compose_train(tmp_path / "rescore", [*FAST, "model=mlp", "logger=none", "data.source.n_test=71",
                                               f"paths.cache_dir={tmp_path / 'cache'}"])
    probs, labels = score_test_split(cfg, load_model(best[0]), precision=None)
    assert len(labels) == 71
    assert results["test/acc"] == pytest.approx(float((probs.argmax(1) == labels).mean()), abs=1e-6)
    assert results["test/loss"] == pytest.approx(nll(probs, labels), rel=1e-4, abs=1e-5)  # padding copy not in it


SLOW = pytest.mark.slow  # a train.py process each (~5 s): the fast suite runs one found before and one after Hydra


@pytest.mark.parametrize("args,message,code", [
    (["model=cnn_dep"], "model=cnn_dep: no such model; choose one of cnn, cnn_deep, efficientnet, mlp, resnet, svm",
     2),  # ours: one line, exit code 2, shared parts (model/_base) not offered
    pytest.param(["model=_base"], "model=_base: no such model", 2, marks=SLOW),
    pytest.param(["model.dropuot=0.1"], "Could not override 'model.dropuot'", 1, marks=SLOW),  # Hydra's own (exit 1)
    (["trainer.max_epochs=abc"], "trainer.max_epochs='abc' is not a number", 2),
    pytest.param(["data=fer2013", "data.root=/nonexistent/fer"], "data.root=/nonexistent/fer: no such folder", 2,
                 marks=SLOW),
    pytest.param(["data=fer2013"], "/data/fer2013: no such folder", 2, marks=SLOW),  # the default root, not there
    pytest.param(["resume=/nonexistent/run"], "resume=/nonexistent/run", 2, marks=SLOW),
])
def test_cli_mistakes_give_one_clear_message(args, message, code, tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *args, "logger=none",
                           f"hydra.run.dir={run_dir}", f"paths.cache_dir={tmp_path / 'cache'}"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert message in proc.stderr
    if code == 2:  # exactly one line says what is wrong, on stderr; it is not repeated on stdout
        errors = [line for line in proc.stderr.splitlines() if line.strip()]
        assert errors == [f"error: {errors[0][len('error: '):]}"] and message in errors[0], proc.stderr
        assert message not in proc.stdout
        if "no such" in message:  # found before Hydra makes the run folder: no folder, no log
            assert not run_dir.exists()
        else:
            assert message in (run_dir / "train.log").read_text()  # and the run's log file keeps it


@pytest.mark.parametrize("args,moved", [(["model=mlp", "model.dropout=0.2"], "model.net.dropout=0.2"),
                                        (["experiment=fer2013_cnn", "model.fc=[256]"], "model.net.fc=[256]"),
                                        (["model.channels=[8,16]"], "model.net.channels=[8,16]")])
def test_a_network_setting_given_the_old_way_says_where_it_went(args, moved, monkeypatch, capsys):
    """Before the `net:` node the network's settings were model.<key>; Hydra would only say it cannot override
    model.dropout. One line (exit 2) names the key's new place, before Hydra runs."""
    from fer.cli import exit_on_bad_command_line

    monkeypatch.setattr(sys, "argv", ["train.py", *args])
    with pytest.raises(SystemExit) as exit_:
        exit_on_bad_command_line(ROOT / "conf", "train")
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (f"error: {args[-1].split('=')[0]}: a setting of the model's network, under "
                                       f"model.net since 2026-12-07: {moved}\n")


@pytest.mark.parametrize("parts", [["model/optimizer=sgd", "model/scheduler=onecycle"],
                                   pytest.param(["model/optimizer=adamw", "model/scheduler=cosine"],
                                                marks=pytest.mark.slow),
                                   pytest.param(["model.scheduler=null"], marks=pytest.mark.slow)])
def test_optimizer_and_scheduler_choices_train(parts, tmp_path):
    fast = [o for o in FAST if not o.startswith(("trainer.max_epochs", "+trainer.limit_train_batches"))]
    cfg = compose_train(tmp_path, ["model=mlp", "logger=none", *fast, "trainer.max_epochs=2",
                                   "+trainer.limit_train_batches=5", *parts])
    results = run_training(cfg)
    assert np.isfinite(results["val/loss"])
    last = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 10  # both epochs ran, and the last one was checkpointed
    schedulers = last["lr_schedulers"]
    assert len(schedulers) == (0 if "model.scheduler=null" in parts else 1)
    if "model/scheduler=onecycle" in parts:
        assert schedulers[0]["total_steps"] == 10  # "auto": the Trainer's estimated stepping batches
    if "model/scheduler=cosine" in parts:
        assert schedulers[0]["T_max"] == 2


def test_a_training_prints_no_library_noise(tmp_path, capfd, caplog):
    """What a user cannot act on is not printed: v_num in the bar, Lightning's deprecation of its own pytree use,
    "GPU available: False" on a CPU machine, the test metrics a second time (Lightning's table beside the results
    line)."""
    import logging
    import warnings

    from fer.cli import silence_library_noise

    fast = [o for o in FAST if o != "trainer.enable_progress_bar=false"]
    cfg = compose_train(tmp_path, ["model=mlp", *mlflow_overrides(tmp_path), *fast,
                                   "callbacks.progress_bar.refresh_rate=1"])
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        silence_library_noise()  # what train.py's setup_process does first
        run_training(cfg)
    out, err = capfd.readouterr()
    shown = out + err + caplog.text + "\n".join(str(w.message) for w in caught)
    assert "Epoch 0" in out + err, (out[-2000:], err[-2000:])  # the bar was drawn ...
    for noise in ("v_num", "LeafSpec", "GPU available: False", "TPU available", "Test metric", "Total Flops",
                  "| Name"):
        assert noise not in shown, noise  # ... without these
    assert re.search(r"model mlp: [\d.]+ M parameters, [\d.]+ MFLOPs per face", caplog.text)  # one line instead
    assert '"test/acc"' in caplog.text  # the results line still reports the test split


@pytest.mark.parametrize("last", ["truncated", "pickle", "another model"])
def test_resume_refuses_a_last_checkpoint_it_cannot_continue(last, tmp_path):
    """resume= with a last.ckpt cut short, written by plain pickle, or holding another model than the run's config
    (edited by hand): one line naming the run, before Lightning starts restoring."""
    import pickle

    from omegaconf import OmegaConf

    from fer.errors import DataError

    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    cfg = compose_train(tmp_path / "cfg", ["model=mlp", "logger=none", *FAST])
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if last == "truncated":
        data = untrained_checkpoint(tmp_path / "whole.ckpt", "mlp").read_bytes()
        ckpt.parent.mkdir()
        ckpt.write_bytes(data[: len(data) // 2])
        message = "cannot read checkpoint|is not a PyTorch checkpoint"
    elif last == "pickle":
        ckpt.parent.mkdir()
        ckpt.write_bytes(pickle.dumps({"state_dict": {}, "fer_model": "mlp"}))
        message = "is not a PyTorch checkpoint"
    else:
        untrained_checkpoint(ckpt, "cnn", SMALL["cnn"])
        message = r"last.ckpt holds a cnn model but the run's config asks for mlp: was .hydra/config.yaml edited"
    with pytest.raises(DataError, match=f"^resume={run_dir}: .*({message})"):
        run_training(compose_train(tmp_path / "again", [f"resume={run_dir}", "logger=none"]))


def test_mlflow_says_finished_only_when_the_run_finished(tmp_path, monkeypatch):
    """Lightning ended the MLflow run as FINISHED when fit() returned, before calibration and the test: a run that
    broke (or was killed) there looked complete. Now it is FAILED (or stays RUNNING after a kill -9), and
    ckpt=best names its folder to resume."""
    import fer.training as training
    from fer.errors import UserError
    from fer.inference.resolve import resolve_checkpoint
    from mlflow.tracking import MlflowClient

    def broken(*args, **kwargs):
        raise RuntimeError("calibration broke")

    monkeypatch.setattr(training, "calibrate_checkpoint", broken)
    cfg = compose_train(tmp_path, ["model=mlp", *FAST, *mlflow_overrides(tmp_path)])
    with pytest.raises(RuntimeError, match="calibration broke"):
        run_training(cfg)
    client = MlflowClient(cfg.logger.mlflow.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(cfg.experiment_name).experiment_id])
    assert run.info.status == "FAILED" and "test/acc" not in run.data.metrics
    with pytest.raises(UserError, match=f"did not finish; resume it with python train.py resume={cfg.paths.output_dir}"):
        resolve_checkpoint("best", cfg.logger.mlflow.tracking_uri, cfg.experiment_name, tmp_path / "dl")


def test_a_missing_data_folder_is_found_before_the_run_exists(tmp_path):
    """run_training (the API; train.py checks before Hydra too): the data folder is checked before the run folder,
    the MLflow run or anything else of the run is made."""
    from fer.errors import UserError
    from helpers import mlflow_overrides

    cfg = compose_train(tmp_path, ["data=fer2013", f"data.root={tmp_path / 'nope'}", *mlflow_overrides(tmp_path)])
    with pytest.raises(UserError, match=f"data.root={tmp_path / 'nope'}: no such folder"):
        run_training(cfg)
    assert not Path(cfg.paths.output_dir).exists()
    assert not list(tmp_path.rglob("*.db"))  # no MLflow store, so no FAILED run in it


def test_the_commit_param_says_when_the_checkout_had_changes(tmp_path):
    """git_commit names the commit a run trained with, and says "-dirty" when tracked files differed from it (a
    run started before its code was committed); untracked files (outputs, mlruns) do not count."""
    from fer.training.provenance import source_commit

    assert source_commit(str(tmp_path)) == "unknown"  # not a checkout
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "train.py").write_text("a = 1\n")
    subprocess.run([*git, "add", "train.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    (tmp_path / "outputs.txt").write_text("untracked\n")
    assert source_commit(str(tmp_path)) == head
    (tmp_path / "train.py").write_text("a = 2\n")
    assert source_commit(str(tmp_path)) == f"{head}-dirty"
