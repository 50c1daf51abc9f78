"""What `python train.py` does: instantiate data, model, trainer and tracker from the composed config, fit, test
the best checkpoint, and record the run (run folder + MLflow, through fer.tracking). No per-model branches: every
model is a registered FERClassifier."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ProgressBar
from pytorch_lightning.loggers import MLFlowLogger

from fer.cli import check_recipe_for, number_keys_of_targets, require_data_root, require_numbers
from fer.errors import RunStoppedEarly, UserError
from fer.tracking.plots import plot_reliability
from fer.tracking.record import PARAM_COMMIT, PARAM_DEVICE, PARAM_MODEL, RunRecord, trial_tags
from fer.tracking.reports import write_test_reports
from fer.models.base import AUTO_SIZED
from fer.models.loading import start_from_weights
from fer.models.size import size_line
from fer.runtime.metadata import SYNTHETIC
from fer.training.calibrate import calibrate_checkpoint
from fer.training.provenance import device_name, source_commit
from fer.training.resume import load_resume_config
from fer.training.test_outputs import TestOutputs
from fer.tracking.run_folder import CONFIG, REPORTS, RESULTS, RunFolder, RunInfo

log = logging.getLogger(__name__)


def instantiate_trainer(cfg: DictConfig, loggers: list, *extra: pl.Callback) -> pl.Trainer:
    """The Trainer with the config's callbacks (and `extra`, the flow's own), less those Lightning refuses in this
    setting."""
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c] + list(extra)
    if not loggers:  # LearningRateMonitor refuses to run without a logger; with logger=none it has nothing to do
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a progress bar callback then
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return hydra.utils.instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)


def instantiate_model(cfg_model: DictConfig) -> pl.LightningModule:
    # not recursive: optimizer/scheduler stay plain dicts, instantiated in configure_optimizers
    return hydra.utils.instantiate(cfg_model, _recursive_=False, _convert_="all")


def _flat_params(cfg: DictConfig, model_name: str, data_name: str) -> dict[str, Any]:
    opt = cfg.model.get("optimizer") or {}
    sched = cfg.model.get("scheduler") or {}
    return {PARAM_MODEL: model_name, "data": data_name, "data_root": cfg.data.get("root"),
            "optimizer": str(opt.get("_target_", "none")).rsplit(".", 1)[-1], "lr": opt.get("lr"),
            "scheduler": str(sched.get("_target_", "none")).rsplit(".", 1)[-1],
            "batch_size": cfg.data.batch_size, "augment_copies": cfg.data.get("augment_copies", 1),
            "max_epochs": cfg.trainer.max_epochs,
            "precision": cfg.trainer.get("precision"), "seed": cfg.seed,
            "label_smoothing": cfg.model.get("label_smoothing"), "class_weighting": cfg.model.get("class_weighting"),
            # callbacks=[default,ema]: the weight average's decay (none without it)
            "ema_decay": OmegaConf.select(cfg, "callbacks.ema.decay", default=None),
            "init_from": cfg.get("init_from"),  # fine-tuned from this checkpoint's weights (none: from scratch)
            "capture_p": OmegaConf.select(cfg, "data.augment.capture_p", default=None),
            PARAM_DEVICE: device_name(str(cfg.trainer.get("accelerator", "auto"))),
            PARAM_COMMIT: source_commit(cfg.paths.root_dir),
            # a search's trial: each searched value under its override key (comparable across the study's runs)
            **{key: _config_value(cfg, key) for key in (OmegaConf.select(cfg, "trial.params") or [])}}


def _config_value(cfg: DictConfig, key: str) -> Any:
    """The value an override key set: `model.optimizer.lr` a value, `model/optimizer` a group's choice."""
    if "/" in key:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get().runtime.choices.get(key)
    return OmegaConf.select(cfg, key)


def _run_tags(cfg: DictConfig) -> dict[str, str]:
    trial = cfg.get("trial") or {}
    return trial_tags(trial.study, trial.number) if trial.get("number") is not None else {}


# numbers train.py reads itself; those the config's classes read are declared by them (number_keys_of_targets).
# A typo in an override (trainer.max_epochs=3O) would otherwise surface as an assertion deep inside Lightning.
_OWN_NUMBER_KEYS = ("seed",)


def number_keys(cfg: DictConfig) -> list[str]:
    """Every key of the train config whose value must be a number; a scheduler size given as "auto" is none."""
    auto = {f"model.scheduler.{key}" for key in AUTO_SIZED
            if OmegaConf.select(cfg, f"model.scheduler.{key}", default=None) == "auto"}
    return [key for key in (*_OWN_NUMBER_KEYS, *number_keys_of_targets(cfg)) if key not in auto]


def validate_config(cfg: DictConfig) -> None:
    check_recipe_for(cfg, "train")
    require_numbers(cfg, number_keys(cfg))
    require_data_root(cfg)


def _loggers(cfg: DictConfig, run_info: RunInfo | None, run_name: str) -> list:
    loggers = []
    for lg_cfg in (cfg.get("logger") or {}).values():
        kwargs = {}
        if str(lg_cfg.get("_target_", "")).endswith("make_mlflow_logger"):
            kwargs["run_id"] = run_info.mlflow_run_id if run_info else None  # resume: the same MLflow run
            if not lg_cfg.get("run_name"):
                kwargs["run_name"] = run_name
        loggers.append(hydra.utils.instantiate(lg_cfg, **kwargs))
    return loggers


def run_training(cfg: DictConfig) -> dict[str, float]:
    validate_config(cfg)
    ckpt_path = None
    if cfg.get("resume"):
        if cfg.get("init_from"):
            raise UserError("resume= continues a run, init_from= starts a new one from a checkpoint's weights: "
                            "give one of them")
        cfg, last = load_resume_config(cfg)
        ckpt_path = str(last)
    folder = RunFolder(cfg.paths.output_dir)
    folder.path.mkdir(parents=True, exist_ok=True)
    run_info = folder.read_info() if ckpt_path else None
    if ckpt_path and run_info is None:
        log.warning("resume=%s: no run_info.json in the run folder, so its MLflow run is unknown; the training "
                    "continues from last.ckpt in a new MLflow run", folder.path)
    pl.seed_everything(cfg.seed, workers=True)

    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data)
    model = instantiate_model(cfg.model)
    if cfg.get("init_from"):
        start_from_weights(model, cfg.init_from)
    model_name = model.model_name
    log.info("model %s: %s", model_name, size_line(model, model.net, model.net_input_size))
    loggers = _loggers(cfg, run_info, f"{model_name}-{datamodule.name}-{time.strftime('%m%d-%H%M%S')}")
    mlflow_logger = next((lg for lg in loggers if isinstance(lg, MLFlowLogger)), None)
    record = RunRecord.of_logger(mlflow_logger) if mlflow_logger is not None else None
    test_outputs = TestOutputs()  # what the reports are drawn from
    trainer = instantiate_trainer(cfg, loggers, test_outputs)

    if trainer.is_global_zero:  # other DDP ranks have no MLflow run of their own: they must not overwrite this
        if record is not None and not (run_info and run_info.mlflow_run_id):
            config_file = folder.file(CONFIG)
            config_file.write_text(OmegaConf.to_yaml(cfg, resolve=True))
            record.log_start(_flat_params(cfg, model_name, datamodule.name), config_file, folder.path,
                             _run_tags(cfg))
        folder.write_info(RunInfo(model_name, datamodule.name, record.run_id if record else None))
    log.info("run folder: %s (resume with: python train.py resume=%s)", folder.path, folder.path)
    if cfg.get("audit") and trainer.is_global_zero:  # data audit report (fer.audit) before training
        _audit(cfg, datamodule, folder, record)

    try:
        results = _fit_and_report(cfg, trainer, model, datamodule, folder, record, ckpt_path, test_outputs)
    except RunStoppedEarly as stop:  # on purpose (a pruned trial): nothing after the fit is wanted
        log.info("%s", stop)
        if record is not None and trainer.is_global_zero:
            record.end_stopped(str(stop))
        raise
    except BaseException:
        if record is not None and trainer.is_global_zero:
            record.end("FAILED")  # calibration, test or reports did not finish: the store must not say FINISHED
        raise
    if record is not None and trainer.is_global_zero and not trainer.interrupted:
        record.end("FINISHED")  # only now: a run killed during calibration or the test stays RUNNING
    return results


def _fit_and_report(cfg: DictConfig, trainer: pl.Trainer, model: pl.LightningModule, datamodule, folder: RunFolder,
                    record: RunRecord | None, ckpt_path: str | None, test_outputs: TestOutputs) -> dict[str, float]:
    """The stages after the set-up: fit, calibrate the best checkpoint, test it, then (rank 0) the reports and the
    MLflow record."""
    fitted = _fit(trainer, model, datamodule, ckpt_path)
    if trainer.interrupted:
        log.warning("training interrupted; continue with: python train.py resume=%s", folder.path)
        return {}
    results = fitted.results
    calibration = _calibrate(cfg, trainer, datamodule, fitted.best)
    if calibration is not None:
        results.update({"calibration/temperature": calibration.temperature, "val/ece": calibration.ece_after,
                        "val/ece_uncalibrated": calibration.ece_before})
    tested = bool(cfg.get("test") and datamodule.test_split)
    if tested:  # every rank takes part (a collective under DDP); rank 0 writes the reports
        results.update(_test(trainer, model, datamodule, fitted.best))
    if trainer.global_rank == 0:
        _report(record, folder, model, datamodule, fitted, calibration,
                test_outputs.outputs if tested else None, results)
    return results


@dataclass
class _Fitted:
    seconds: float
    best: str  # the best checkpoint's path ("" without a checkpoint callback)
    results: dict[str, float]


def _fit(trainer: pl.Trainer, model: pl.LightningModule, datamodule, ckpt_path: str | None) -> _Fitted:
    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    seconds = time.perf_counter() - started
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    results = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    results.update({"fit/seconds": round(seconds, 1), "fit/epochs": trainer.current_epoch})
    if best:  # the val/ values above are the last epoch's; these name the checkpoint that is calibrated and tested
        results["fit/best_epoch"] = int(torch.load(best, map_location="cpu", weights_only=True, mmap=True)["epoch"])
        if trainer.checkpoint_callback.monitor == "val/acc":
            results["val/best_acc"] = float(trainer.checkpoint_callback.best_model_score)
    return _Fitted(seconds, best, results)


def _calibrate(cfg: DictConfig, trainer: pl.Trainer, datamodule, best: str):
    """The best checkpoint's temperature, fitted on val (before the test: it scores the calibrated checkpoint)."""
    calibration = None
    if best and cfg.get("calibrate", True):
        if trainer.is_global_zero:
            # the strategy's device: after fit, Lightning has moved the module itself back to the CPU
            calibration = calibrate_checkpoint(best, datamodule, trainer.strategy.root_device,
                                               str(trainer.precision).startswith("bf16"))
        trainer.strategy.barrier()
    return calibration


def _test(trainer: pl.Trainer, model: pl.LightningModule, datamodule, best: str) -> dict[str, float]:
    # best checkpoint, never the last epoch: what we report is what model selection on val chose
    # verbose=False: Lightning's own table would repeat what the results line prints
    test_metrics = trainer.test(model, datamodule=datamodule, ckpt_path="best" if best else None, verbose=False)
    return {k: float(v) for k, v in (test_metrics[0] if test_metrics else {}).items()}


def _report(record: RunRecord | None, folder: RunFolder, model: pl.LightningModule, datamodule, fitted: _Fitted,
            calibration, test_outputs, results: dict[str, float]) -> None:
    """Rank 0: the test reports and the reliability diagram in the run folder, the MLflow record, results.json."""
    best = fitted.best
    if record is not None:
        record.log_fit(fitted.seconds, sum(p.numel() for p in model.parameters()), datamodule.dedup_report)
        if best:
            record.log_best_checkpoint(best)
    files = write_test_reports(test_outputs, folder.file(REPORTS)) if test_outputs is not None else {}
    if calibration is not None:
        files["reliability"] = plot_reliability(calibration.probs_before, calibration.probs_after, calibration.labels,
                                                folder.file(REPORTS) / "reliability_val.png",
                                                f"val split, T={calibration.temperature:.3f}")
    if record is not None:
        record.log_reports(files)
        if calibration is not None:
            record.log_calibration(calibration.temperature, calibration.ece_before, calibration.ece_after)
        # the model that was tested: the best checkpoint, calibrated (not the last epoch's weights)
        if best:
            record.log_model(best)
        else:
            log.warning("no best checkpoint (no checkpoint callback): no MLflow model logged")
        log.info("MLflow: mlflow ui --backend-store-uri %s, then open %s", record.tracking_uri, record.ui_link())
    folder.file(RESULTS).write_text(json.dumps(results, indent=1))
    log.info("results: %s", json.dumps(results, indent=1))
    if datamodule.name == SYNTHETIC:
        log.warning("this model learned the synthetic drawn faces only (data=synthetic, the default): it is a "
                    "smoke test, not a model of real faces. For real photos use the bundled FER2013 model "
                    "(fer-classify photo.jpg, or predict.py ckpt=pretrained), or train on real data: python "
                    "train.py data=fer2013 data.root=PATH (docs/RECIPES.md)")


def _audit(cfg: DictConfig, datamodule, folder: RunFolder, record: RunRecord | None) -> None:
    """`audit=true`: the data audit of this run's own parts (train, val, test, predict), in the run folder and in
    MLflow."""
    from fer.audit.report import AuditSettings, run_audit
    from fer.tracking.run_folder import AUDIT

    datamodule.setup("fit")  # opens the cache and draws the parts; a no-op when Lightning calls it again
    result = run_audit(datamodule.cache, folder.file(AUDIT), AuditSettings.from_config(cfg.audit),
                       parts=datamodule.idx, title=datamodule.name)
    if record is not None:
        record.log_audit(result.counts, result.out_dir)
