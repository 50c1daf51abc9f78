"""train.py's core on every model in conf/model/ (a new model is covered with no test edits)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fer.models.loading import load_model
from fer.training import run_training

from helpers import FAST, MODEL_NAMES, ROOT, compose_train, mlflow_overrides


def _predict(model, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.predict_proba(x).numpy()


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_one_epoch_mlflow_run_and_reload(model_name, tmp_path):
    from mlflow.tracking import MlflowClient

    overrides = [f"model={model_name}", *FAST, *mlflow_overrides(tmp_path)]
    if model_name == "efficientnet":
        overrides.append("model.input_size=64")  # keeps the test fast; the default upscales to 96
    cfg = compose_train(tmp_path, overrides)
    results = run_training(cfg, model_name=model_name)
    assert 0.0 <= results["test/acc"] <= 1.0 and "test/f1_macro" in results

    client = MlflowClient(cfg.logger.mlflow.tracking_uri)
    exp = client.get_experiment_by_name(cfg.experiment_name)
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["model"] == model_name
    assert {"test/acc", "test/f1_macro", "val/acc", "train/loss", "test/recall_disgust"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "reports")}
    assert {"reports/confusion_matrix.png", "reports/per_class_report.csv"} <= artifacts
    assert "config.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}

    # the best checkpoint rebuilds the same model: identical predictions
    best = run.data.tags["best_checkpoint"]
    x = torch.rand(16, 1, 48, 48)
    again = load_model(best)
    first = load_model(best)
    assert np.allclose(_predict(first, x), _predict(again, x), atol=1e-6)
    info = json.loads((Path(cfg.paths.output_dir) / "run_info.json").read_text())
    assert info["mlflow_run_id"] == run.info.run_id


@pytest.mark.parametrize("mode", ["balanced", "sqrt"])
def test_class_weights_follow_training_counts_and_change_the_loss(mode):
    from types import SimpleNamespace

    from fer.models.mlp import MLP

    model = MLP(hidden=(16,), optimizer={"_target_": "torch.optim.Adam"}, class_weighting=mode, label_smoothing=0.1)
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


def test_resume_continues_from_last_checkpoint_in_the_same_run(tmp_path):
    from mlflow.tracking import MlflowClient

    common = ["model=mlp", *FAST, *mlflow_overrides(tmp_path), "callbacks.early_stopping=null"]
    cfg = compose_train(tmp_path, [*common, "trainer.max_epochs=1"])
    run_training(cfg, model_name="mlp")  # as if killed after epoch 1 of 3: last.ckpt exists
    run_dir = Path(cfg.paths.output_dir)
    # the saved composed config says 3 epochs, as the killed run was asked for
    saved = compose_train(tmp_path, [*common, "trainer.max_epochs=3"])
    (run_dir / ".hydra").mkdir()
    from omegaconf import OmegaConf

    OmegaConf.save(saved, run_dir / ".hydra" / "config.yaml")
    resumed = compose_train(tmp_path / "other", [f"resume={run_dir}", "logger=none"])
    run_training(resumed)
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3 * 2  # 3 epochs x 2 batches: epochs 2 and 3 ran after the resume
    client = MlflowClient(cfg.logger.mlflow.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(cfg.experiment_name).experiment_id])
    assert len(runs) == 1  # same MLflow run, continued
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "val/acc")]
    assert len(steps) == 3


def test_ddp_two_cpu_processes(tmp_path):
    """A real 2-process DDP fit (gloo on CPU) through train.py."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, str(ROOT / "train.py"), "model=mlp", "trainer=ddp", "trainer.accelerator=cpu",
           "trainer.devices=2", "trainer.sync_batchnorm=false", "trainer.precision=32", "logger=none", *FAST, f"hydra.run.dir={out}",
           f"paths.cache_dir={tmp_path / 'cache'}", "trainer.max_epochs=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert json.loads((out / "results.json").read_text())["test/acc"] >= 0


@pytest.mark.parametrize("args,message", [
    (["model=nope"], "Could not find 'model/nope'"),
    (["trainer.max_epochs=abc"], "trainer.max_epochs='abc' is not a number"),
    (["model.dropuot=0.1"], "Could not override 'model.dropuot'"),
    (["data=fer2013", "data.root=/nonexistent/fer"], "data folder not found: /nonexistent/fer"),
    (["resume=/nonexistent/run"], "resume=/nonexistent/run"),
])
def test_cli_mistakes_give_one_clear_message(args, message, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *args, "logger=none",
                           f"hydra.run.dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode != 0 and message in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("parts", [["model/optimizer=sgd", "model/scheduler=onecycle"],
                                   ["model/optimizer=adamw", "model/scheduler=cosine"],
                                   ["model.scheduler=null"]])
def test_optimizer_and_scheduler_choices_train(parts, tmp_path):
    fast = [o for o in FAST if not o.startswith(("trainer.max_epochs", "+trainer.limit_train_batches"))]
    cfg = compose_train(tmp_path, ["model=mlp", "logger=none", *fast, "trainer.max_epochs=2",
                                   "+trainer.limit_train_batches=5", *parts])
    results = run_training(cfg, model_name="mlp")
    assert np.isfinite(results["val/loss"])
    last = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 10  # both epochs ran, and the last one was checkpointed
    schedulers = last["lr_schedulers"]
    assert len(schedulers) == (0 if "model.scheduler=null" in parts else 1)
    if "model/scheduler=onecycle" in parts:
        assert schedulers[0]["total_steps"] == 10  # "auto": the Trainer's estimated stepping batches
    if "model/scheduler=cosine" in parts:
        assert schedulers[0]["T_max"] == 2
