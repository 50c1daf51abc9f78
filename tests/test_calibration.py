"""Calibrated probabilities: after training the best checkpoint gets a temperature fitted on the val split (stored
in it, used by the test, predict.py and the export), its effect is logged (ECE before/after, a reliability diagram),
and the measures themselves are right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fer.models.calibration import expected_calibration_error, reliability, temper
from fer.models.loading import load_model
from fer.training import run_training

from helpers import FAST, ROOT, compose_train, mlflow_overrides, nll, score_test_split


def test_expected_calibration_error_by_hand():
    # 4 images in the 0.9 bin, 3 right: |0.75 - 0.9| = 0.15; 2 in the 0.6 bin, both right: |1 - 0.6| = 0.4
    probs = np.array([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 2)
    labels = np.array([0, 0, 0, 1, 0, 0])
    assert expected_calibration_error(probs, labels) == pytest.approx((4 * 0.15 + 2 * 0.4) / 6)
    conf, acc, count = reliability(probs, labels)
    assert count.sum() == 6 and count.max() == 4


def test_temper_is_softmax_of_log_probabilities_over_t():
    p = np.array([[0.7, 0.2, 0.1]])
    np.testing.assert_allclose(temper(p, 1.0), p, atol=1e-6)
    logp = np.log(p) / 2.0
    np.testing.assert_allclose(temper(p, 2.0), np.exp(logp) / np.exp(logp).sum(), atol=1e-6)
    assert temper(p, 2.0).max() < 0.7 < temper(p, 0.5).max()


def test_training_calibrates_the_best_checkpoint_on_val(tmp_path):
    from mlflow.tracking import MlflowClient

    # a few more steps than FAST's two, so the model is confident enough for calibration to matter
    fast = [o for o in FAST if not o.startswith("+trainer.limit_train_batches")]
    cfg = compose_train(tmp_path, ["model=cnn_deep", *fast, "+trainer.limit_train_batches=6",
                                   "data.val_fraction=0.3", *mlflow_overrides(tmp_path)])
    results = run_training(cfg)
    (best,) = (Path(cfg.paths.output_dir) / "checkpoints").glob("epoch_*.ckpt")
    t = float(torch.load(best, weights_only=True)["state_dict"]["calibration_t"])
    assert t != 1.0 and results["calibration/temperature"] == pytest.approx(t)
    # the temperature is what minimises the NLL on val: better than T = 1 there
    import hydra

    model = load_model(best)
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    from fer.inference.engine import predict_array

    val = dm.idx["val"]
    dtype = torch.bfloat16 if str(cfg.trainer.precision).startswith("bf16") else None  # as calibration ran
    calibrated = predict_array(model, dm.cache.images, val, 64, "cpu", dtype)
    model.calibration_t.fill_(1.0)
    raw = predict_array(model, dm.cache.images, val, 64, "cpu", dtype)
    labels = dm.cache.labels[val]
    assert nll(calibrated, labels) < nll(raw, labels)
    assert results["val/ece"] == pytest.approx(expected_calibration_error(calibrated, labels), abs=2e-3)
    assert results["val/ece_uncalibrated"] == pytest.approx(expected_calibration_error(raw, labels), abs=2e-3)
    # predict_proba is softmax(logits / T), and the test scored the calibrated checkpoint
    model.calibration_t.fill_(t)
    x = torch.rand(4, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(model.predict_proba(x), torch.softmax(model(x) / t, 1))
    probs, test_labels = score_test_split(cfg, model)
    assert results["test/ece"] == pytest.approx(expected_calibration_error(probs, test_labels), abs=2e-3)
    client = MlflowClient(cfg.logger.mlflow.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("fer").experiment_id])
    assert run.data.metrics["calibration/temperature"] == pytest.approx(t)
    assert {"val/ece", "val/ece_uncalibrated", "test/ece"} <= set(run.data.metrics)
    assert "reports/reliability_val.png" in {a.path for a in client.list_artifacts(run.info.run_id, "reports")}


@pytest.mark.slow  # a training (CI runs the slow tests)
def test_calibrate_false_keeps_t_1(tmp_path):
    cfg = compose_train(tmp_path, ["model=mlp", *FAST, "logger=none", "calibrate=false"])
    results = run_training(cfg)
    assert "calibration/temperature" not in results
    (best,) = (Path(cfg.paths.output_dir) / "checkpoints").glob("epoch_*.ckpt")
    assert float(torch.load(best, weights_only=True)["state_dict"]["calibration_t"]) == 1.0


def test_old_checkpoints_keep_t_1():
    old = load_model(ROOT / "tests" / "data" / "mlp_format_2026-11-25.ckpt")  # written before calibration
    assert float(old.calibration_t) == 1.0
