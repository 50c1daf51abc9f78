"""MLflow set-up: sqlite tracking store under mlruns/, experiments that open in the runs table."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from fer.tracking.sqlite_store import creation_lock, sqlite_file

log = logging.getLogger(__name__)

# Marks the experiment as classic model training. The UI picks its view (GenAI overview or the runs table) from the
# URL's `workflowType` query, else from the browser's localStorage, default GenAI: links that open the runs table
# carry UI_RUNS_QUERY (see ui_url). scripts/check_mlflow_ui.py checks this against the installed MLflow.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
UI_RUNS_QUERY = "workflowType=machine_learning"


def ui_url(server_url: str, experiment_id: str, run_id: str | None = None, artifact: str | None = None) -> str:
    """MLflow UI (3.17) link that opens in the runs table, not the GenAI overview: the experiment's runs page,
    a run's page, or one of its artifacts (e.g. "reports/confusion_matrix.png")."""
    path = f"#/experiments/{experiment_id}/runs"
    if run_id:
        path += f"/{run_id}" + (f"/artifacts/{artifact.strip('/')}" if artifact else "")
    return f"{server_url.rstrip('/')}/{path}?{UI_RUNS_QUERY}"


def ensure_experiment(experiment_name: str, tracking_uri: str, artifact_location: str | None = None) -> str:
    """Experiment id for `experiment_name`, created (tagged as model training) if missing."""
    from mlflow.tracking import MlflowClient

    with creation_lock(tracking_uri):  # two runs starting together: one creates the tables and experiment
        client = MlflowClient(tracking_uri)
        exp = client.get_experiment_by_name(experiment_name)
        if exp is None:
            location = None
            if artifact_location and sqlite_file(tracking_uri) is not None:
                location = Path(artifact_location, experiment_name).resolve().as_uri()
            exp_id = client.create_experiment(experiment_name, artifact_location=location,
                                              tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        else:
            exp_id = exp.experiment_id
            if exp.tags.get(EXPERIMENT_KIND_TAG) is None:
                client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return exp_id


def make_mlflow_logger(experiment_name: str, tracking_uri: str, run_name: str | None = None,
                       artifact_location: str | None = None, run_id: str | None = None):
    """The Lightning logger of a run (conf/logger/mlflow.yaml), in an experiment that opens as a runs table."""
    from pytorch_lightning.loggers import MLFlowLogger  # here, not at the top: predict.py resolves runs without it

    class RunLogger(MLFlowLogger):
        """Lightning ends the MLflow run as FINISHED when fit() returns; fer still calibrates, tests and logs after
        that, and ends the run itself (RunRecord.end). A failure inside fit is still ended here, as FAILED."""

        def finalize(self, status: str = "success") -> None:
            if status != "success":
                super().finalize(status)

    ensure_experiment(experiment_name, tracking_uri, artifact_location)
    return RunLogger(experiment_name=experiment_name, run_name=run_name, tracking_uri=tracking_uri,
                     run_id=run_id, log_model=False)


def retry(fn, *args, attempts: int = 5, **kwargs):
    """Call fn, retrying when sqlite is briefly locked by another run writing to the same store."""
    for i in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # MlflowException wraps sqlalchemy's OperationalError
            if "locked" not in str(exc).lower() or i == attempts - 1:
                raise
            log.warning("mlflow store busy (%s); retrying", exc)
            time.sleep(0.5 * 2**i)
    return None


def model_requirements() -> list[str]:
    """Pinned requirements for a logged model, from the project's requirements.txt. Giving them explicitly
    saves MLflow's requirement inference, which re-imports the model in a subprocess (~20 s per run)."""
    req = Path(__file__).resolve().parents[2] / "requirements.txt"
    if req.is_file():
        lines = [ln.split("#")[0].strip() for ln in req.read_text().splitlines()]
        return [ln for ln in lines if ln and not ln.startswith(("pytest", "-"))]
    import torch

    return [f"torch=={torch.__version__.split('+')[0]}"]
