"""Fine-tuning (`python train.py init_from=<ckpt>`): the run's model starts from the checkpoint's weights, before
the Trainer runs; another model or another network is refused in one line naming the file; init_from and resume
exclude each other. Checkpoints are written directly (no training)."""

from __future__ import annotations

import pytest
import torch

from fer.errors import UserError
from fer.models.loading import start_from_weights
from fer.training import instantiate_model, run_training

from helpers import FAST, compose_train, untrained_checkpoint


def _fresh_model(tmp_path, model: str, *overrides: str):
    torch.manual_seed(123)  # other weights than the checkpoint's (seed 0)
    return instantiate_model(compose_train(tmp_path / "fresh", [f"model={model}", "logger=none", *FAST,
                                                                *overrides]).model)


def test_the_model_starts_from_the_checkpoint_weights(tmp_path):
    ckpt = untrained_checkpoint(tmp_path / "mlp.ckpt", "mlp")
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    model = _fresh_model(tmp_path, "mlp")
    assert not all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    start_from_weights(model, ckpt)
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


def test_another_model_or_network_is_refused_naming_the_file(tmp_path):
    ckpt = untrained_checkpoint(tmp_path / "mlp.ckpt", "mlp")
    with pytest.raises(UserError, match=r"init_from=.*mlp.ckpt: a mlp checkpoint; this run trains cnn"):
        start_from_weights(_fresh_model(tmp_path, "cnn"), ckpt)
    with pytest.raises(UserError, match=r"init_from=.*mlp.ckpt: its weights do not fit this run's mlp network"):
        start_from_weights(_fresh_model(tmp_path, "mlp", "model.net.hidden=[16]"), ckpt)


def test_train_loads_the_weights_before_the_trainer_runs(tmp_path, monkeypatch):
    import fer.training as training

    ckpt = untrained_checkpoint(tmp_path / "mlp.ckpt", "mlp")
    seen = []

    def stop_here(model, path):
        seen.append((model.model_name, str(path)))
        raise KeyboardInterrupt  # no training: what matters is that it got here, with this file

    monkeypatch.setattr(training, "start_from_weights", stop_here)
    cfg = compose_train(tmp_path, ["model=mlp", "logger=none", *FAST, f"init_from={ckpt}"])
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg)
    assert seen == [("mlp", str(ckpt))]


def test_init_from_and_resume_exclude_each_other(tmp_path):
    cfg = compose_train(tmp_path, ["model=mlp", "logger=none", *FAST, f"init_from={tmp_path / 'a.ckpt'}",
                                   f"resume={tmp_path}"])
    with pytest.raises(UserError, match="give one of them"):
        run_training(cfg)
