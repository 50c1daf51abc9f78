"""What a training run records in MLflow, and how it is read back: the one owner of every tag, param, metric
and artifact name that fer writes itself or reads from a run.

The per-epoch metrics (train/loss, val/acc, test/acc, ...) are logged by the LightningModule through Lightning's
MLflow logger; of those, this module names the one it reads back (SELECTION_METRIC). A new artifact is one method
of RunRecord; a new way to find a checkpoint in MLflow is one method of RunStore.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fer.errors import UserError
from fer.runtime.atomic import publish
from fer.tracking.mlflow_logger import model_requirements, retry, ui_url
from fer.tracking.sqlite_store import sqlite_file

log = logging.getLogger(__name__)

# ---- names ---------------------------------------------------------------------------------------------
PARAM_MODEL = "model"  # the model's registered name (ckpt=best:<model> filters on it)
PARAM_DEVICE = "device"  # what the run trained on (the results tables name it)
PARAM_COMMIT = "git_commit"  # the commit the run trained with (exports record it)
TAG_BEST_CHECKPOINT = "best_checkpoint"  # local path of the checkpoint the run tested
TAG_OUTPUT_DIR = "output_dir"  # the train.py run folder
TAG_AUDIT_PREFIX = "audit."  # one tag per audit count (audit=true)
TAG_STOPPED = "stopped"  # why a callback stopped the run on purpose (status KILLED), e.g. a pruned trial
TAG_STUDY = "optuna.study"  # hparams_search: the Optuna study a trial's run (or the study's summary run) belongs to
TAG_TRIAL = "optuna.trial"  # hparams_search: the trial's number in its study
TAG_STUDY_SUMMARY = "optuna.summary"  # "true" on a study's summary run (best trial, plots)
TAG_STUDY_BEST_PREFIX = "best."  # the summary run: one tag per value of the best trial (best.model.optimizer.lr)
SELECTION_METRIC = "val/acc"  # what model selection (the checkpoint callback, ckpt=best) maximises
METRIC_FIT_SECONDS = "fit_seconds"
METRIC_PARAMS = "model/params"
METRIC_DEDUP_PREFIX = "data/dedup_"
METRIC_TEMPERATURE = "calibration/temperature"
METRIC_ECE = "val/ece"  # expected calibration error on the val split, calibrated (and before: ..._uncalibrated)
METRIC_ECE_BEFORE = "val/ece_uncalibrated"
METRIC_STUDY_PREFIX = "study/"  # the summary run's counts and best value (study/best_value, study/n_pruned, ...)
ARTIFACT_CHECKPOINTS = "checkpoints"
ARTIFACT_REPORTS = "reports"
ARTIFACT_AUDIT = "audit"
ARTIFACT_MODEL = "model"  # the MLflow model (a pyfunc around the best checkpoint: fer.tracking.served_model)
ARTIFACT_EXPORT = "export"  # files made from the run afterwards (e.g. ONNX)
ARTIFACT_STUDY = "study"  # the summary run's files: plots, trials table, the best trial's experiment config


def trial_tags(study: str, number: int) -> dict[str, str]:
    """The tags that place a training run in its study (set by train.py when the sweeper names a trial)."""
    return {TAG_STUDY: study, TAG_TRIAL: str(number)}


# ---- writing -------------------------------------------------------------------------------------------
class RunRecord:
    """Writes one run's record. Every call retries while another process holds the sqlite store's lock."""

    def __init__(self, client, run_id: str, experiment_id: str):
        self.client, self.run_id, self.experiment_id = client, run_id, experiment_id

    @classmethod
    def for_run(cls, tracking_uri: str, run_id: str) -> RunRecord:
        """The record of an existing run (to add files to it after training)."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri)
        return cls(client, run_id, client.get_run(run_id).info.experiment_id)

    @classmethod
    def of_logger(cls, logger) -> RunRecord:
        """The record of a Lightning MLFlowLogger's run."""
        return cls(logger.experiment, logger.run_id, logger.experiment_id)

    @property
    def tracking_uri(self) -> str:
        return self.client.tracking_uri

    def _call(self, method: str, *args: Any) -> Any:
        return retry(getattr(self.client, method), self.run_id, *args)

    def end(self, status: str) -> None:
        """The run's final status: FINISHED once everything after the fit is done too, FAILED if it broke."""
        self._call("set_terminated", status)

    def end_stopped(self, reason: str) -> None:
        """A run a callback stopped on purpose (a pruned trial): KILLED, with the reason."""
        self._call("set_tag", TAG_STOPPED, reason)
        self._call("set_terminated", "KILLED")

    def params(self) -> dict[str, str]:
        return dict(self._call("get_run").data.params)

    def log_start(self, params: dict[str, Any], config_file: Path, output_dir: Path,
                  tags: dict[str, str] | None = None) -> None:
        """A new run: its short flat params, the full composed config, where its files are, and `tags` (e.g. the
        study and trial of a search: trial_tags)."""
        self._call("log_batch", [], [_param(k, v) for k, v in params.items()])
        self._call("log_artifact", str(config_file))
        for key, value in {TAG_OUTPUT_DIR: str(output_dir), **(tags or {})}.items():
            self._call("set_tag", key, value)

    def log_fit(self, seconds: float, n_params: int, dedup: dict[str, int]) -> None:
        self._call("log_metric", METRIC_FIT_SECONDS, seconds)
        self._call("log_metric", METRIC_PARAMS, float(n_params))
        for key, value in dedup.items():
            self._call("log_metric", f"{METRIC_DEDUP_PREFIX}{key}", float(value))

    def log_calibration(self, temperature: float, ece_before: float, ece_after: float) -> None:
        self._call("log_metric", METRIC_TEMPERATURE, temperature)
        self._call("log_metric", METRIC_ECE_BEFORE, ece_before)
        self._call("log_metric", METRIC_ECE, ece_after)

    def log_best_checkpoint(self, path: str | Path) -> None:
        self._call("set_tag", TAG_BEST_CHECKPOINT, str(path))
        self._call("log_artifact", str(path), ARTIFACT_CHECKPOINTS)

    def log_reports(self, files: dict[str, Path]) -> None:
        for path in files.values():
            self._call("log_artifact", str(path), ARTIFACT_REPORTS)

    def log_audit(self, counts: dict[str, int], folder: Path) -> None:
        for key, value in counts.items():
            self._call("set_tag", f"{TAG_AUDIT_PREFIX}{key}", str(value))
        self._call("log_artifacts", str(folder), ARTIFACT_AUDIT)

    def log_export(self, path: Path) -> None:
        self._call("log_artifact", str(path), ARTIFACT_EXPORT)

    def log_model(self, checkpoint: str | Path) -> None:
        """The run's MLflow model: the checkpoint file served as uint8 faces in, class probabilities and label out
        (fer.tracking.served_model; docs/SERVING.md). The fer package travels with it as code."""
        import mlflow

        import fer
        from fer.tracking.served_model import (CHECKPOINT_ARTIFACT, INPUT_CONTRACT, ServedFER, input_example,
                                               signature)

        # the fluent API below writes to the process's tracking store: pointed at the run's own store for the
        # call, then back at the caller's (a library leaves process-wide settings as it found them)
        callers = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.tracking_uri)
        try:
            with mlflow.start_run(run_id=self.run_id, nested=False):
                mlflow.pyfunc.log_model(name=ARTIFACT_MODEL, python_model=ServedFER(),
                                        artifacts={CHECKPOINT_ARTIFACT: str(checkpoint)},
                                        code_paths=[fer.__path__[0]], signature=signature(),
                                        input_example=input_example(), pip_requirements=model_requirements(),
                                        metadata={"input": INPUT_CONTRACT})
        finally:
            mlflow.set_tracking_uri(callers)

    def ui_link(self, server: str = "http://127.0.0.1:5000") -> str:
        return ui_url(server, self.experiment_id, self.run_id)


class StudyRecord(RunRecord):
    """A study's summary run in its MLflow experiment (beside the trials' runs): the best trial's value and
    params, the trial counts, and the study's files. One per study: a worker that finishes later updates it."""

    @classmethod
    def open(cls, tracking_uri: str, experiment_name: str, artifact_location: str | None, study: str) -> StudyRecord:
        from mlflow.tracking import MlflowClient

        from fer.tracking.mlflow_logger import ensure_experiment

        experiment_id = ensure_experiment(experiment_name, tracking_uri, artifact_location)
        client = MlflowClient(tracking_uri)
        query = f"tags.`{TAG_STUDY_SUMMARY}` = 'true' and tags.`{TAG_STUDY}` = '{study}'"
        found = retry(client.search_runs, [experiment_id], filter_string=query, max_results=1)
        if found:
            return cls(client, found[0].info.run_id, experiment_id)
        run = retry(client.create_run, experiment_id, run_name=f"{study}-summary",
                    tags={TAG_STUDY_SUMMARY: "true", TAG_STUDY: study})
        return cls(client, run.info.run_id, experiment_id)

    def log_study(self, best_value: float | None, best_params: dict[str, Any], counts: dict[str, int],
                  files: list[Path]) -> None:
        metrics = {f"{METRIC_STUDY_PREFIX}{k}": float(v) for k, v in counts.items()}
        if best_value is not None:
            metrics[f"{METRIC_STUDY_PREFIX}best_value"] = float(best_value)
        step = counts.get("n_trials", 0)  # the history of a study that several workers finish one after another
        for key, value in metrics.items():
            self._call("log_metric", key, value, None, step)
        for key, value in best_params.items():  # params cannot change: the best trial's values as tags
            self._call("set_tag", f"{TAG_STUDY_BEST_PREFIX}{key}", str(value))
        for path in files:
            self._call("log_artifact", str(path), ARTIFACT_STUDY)
        self.end("FINISHED")


def _param(key: str, value: Any):
    from mlflow.entities import Param

    return Param(key, str(value))


# ---- reading -------------------------------------------------------------------------------------------
class RunStore:
    """A lazily opened MLflow client for one tracking URI, answering predict.py's questions about runs."""

    def __init__(self, tracking_uri: str, experiment_name: str, download_dir: Path):
        self.tracking_uri, self.experiment_name, self.download_dir = tracking_uri, experiment_name, download_dir
        self._client = None

    @property
    def client(self):
        if self._client is None:
            db = sqlite_file(self.tracking_uri)
            if db is not None and not db.is_file():  # MLflow would silently create an empty store
                raise UserError(f"no MLflow store at {db} (tracking URI {self.tracking_uri}); train with "
                                "logger=mlflow first or set MLFLOW_TRACKING_URI")
            logging.getLogger("alembic").setLevel(logging.WARNING)  # sqlite stores log migration chatter
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def get_run(self, run_id: str):
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id)
        except MlflowException as exc:
            raise UserError(f"unknown MLflow run id {run_id!r} in {self.tracking_uri} "
                            f"({str(exc).splitlines()[0]})") from exc

    def best_checkpoint_tag(self, run_id: str) -> str | None:
        return self.get_run(run_id).data.tags.get(TAG_BEST_CHECKPOINT)

    def best_run_id(self, spec: str, model: str | None = None) -> str:
        """The run with the highest SELECTION_METRIC (at its best epoch) that has a checkpoint to offer."""
        exp = self.client.get_experiment_by_name(self.experiment_name)
        if exp is None:
            raise UserError(f"ckpt={spec}: no MLflow experiment {self.experiment_name!r} in {self.tracking_uri} "
                            "(set experiment_name=...)")
        query = f"metrics.`{SELECTION_METRIC}` >= 0" + (f" and params.{PARAM_MODEL} = '{model}'" if model else "")
        runs = self.client.search_runs([exp.experiment_id], filter_string=query,
                                       order_by=[f"metrics.`{SELECTION_METRIC}` DESC", "attributes.start_time DESC"],
                                       max_results=50)
        finished = [r for r in runs if r.data.tags.get(TAG_BEST_CHECKPOINT)]
        if finished:  # a run's metric value is its last epoch's; the checkpoint it tested is its best epoch's
            return max(finished, key=lambda r: max(m.value for m in self.client.get_metric_history(
                r.info.run_id, SELECTION_METRIC))).info.run_id
        which = f"of model {model!r} " if model else ""
        unfinished = [r for r in runs if r.info.status != "FINISHED"]
        if unfinished:  # the run is there, it just never got as far as testing a checkpoint
            r = unfinished[0]
            folder = r.data.tags.get(TAG_OUTPUT_DIR, "its run folder")
            raise UserError(f"ckpt={spec}: the only run {which}in experiment {self.experiment_name!r} with a "
                            f"{SELECTION_METRIC} ({r.info.run_name}, status {r.info.status}) did not finish; resume "
                            f"it with python train.py resume={folder}, or name one of its checkpoints")
        raise UserError(f"ckpt={spec}: no run {which}in experiment {self.experiment_name!r} ({self.tracking_uri}) "
                        f"has a {SELECTION_METRIC} metric and a {TAG_BEST_CHECKPOINT} tag; train one with "
                        "logger=mlflow")

    def checkpoint_files(self, run_id: str) -> list[str]:
        """Artifact paths of the run's uploaded checkpoints."""
        try:
            return [f.path for f in self.client.list_artifacts(run_id, ARTIFACT_CHECKPOINTS)
                    if f.path.endswith(".ckpt")]
        except Exception as exc:  # noqa: BLE001 - artifact repositories raise many kinds
            raise UserError(f"run {run_id}: cannot list its artifacts ({str(exc).splitlines()[0]})") from exc

    def fetch(self, run_id: str, artifact: str) -> Path:
        """The artifact's local copy in <download_dir>/<run id>/, downloaded on first use (never half-written)."""
        target = self.download_dir / run_id
        if (target / Path(artifact).name).is_file():
            return target / Path(artifact).name
        target.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=target))
        try:
            local = Path(self.client.download_artifacts(run_id, artifact, str(tmp)))
            if not local.is_file():
                return local
            publish(local, target / local.name)  # flushed, a normal file's mode, then renamed
            return target / local.name
        except Exception as exc:  # noqa: BLE001 - artifact repositories raise many kinds
            raise UserError(f"run {run_id}: cannot download artifact {artifact!r} "
                            f"({str(exc).splitlines()[0]})") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
