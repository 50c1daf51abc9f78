"""callbacks=[default,ema]: an exponential moving average of the weights, as Lightning's WeightAveraging keeps it,
is what validation scores, what the best checkpoint holds and what the test split is scored with."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import FAST, compose_train, nll, score_test_split


def test_ema_weights_are_validated_checkpointed_and_tested(tmp_path):
    from fer.models.base import CALIBRATION_KEY
    from fer.models.loading import load_model
    from fer.training import _flat_params, run_training

    # decay 0.5: after a few steps the average is far from both the first and the last weights
    cfg = compose_train(tmp_path, ["model=mlp", "model.net.hidden=[32]", "callbacks=[default,ema]",
                                   "callbacks.ema.decay=0.5", "logger=none",
                                   *FAST, "trainer.max_epochs=2", "trainer.limit_train_batches=4"])
    assert _flat_params(cfg, "mlp", "synthetic")["ema_decay"] == 0.5
    results = run_training(cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    averaged, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert averaged.keys() == raw.keys()
    assert any(not torch.equal(averaged[k], raw[k]) for k in averaged if averaged[k].is_floating_point())

    # the last epoch's val loss is the averaged weights' (the ones saved after it), not the raw ones'
    model = load_model(last)
    probs, labels = score_test_split(cfg, model, part="val")
    assert results["val/loss"] == pytest.approx(nll(probs, labels), rel=1e-4, abs=1e-5)
    model.load_state_dict(raw)
    raw_probs, _ = score_test_split(cfg, model, part="val")
    assert abs(nll(raw_probs, labels) - results["val/loss"]) > 1e-3

    # the test split is scored with the best checkpoint as calibrated: its averaged weights and temperature
    (best,) = (Path(cfg.paths.output_dir) / "checkpoints").glob("epoch_*.ckpt")
    # an inference checkpoint: the raw weights (for resume=, in last.ckpt) are not carried along
    assert not {"current_model_state", "averaging_state"} & torch.load(best, weights_only=False).keys()
    best_model = load_model(best)
    assert float(getattr(best_model, CALIBRATION_KEY)) != 1.0
    probs, labels = score_test_split(cfg, best_model)
    assert results["test/loss"] == pytest.approx(nll(probs, labels), rel=1e-4, abs=1e-5)


def test_default_callbacks_keep_no_average(tmp_path):
    from fer.training import _flat_params

    cfg = compose_train(tmp_path, ["logger=none", *FAST])
    assert "ema" not in cfg.callbacks and _flat_params(cfg, "cnn_deep", "synthetic")["ema_decay"] is None


def test_only_fit_restores_the_raw_weights():
    """resume= (fit) continues from the raw weights with the average beside them; testing or validating a
    checkpoint keeps the averaged (and calibrated) state_dict that Lightning loaded into the model."""
    from types import SimpleNamespace

    from pytorch_lightning.trainer.states import TrainerFn

    from helpers import classifier
    from fer.training.weight_averaging import EMA

    module = classifier("mlp", {"hidden": [8]})
    raw = {k: v.clone() for k, v in module.state_dict().items()}
    averaged = {k: v + 1 if v.is_floating_point() else v for k, v in raw.items()}
    ema = EMA(decay=0.5)
    ema.setup(SimpleNamespace(), module, "fit")
    checkpoint = {"state_dict": averaged, "current_model_state": raw, "averaging_state": {"n_averaged": torch.tensor(3)}}
    weight = "net.1.weight"
    for fn, expected in ((TrainerFn.TESTING, averaged), (TrainerFn.VALIDATING, averaged), (TrainerFn.FITTING, raw)):
        module.load_state_dict(averaged)  # what Lightning loads before the callbacks' hooks
        ema.on_load_checkpoint(SimpleNamespace(state=SimpleNamespace(fn=fn)), module, checkpoint)
        assert torch.equal(module.state_dict()[weight], expected[weight]), fn
    assert torch.equal(ema._average_model.module.state_dict()[weight], averaged[weight])
    assert int(ema._average_model.n_averaged) == 3


@pytest.mark.parametrize("kwargs", [{"decay": 1.0}, {"decay": 0.0}, {"every_n_steps": 0}])
def test_bad_ema_settings_are_refused(kwargs):
    from fer.training.weight_averaging import EMA

    with pytest.raises(ValueError, match="callbacks.ema"):
        EMA(**kwargs)


@pytest.mark.slow  # two trainings (CI runs the slow tests)
def test_resume_continues_the_raw_weights_and_the_average(tmp_path, monkeypatch):
    """resume= of a run with the EMA: training goes on from the raw weights of last.ckpt (not the average saved as
    its state_dict), and the average goes on counting from where it was."""
    from omegaconf import OmegaConf

    from fer.training import run_training
    from fer.training.weight_averaging import EMA

    common = ["model=mlp", "model.net.hidden=[32]", "callbacks=[default,ema]", "callbacks.ema.decay=0.5",
              "logger=none", *FAST, "callbacks.early_stopping=null"]
    cfg = compose_train(tmp_path, [*common, "trainer.max_epochs=1"])
    run_training(cfg)
    run_dir = Path(cfg.paths.output_dir)
    (run_dir / "results.json").unlink()  # as a run killed during its training looks: not finished
    (run_dir / ".hydra").mkdir()  # what train.py's Hydra writes: the composed config, now for 2 epochs
    OmegaConf.save(compose_train(tmp_path, [*common, "trainer.max_epochs=2"]), run_dir / ".hydra" / "config.yaml")
    first = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert int(first["averaging_state"]["n_averaged"]) == 2  # one epoch of 2 steps

    started_from = []
    monkeypatch.setattr(EMA, "on_train_start", lambda self, trainer, module: started_from.append(
        {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}), raising=False)
    run_training(compose_train(tmp_path / "other", [f"resume={run_dir}", "logger=none"]))
    (weights,) = started_from
    assert all(torch.equal(weights[k], first["current_model_state"][k]) for k in weights)
    assert not all(torch.equal(weights[k], first["state_dict"][k]) for k in weights)
    second = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert second["global_step"] == 4 and int(second["averaging_state"]["n_averaged"]) == 4
