"""`ckpt=` -> a local checkpoint file.

Accepted specs:
  PATH                a .ckpt file written by train.py
  RUN FOLDER          outputs/train/runs/<time>_<model>: its MLflow run's best checkpoint, else its only
                      checkpoints/epoch_*.ckpt
  RUN ID / runs:/ID   an MLflow run: the file in its `best_checkpoint` tag when it exists on this machine,
                      else the `checkpoints/*.ckpt` artifact (downloaded once into <cache_dir>/checkpoints/<id>/)
  best                the run with the highest `val/acc` (best epoch) in the configured experiment
  best:MODEL          the same among that experiment's runs of one model (e.g. best:cnn_deep): ensembles

MLflow is imported only when a spec needs it: a plain path costs nothing at start-up.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fer.cli import UserError

BEST = "best"
BEST_METRIC = "val/acc"
BEST_TAG = "best_checkpoint"
ARTIFACT_DIR = "checkpoints"
_RUN_ID = re.compile(r"[0-9a-f]{32}")
_MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # also keeps the name safe inside the MLflow filter's quotes
_HINT = "give a .ckpt path, a train.py run folder, an MLflow run id, runs:/<run id>, best or best:<model>"


@dataclass
class Resolved:
    path: Path  # local checkpoint file
    spec: str  # what the user wrote
    run_id: str | None = None  # MLflow run, when the spec went through MLflow
    how: str = "path"  # path | run folder | mlflow tag | mlflow artifact | best

    def describe(self) -> str:
        if self.how == "path":
            return str(self.path)
        return f"{self.spec} -> {self.path} ({self.how}{', run ' + self.run_id if self.run_id else ''})"


class _Store:
    """A lazily opened MLflow client for one tracking URI."""

    def __init__(self, tracking_uri: str, experiment_name: str, download_dir: Path):
        self.tracking_uri, self.experiment_name, self.download_dir = tracking_uri, experiment_name, download_dir
        self._client = None

    @property
    def client(self):
        if self._client is None:
            if self.tracking_uri.startswith("sqlite:///"):
                db = Path(self.tracking_uri[len("sqlite:///"):])
                if not db.is_file():  # MLflow would silently create an empty store
                    raise UserError(f"no MLflow store at {db} (tracking URI {self.tracking_uri}); train with "
                                    "logger=mlflow first or set MLFLOW_TRACKING_URI")
            import logging

            # opening an sqlite store logs alembic's migration chatter at INFO
            logging.getLogger("alembic").setLevel(logging.WARNING)
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

    def best_run_id(self, model: str | None = None) -> str:
        spec = f"{BEST}:{model}" if model else BEST
        exp = self.client.get_experiment_by_name(self.experiment_name)
        if exp is None:
            raise UserError(f"ckpt={spec}: no MLflow experiment {self.experiment_name!r} in {self.tracking_uri} "
                            "(set experiment_name=...)")
        query = f"metrics.`{BEST_METRIC}` >= 0" + (f" and params.model = '{model}'" if model else "")
        runs = self.client.search_runs([exp.experiment_id], filter_string=query,
                                       order_by=[f"metrics.`{BEST_METRIC}` DESC", "attributes.start_time DESC"],
                                       max_results=50)
        # a run's `val/acc` metric is its last epoch's; the checkpoint it tested is its best epoch's: rank by that
        runs = [r for r in runs if r.data.tags.get(BEST_TAG)]  # only runs that still have a checkpoint to offer
        if runs:
            return max(runs, key=lambda r: max(m.value for m in self.client.get_metric_history(
                r.info.run_id, BEST_METRIC))).info.run_id
        which = f"of model {model!r} " if model else ""
        raise UserError(f"ckpt={spec}: no run {which}in experiment {self.experiment_name!r} ({self.tracking_uri}) "
                        f"has a {BEST_METRIC} metric and a {BEST_TAG} tag; train one with logger=mlflow")

    def checkpoint_of(self, run_id: str, spec: str) -> Resolved:
        run = self.get_run(run_id)
        tagged = run.data.tags.get(BEST_TAG)
        if tagged and Path(tagged).is_file():
            return Resolved(Path(tagged), spec, run_id, "mlflow tag")
        return self._download(run_id, spec, Path(tagged).name if tagged else None)

    def artifact(self, run_id: str, artifact: str, spec: str) -> Resolved:
        self.get_run(run_id)  # a clear message for an unknown run
        local = self._fetch(run_id, artifact)
        if not local.is_file():
            raise UserError(f"run {run_id}: artifact {artifact!r} is not a file; give e.g. "
                            f"runs:/{run_id}/{ARTIFACT_DIR}/<name>.ckpt")
        return Resolved(local, spec, run_id, "mlflow artifact")

    def _fetch(self, run_id: str, artifact: str) -> Path:
        """The artifact's local copy in <download_dir>/<run id>/ (MLflow puts a single file there by its name),
        downloaded on first use."""
        target = self.download_dir / run_id
        if (target / Path(artifact).name).is_file():  # downloaded before
            return target / Path(artifact).name
        target.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=target))  # an interrupted download leaves no file
        try:
            local = Path(self.client.download_artifacts(run_id, artifact, str(tmp)))
            if not local.is_file():
                return local
            os.replace(local, target / local.name)
            return target / local.name
        except Exception as exc:  # noqa: BLE001 - artifact repositories raise many kinds
            raise UserError(f"run {run_id}: cannot download artifact {artifact!r} "
                            f"({str(exc).splitlines()[0]})") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _download(self, run_id: str, spec: str, wanted: str | None) -> Resolved:
        if wanted and (self.download_dir / run_id / wanted).is_file():  # downloaded before
            return Resolved(self.download_dir / run_id / wanted, spec, run_id, "mlflow artifact")
        try:
            files = [f.path for f in self.client.list_artifacts(run_id, ARTIFACT_DIR) if f.path.endswith(".ckpt")]
        except Exception as exc:  # noqa: BLE001 - artifact repositories raise many kinds
            raise UserError(f"run {run_id}: cannot list its artifacts ({str(exc).splitlines()[0]})") from exc
        if not files:
            raise UserError(f"run {run_id}: its {BEST_TAG} checkpoint is not on this machine and the run has no "
                            f"{ARTIFACT_DIR}/*.ckpt artifact")
        chosen = next((f for f in files if wanted and Path(f).name == wanted), None) or \
            next((f for f in sorted(files) if Path(f).name != "last.ckpt"), sorted(files)[0])
        return Resolved(self._fetch(run_id, chosen), spec, run_id, "mlflow artifact")


def _run_folder(folder: Path, spec: str, store: _Store) -> Resolved:
    info = folder / "run_info.json"
    run_id = None
    if info.is_file():
        try:
            run_id = json.loads(info.read_text()).get("mlflow_run_id")
        except ValueError:
            run_id = None
    ckpts = sorted(p for p in (folder / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt")
    if run_id:
        try:
            run = store.get_run(run_id)
            tagged = run.data.tags.get(BEST_TAG)
            if tagged and Path(tagged).is_file():
                return Resolved(Path(tagged), spec, run_id, "run folder")
        except UserError:
            pass  # store moved or gone: the folder's own checkpoints still tell
    if len(ckpts) == 1:
        return Resolved(ckpts[0], spec, run_id, "run folder")
    if not ckpts:
        raise UserError(f"{folder}: a folder with no checkpoints/*.ckpt; {_HINT}")
    raise UserError(f"{folder}: several checkpoints ({', '.join(p.name for p in ckpts)}); name one of them")


def resolve_checkpoint(spec: str, tracking_uri: str, experiment_name: str = "fer",
                       download_dir: str | Path = ".cache/fer/checkpoints", store: _Store | None = None) -> Resolved:
    """One ckpt spec -> Resolved (an existing, readable zip file: what torch.save writes). Raises UserError with
    what was tried. Loading (fer.models.loading) checks the rest."""
    resolved = _resolve(spec, tracking_uri, experiment_name, download_dir, store)
    if not zipfile.is_zipfile(resolved.path):
        raise UserError(f"{resolved.path} is not a PyTorch checkpoint (expected a .ckpt written by train.py)")
    return resolved


def _resolve(spec: str, tracking_uri: str, experiment_name: str, download_dir: str | Path,
             store: _Store | None) -> Resolved:
    spec = str(spec).strip()
    if not spec:
        raise UserError(f"ckpt is empty; {_HINT}")
    store = store or _Store(tracking_uri, experiment_name, Path(download_dir).expanduser())
    path = Path(spec).expanduser()
    if path.is_file():
        if not os.access(path, os.R_OK):
            raise UserError(f"cannot read checkpoint {path}: permission denied")
        return Resolved(path, spec)
    if path.is_dir():
        return _run_folder(path, spec, store)
    if spec == BEST or spec.startswith(BEST + ":"):
        model = spec.partition(":")[2].strip()
        if spec != BEST and not _MODEL_NAME.fullmatch(model):
            raise UserError(f"ckpt={spec}: give best or best:<model>, e.g. best:cnn_deep")
        run_id = store.best_run_id(model or None)
        resolved = store.checkpoint_of(run_id, spec)
        resolved.how = f"best {BEST_METRIC}, {resolved.how}"
        return resolved
    if spec.startswith("runs:/"):
        run_id, _, artifact = spec[len("runs:/"):].strip("/").partition("/")
        if not run_id:
            raise UserError(f"ckpt={spec}: no run id after runs:/")
        if artifact:  # runs:/<id>/checkpoints/epoch_003.ckpt: that artifact
            return store.artifact(run_id, artifact, spec)
        return store.checkpoint_of(run_id, spec)
    if _RUN_ID.fullmatch(spec):
        return store.checkpoint_of(spec, spec)
    raise UserError(f"checkpoint not found: {path}; {_HINT}")


def resolve_all(specs: list[str], tracking_uri: str, experiment_name: str, download_dir: str | Path) -> list[Resolved]:
    store = _Store(tracking_uri, experiment_name, Path(download_dir).expanduser())
    if not specs:
        raise UserError(f"no checkpoint given: ckpt=...; {_HINT}")
    return [resolve_checkpoint(s, tracking_uri, experiment_name, download_dir, store=store) for s in specs]
