"""`ckpt=` -> a local checkpoint file.

Accepted specs:
  PATH                a .ckpt file written by train.py, or a .onnx file written by export.py
  RUN FOLDER          outputs/train/runs/<time>_<model>: its MLflow run's best checkpoint, else its only
                      checkpoints/epoch_*.ckpt
  RUN ID / runs:/ID   an MLflow run: the file in its `best_checkpoint` tag when it exists on this machine,
                      else the `checkpoints/*.ckpt` artifact (downloaded once into <cache_dir>/checkpoints/<id>/)
  best                the run with the highest `val/acc` (best epoch) in the configured experiment
  best:MODEL          the same among that experiment's runs of one model (e.g. best:cnn_deep): ensembles
  pretrained          the FER2013 model bundled with the package (fer.runtime.bundled; docs/MODEL_CARD.md)

MLflow is imported only when a spec needs it: a plain path costs nothing at start-up.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fer.errors import UserError
from fer.runtime.bundled import PRETRAINED, bundled_model_path
from fer.tracking.record import SELECTION_METRIC, RunStore
from fer.tracking.run_folder import LAST_CHECKPOINT, RunFolder

BEST = "best"
_RUN_ID = re.compile(r"[0-9a-f]{32}")
_MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # also keeps the name safe inside the MLflow filter's quotes
_HINT = ("give a .ckpt path, a train.py run folder, an MLflow run id, runs:/<run id>, best, best:<model> or "
         "pretrained (the bundled model)")


@dataclass
class Resolved:
    path: Path  # local checkpoint file
    spec: str  # what the user wrote
    run_id: str | None = None  # MLflow run, when the spec went through MLflow
    how: str = "path"  # path | run folder | mlflow tag | mlflow artifact | best

    @property
    def is_onnx(self) -> bool:
        return self.path.suffix.lower() == ".onnx"

    def describe(self) -> str:
        if self.how == "path":
            return str(self.path)
        return f"{self.spec} -> {self.path} ({self.how}{', run ' + self.run_id if self.run_id else ''})"


def _checkpoint_of_run(store: RunStore, run_id: str, spec: str) -> Resolved:
    """The run's tested checkpoint: the tagged file when it is on this machine, else its uploaded copy."""
    tagged = store.best_checkpoint_tag(run_id)
    if tagged and Path(tagged).is_file():
        return Resolved(Path(tagged), spec, run_id, "mlflow tag")
    wanted = Path(tagged).name if tagged else None
    if wanted and (store.download_dir / run_id / wanted).is_file():  # downloaded before
        return Resolved(store.download_dir / run_id / wanted, spec, run_id, "mlflow artifact")
    files = store.checkpoint_files(run_id)
    if not files:
        raise UserError(f"run {run_id}: its tested checkpoint is not on this machine and the run has no "
                        "uploaded checkpoint")
    chosen = next((f for f in files if wanted and Path(f).name == wanted), None) or \
        next((f for f in sorted(files) if Path(f).name != LAST_CHECKPOINT), sorted(files)[0])
    return Resolved(store.fetch(run_id, chosen), spec, run_id, "mlflow artifact")


def _artifact(store: RunStore, run_id: str, artifact: str, spec: str) -> Resolved:
    store.get_run(run_id)  # a clear message for an unknown run
    local = store.fetch(run_id, artifact)
    if not local.is_file():
        raise UserError(f"run {run_id}: artifact {artifact!r} is not a file; give e.g. "
                        f"runs:/{run_id}/checkpoints/<name>.ckpt")
    return Resolved(local, spec, run_id, "mlflow artifact")


def _run_folder(path: Path, spec: str, store: RunStore) -> Resolved:
    folder = RunFolder(path)
    info = folder.read_info()
    run_id = info.mlflow_run_id if info else None
    ckpts = folder.best_checkpoints()
    if run_id:
        try:
            tagged = store.best_checkpoint_tag(run_id)
            if tagged and Path(tagged).is_file():
                return Resolved(Path(tagged), spec, run_id, "run folder")
        except UserError:
            pass  # store moved or gone: the folder's own checkpoints still tell
    if len(ckpts) == 1:
        return Resolved(ckpts[0], spec, run_id, "run folder")
    if not ckpts:
        raise UserError(f"{path}: a folder with no checkpoints/*.ckpt; {_HINT}")
    raise UserError(f"{path}: several checkpoints ({', '.join(p.name for p in ckpts)}); name one of them")


def resolve_checkpoint(spec: str, tracking_uri: str, experiment_name: str = "fer",
                       download_dir: str | Path = ".cache/fer/checkpoints", store: RunStore | None = None) -> Resolved:
    """One ckpt spec -> Resolved (an existing, readable zip file: what torch.save writes; or an exported .onnx
    model). Raises UserError with what was tried. Loading (fer.models.loading, fer.runtime) checks the rest."""
    resolved = _resolve(spec, tracking_uri, experiment_name, download_dir, store)
    if resolved.is_onnx:
        return resolved
    if not zipfile.is_zipfile(resolved.path):
        raise UserError(f"{resolved.path} is not a PyTorch checkpoint (expected a .ckpt written by train.py)")
    return resolved


def _resolve(spec: str, tracking_uri: str, experiment_name: str, download_dir: str | Path,
             store: RunStore | None) -> Resolved:
    spec = str(spec).strip()
    if not spec:
        raise UserError(f"ckpt is empty; {_HINT}")
    store = store or RunStore(tracking_uri, experiment_name, Path(download_dir).expanduser())
    if spec == PRETRAINED:
        return Resolved(bundled_model_path(), spec, how="bundled model")
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
        run_id = store.best_run_id(spec, model or None)
        resolved = _checkpoint_of_run(store, run_id, spec)
        resolved.how = f"best {SELECTION_METRIC}, {resolved.how}"
        return resolved
    if spec.startswith("runs:/"):
        run_id, _, artifact = spec[len("runs:/"):].strip("/").partition("/")
        if not run_id:
            raise UserError(f"ckpt={spec}: no run id after runs:/")
        if artifact:  # runs:/<id>/checkpoints/epoch_003.ckpt: that artifact
            return _artifact(store, run_id, artifact, spec)
        return _checkpoint_of_run(store, run_id, spec)
    if _RUN_ID.fullmatch(spec):
        return _checkpoint_of_run(store, spec, spec)
    raise UserError(f"checkpoint not found: {path}; {_HINT}")


def resolve_all(specs: list[str], tracking_uri: str, experiment_name: str, download_dir: str | Path) -> list[Resolved]:
    store = RunStore(tracking_uri, experiment_name, Path(download_dir).expanduser())
    if not specs:
        raise UserError(f"no checkpoint given: ckpt=...; {_HINT}")
    return [resolve_checkpoint(s, tracking_uri, experiment_name, download_dir, store=store) for s in specs]
