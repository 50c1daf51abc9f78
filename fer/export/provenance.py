"""What an exported file says about where it came from (fer.runtime.metadata): the model, its calibration and val
split, the data it was trained on, and, when the checkpoint sits in a train.py run folder or an MLflow run, the
recipe, the commit and the device it was trained with. Read from the run; "unknown" where the run does not say."""

from __future__ import annotations

import logging
from pathlib import Path

from fer.classes import CLASS_NAMES, IMAGE_SIZE
from fer.runtime.metadata import COMMIT, DEVICE, RECIPE, ModelInfo

log = logging.getLogger(__name__)


def _run_folder(checkpoint: Path) -> Path | None:
    from fer.tracking.run_folder import CHECKPOINTS

    return checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINTS else None


def _run_of(resolved) -> str | None:
    """The MLflow run a checkpoint belongs to: the one it was resolved through, or its run folder's."""
    from fer.tracking.run_folder import RunFolder

    if resolved.run_id:
        return resolved.run_id
    folder = _run_folder(resolved.path)
    info = RunFolder(folder).read_info() if folder else None
    return info.mlflow_run_id if info else None


def _recipe(folder: Path | None) -> str:
    """experiment=<recipe> of the run (Hydra's record of its config choices), else its model=."""
    from omegaconf import OmegaConf

    from fer.tracking.run_folder import HYDRA_RECORD

    if folder is None or not (folder / HYDRA_RECORD).is_file():
        return "unknown"
    choices = OmegaConf.load(folder / HYDRA_RECORD).hydra.runtime.choices
    experiment, model = choices.get("experiment"), choices.get("model")
    return f"experiment={experiment}" if experiment else f"model={model}"


def _run_params(run_id: str | None, tracking_uri: str) -> dict[str, str]:
    if not run_id:
        return {}
    from fer.tracking.record import PARAM_COMMIT, PARAM_DEVICE, RunRecord

    try:
        params = RunRecord.for_run(tracking_uri, run_id).params()
    except Exception as exc:  # noqa: BLE001 - the store may be elsewhere: the file is still worth writing
        log.warning("MLflow run %s not readable (%s): commit and device unknown", run_id, str(exc).splitlines()[0])
        return {}
    return {COMMIT: params.get(PARAM_COMMIT, "unknown"), DEVICE: params.get(PARAM_DEVICE, "unknown")}


def model_info(model, resolved, views: str, tracking_uri: str) -> ModelInfo:
    from fer.models.base import CALIBRATION_KEY

    record = model.val_split_record
    run_id = _run_of(resolved)
    extra = {RECIPE: _recipe(_run_folder(resolved.path)), COMMIT: "unknown", DEVICE: "unknown",
             **_run_params(run_id, tracking_uri)}
    return ModelInfo(model=model.model_name, class_names=CLASS_NAMES, input_size=IMAGE_SIZE,
                     temperature=float(getattr(model, CALIBRATION_KEY)), source_checkpoint=str(resolved.path),
                     mlflow_run_id=run_id, val_split=record, views=views,
                     data=(record or {}).get("data", ""), extra=extra)
