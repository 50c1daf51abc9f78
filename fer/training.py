"""What `python train.py` does: instantiate data, model, trainer and tracker from the composed config,
fit, test the best checkpoint, and log the reports. No per-model branches: every model is a FERClassifier."""

from __future__ import annotations

import json
import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor
from pytorch_lightning.loggers import MLFlowLogger

from fer.cli import UserError, check_recipe_for
from fer.data.errors import DataError
from fer.tracking.mlflow_logger import retry, ui_url
from fer.tracking.reports import write_test_reports

log = logging.getLogger(__name__)

RUN_INFO = "run_info.json"  # in the run folder: MLflow run id etc., what `resume=` needs


def _git_commit(root: str) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def load_resume_config(cfg: DictConfig) -> tuple[DictConfig, Path, str | None]:
    """`resume=<run folder>`: the original composed config of that run, writing into the same folder, its last
    checkpoint, and the model name it was started with (from Hydra's record of the run, when there is one)."""
    run_dir = Path(cfg.resume).expanduser().resolve()
    saved = run_dir / ".hydra" / "config.yaml"
    last = run_dir / "checkpoints" / "last.ckpt"
    if not saved.is_file():
        raise DataError(f"resume={cfg.resume}: {saved} not found; give the run folder printed by train.py "
                        "(outputs/train/runs/<time>_<model>)")
    if not last.is_file():
        raise DataError(f"resume={cfg.resume}: no checkpoints/last.ckpt in it; nothing to resume from")
    old = OmegaConf.load(saved)
    old.paths.output_dir = str(run_dir)
    old.resume = None
    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    model_name = OmegaConf.select(OmegaConf.load(hydra_file), "hydra.runtime.choices.model") \
        if hydra_file.is_file() else None
    return old, last, model_name


def instantiate_model(cfg_model: DictConfig) -> pl.LightningModule:
    # not recursive: optimizer/scheduler stay plain dicts, instantiated in configure_optimizers
    return hydra.utils.instantiate(cfg_model, _recursive_=False, _convert_="all")


def _flat_params(cfg: DictConfig, model_name: str, data_name: str) -> dict[str, Any]:
    opt = cfg.model.get("optimizer") or {}
    sched = cfg.model.get("scheduler") or {}
    return {"model": model_name, "data": data_name, "data_root": cfg.data.get("root"),
            "optimizer": str(opt.get("_target_", "none")).rsplit(".", 1)[-1], "lr": opt.get("lr"),
            "scheduler": str(sched.get("_target_", "none")).rsplit(".", 1)[-1],
            "batch_size": cfg.data.batch_size, "max_epochs": cfg.trainer.max_epochs,
            "precision": cfg.trainer.get("precision"), "seed": cfg.seed,
            "label_smoothing": cfg.model.get("label_smoothing"), "class_weighting": cfg.model.get("class_weighting"),
            "git_commit": _git_commit(cfg.paths.root_dir)}


# config values that must be numbers: a typo in an override (trainer.max_epochs=3O) would otherwise surface as
# an assertion deep inside Lightning
_NUMERIC_KEYS = ("seed", "trainer.max_epochs", "trainer.min_epochs", "trainer.log_every_n_steps",
                 "data.batch_size", "data.eval_batch_size", "data.val_fraction", "data.split_seed",
                 "model.optimizer.lr", "model.optimizer.weight_decay", "model.label_smoothing")


def validate_config(cfg: DictConfig) -> None:
    check_recipe_for(cfg, "train")
    for key in _NUMERIC_KEYS:
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UserError(f"{key}={value!r} is not a number")


def run_training(cfg: DictConfig, model_name: str = "model") -> dict[str, float]:
    validate_config(cfg)
    ckpt_path = None
    if cfg.get("resume"):
        cfg, last, model_name = load_resume_config(cfg)
        ckpt_path = str(last)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info_file = out_dir / RUN_INFO
    run_info = json.loads(info_file.read_text()) if ckpt_path and info_file.is_file() else {}
    if ckpt_path and not run_info:
        log.warning("resume=%s: no run_info.json in the run folder, so its MLflow run is unknown; the training "
                    "continues from last.ckpt in a new MLflow run", out_dir)
    model_name = run_info.get("model", model_name or "model")
    continues_run = bool(run_info.get("mlflow_run_id"))
    pl.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision("high")

    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data)
    model = instantiate_model(cfg.model)

    loggers = []
    mlflow_logger: MLFlowLogger | None = None
    if cfg.get("logger"):
        for name, lg_cfg in cfg.logger.items():
            kwargs = {}
            if name == "mlflow":
                kwargs["run_id"] = run_info.get("mlflow_run_id")  # resume: same MLflow run
                if not lg_cfg.get("run_name"):
                    kwargs["run_name"] = f"{model_name}-{datamodule.name}-{time.strftime('%m%d-%H%M%S')}"
            lg = hydra.utils.instantiate(lg_cfg, **kwargs)
            loggers.append(lg)
            if isinstance(lg, MLFlowLogger):
                mlflow_logger = lg
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    if not loggers:  # LearningRateMonitor refuses to run without a logger; with logger=none it has nothing to do
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)

    if mlflow_logger is not None and not continues_run:
        mlflow_logger.log_hyperparams(_flat_params(cfg, model_name, datamodule.name))
        config_file = out_dir / "config.yaml"
        config_file.write_text(OmegaConf.to_yaml(cfg, resolve=True))
        retry(mlflow_logger.experiment.log_artifact, mlflow_logger.run_id, str(config_file))
        retry(mlflow_logger.experiment.set_tag, mlflow_logger.run_id, "output_dir", str(out_dir))
    info_file.write_text(json.dumps({"model": model_name, "data": datamodule.name,
                                     "mlflow_run_id": mlflow_logger.run_id if mlflow_logger else None}, indent=1))
    log.info("run folder: %s (resume with: python train.py resume=%s)", out_dir, out_dir)
    if cfg.get("audit") and trainer.is_global_zero:  # data audit report (fer.audit) before training
        from fer.audit.report import audit_for_training

        audit_for_training(datamodule, cfg.audit, out_dir / "audit", mlflow_logger)

    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    fit_seconds = time.perf_counter() - started
    if trainer.interrupted:
        log.warning("training interrupted; continue with: python train.py resume=%s", out_dir)
        return {}
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    results = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    tested = bool(cfg.get("test") and getattr(datamodule, "test_split", None))
    if tested:  # every rank takes part (a collective under DDP); rank 0 writes the reports
        # best checkpoint, never the last epoch: what we report is what model selection on val chose
        test_metrics = trainer.test(model, datamodule=datamodule, ckpt_path="best" if best else None)
        results.update({k: float(v) for k, v in (test_metrics[0] if test_metrics else {}).items()})
    if trainer.global_rank != 0:
        return results
    if mlflow_logger is not None:
        client, run_id = mlflow_logger.experiment, mlflow_logger.run_id
        retry(client.log_metric, run_id, "fit_seconds", fit_seconds)
        retry(client.log_metric, run_id, "model/params", float(sum(p.numel() for p in model.parameters())))
        if best:
            retry(client.set_tag, run_id, "best_checkpoint", best)
            retry(client.log_artifact, run_id, best, "checkpoints")
        for key, value in getattr(datamodule, "dedup_report", {}).items():
            retry(client.log_metric, run_id, f"data/dedup_{key}", float(value))
    if tested:
        files = write_test_reports(model.test_outputs, out_dir / "reports")
        if mlflow_logger is not None:
            for path in files.values():
                retry(mlflow_logger.experiment.log_artifact, mlflow_logger.run_id, str(path), "reports")
    if mlflow_logger is not None:
        import mlflow

        uri = mlflow_logger.experiment.tracking_uri
        mlflow.set_tracking_uri(uri)  # the fluent API below must write to the same store as the logger
        with mlflow.start_run(run_id=mlflow_logger.run_id, nested=False):
            model.log_mlflow_model("model")
        log.info("MLflow: mlflow ui --backend-store-uri %s, then open %s", uri,
                 ui_url("http://127.0.0.1:5000", mlflow_logger.experiment_id, mlflow_logger.run_id))
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    log.info("results: %s", json.dumps(results, indent=1))
    return results
