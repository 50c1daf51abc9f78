"""Compose the real Hydra config for tests (as lightning-hydra-template does): tiny, CPU, output in tmp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
MODEL_NAMES = sorted(p.stem for p in (CONF / "model").glob("*.yaml") if not p.stem.startswith("_"))

# smaller variants of the costlier models, for tests about flows rather than capacity (same code paths)
SMALL = {"efficientnet": ["model.net.input_size=64"],  # the default upscales to 96
         "cnn": ["model.net.fc=[256]"], "resnet": ["model.net.arch=resnet10t"]}

FAST = ["trainer.accelerator=cpu", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=2", "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false", "data.source.n_train=280", "data.source.n_test=70",
        "data.batch_size=32", "data.eval_batch_size=64", "data.progress=false"]


def compose_train(tmp_path: Path, overrides: list[str], config_name: str = "train") -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config_name, return_hydra_config=True,
                      overrides=[f"paths.output_dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}",
                                 f"hydra.run.dir={tmp_path / 'run'}", *overrides])
    HydraConfig.instance().set_config(cfg)  # lets ${hydra:...} interpolations resolve outside an app
    with open_dict(cfg):
        del cfg.hydra
    return cfg


def mlflow_overrides(tmp_path: Path) -> list[str]:
    return [f"logger.mlflow.tracking_uri=sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
            f"logger.mlflow.artifact_location={tmp_path / 'mlruns' / 'artifacts'}"]


def nll(probs: np.ndarray, labels: np.ndarray, label_smoothing: float = 0.0) -> float:
    """Mean cross-entropy of `probs` against `labels`, with label smoothing as torch's cross_entropy defines it."""
    logp = np.log(np.clip(probs, 1e-12, None))
    true = -logp[np.arange(len(labels)), labels]
    return float(((1 - label_smoothing) * true - label_smoothing * logp.mean(1)).mean())


_RUN_PRECISION = object()  # the precision the run trained and tested with (cfg.trainer.precision)


def score_test_split(cfg, model, precision=_RUN_PRECISION, tta: bool = False,
                      batch_size: int | None = None, tta_shift: int | None = None,
                      part: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, labels) of the run's test split (or `part`, e.g. "val") scored outside Lightning, as
    predict.py scores it (tta: the mirror view, and the shifted ones unless tta_shift=0)."""
    import hydra

    from fer.inference.engine import predict_array

    if precision is _RUN_PRECISION:
        precision = torch.bfloat16 if str(cfg.trainer.precision).startswith("bf16") else None
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("test")
    idx = dm.idx[part]
    probs = predict_array(model, dm.cache.images, idx, batch_size or cfg.data.eval_batch_size, "cpu", precision,
                          tta=tta, tta_shift=(2 if tta_shift is None else tta_shift) if tta else 0)
    return probs, dm.cache.labels[idx]


class SlowEpochs:
    """A callback for subprocess tests (`+callbacks.slow._target_=helpers.SlowEpochs`, tests/ on PYTHONPATH): from
    the second epoch on, each epoch first sleeps FER_TEST_SLOW_EPOCH seconds, leaving time to kill the run
    after epoch 1 was checkpointed. Without the variable (e.g. when the run is resumed) it does nothing."""

    def __new__(cls):
        import os

        import pytorch_lightning as pl

        class _Slow(pl.Callback):
            def on_train_epoch_start(self, trainer, pl_module):
                seconds = float(os.environ.get("FER_TEST_SLOW_EPOCH") or 0)
                if trainer.current_epoch >= 1 and seconds:
                    import time

                    time.sleep(seconds)

        return _Slow()


def classifier(name: str, net: dict | None = None, **kwargs):
    """An untrained FERClassifier around the registered network `name` with these network keys (else the
    network's defaults) and the module's own kwargs (crop_size, test_tta...)."""
    from fer.models.base import FERClassifier
    from fer.models.registry import get_model_class, target_of

    return FERClassifier({"_target_": target_of(get_model_class(name)), **(net or {})}, **kwargs)


def untrained_checkpoint(path: Path, model: str, overrides: list[str] = (), temperature: float = 1.25) -> Path:
    """A checkpoint as train.py writes one, without training: the real config's model (untrained weights, a
    calibration temperature) and the real data module's val split record. For tests that need a checkpoint, not a
    trained model (every Trainer.fit costs seconds). Neural models only: the SVM has nothing to save unfitted."""
    import hydra

    from fer.models.base import CALIBRATION_KEY
    from fer.training import instantiate_model

    given = {o.split("=")[0].lstrip("+") for o in overrides}
    fast = [o for o in FAST if o.split("=")[0].lstrip("+") not in given]  # the caller's settings win
    cfg = compose_train(path.parent / f".{path.stem}", [f"model={model}", "logger=none", *fast, *overrides])
    torch.manual_seed(0)
    net = instantiate_model(cfg.model)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("fit")
    state = net.state_dict()
    state[CALIBRATION_KEY] = torch.tensor(temperature)
    checkpoint = {"state_dict": state, "hyper_parameters": dict(net.hparams),
                  "FERDataModule": datamodule.state_dict()}
    net.on_save_checkpoint(checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path
