"""Compose the real Hydra config for tests (as lightning-hydra-template does): tiny, CPU, output in tmp."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
MODEL_NAMES = sorted(p.stem for p in (CONF / "model").glob("*.yaml") if not p.stem.startswith("_"))

FAST = ["trainer.accelerator=cpu", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=2", "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false", "data.source.n_train=280", "data.source.n_test=70",
        "data.batch_size=32", "data.eval_batch_size=64", "data.progress=false", "callbacks.progress_bar=null"]


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
