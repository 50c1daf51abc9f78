"""Load any fer checkpoint (any model family) for inference, with clear errors for bad files.

A checkpoint names its model by registered name (fer.models.registry). Checkpoints written before the registry
(fer 0.1, up to 2026-11-25) name a class path instead, "fer.models.<name>.<Class>"; those are accepted when
<name> is a registered model whose class is <Class>. Nothing else is imported on a checkpoint's say-so.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import torch

from fer.errors import UserError
from fer.models.base import CHECKPOINT_MODEL_KEY, FERClassifier
from fer.models.registry import get_model_class, list_models

_LEGACY_KEY = "fer_model_class"
_LEGACY_PATH = re.compile(r"fer\.models\.([a-z][a-z0-9_]*)\.([A-Za-z_]\w*)")


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not a PyTorch checkpoint (expected a .ckpt written by train.py)")
    try:
        # weights_only: checkpoints hold only tensors and plain types, so loading one cannot run code
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise UserError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc


def model_class(checkpoint: dict, path: str | Path = "") -> type[FERClassifier]:
    if "state_dict" not in checkpoint or not (checkpoint.get(CHECKPOINT_MODEL_KEY) or checkpoint.get(_LEGACY_KEY)):
        raise UserError(f"{path}: not a fer model checkpoint (no model name recorded); use a .ckpt from train.py")
    name = checkpoint.get(CHECKPOINT_MODEL_KEY)
    if name is not None:
        cls = get_model_class(name)
        if cls is None:
            raise UserError(f"{path}: model {str(name)[:80]!r} is not a registered model of this fer "
                            f"(registered: {', '.join(list_models())})")
        return cls
    legacy = str(checkpoint[_LEGACY_KEY])
    match = _LEGACY_PATH.fullmatch(legacy)
    cls = get_model_class(match.group(1)) if match else None
    if cls is None or cls.__qualname__ != match.group(2):
        raise UserError(f"{path}: model class {legacy[:80]} is not a model of this fer "
                        f"(registered: {', '.join(list_models())})")
    return cls


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> FERClassifier:
    """The model in eval mode, rebuilt from its own saved hyper-parameters."""
    checkpoint = read_checkpoint(path)
    cls = model_class(checkpoint, path)
    model = cls(**cls.inference_kwargs(checkpoint.get("hyper_parameters", {})))
    try:
        model.on_load_checkpoint(checkpoint)
    except UserError as exc:  # e.g. a model-specific part that is refused: say which file
        raise UserError(f"{path}: {exc}") from exc
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not fit {cls.__name__} ({str(exc).splitlines()[0]})") from exc
    model = model.to(map_location).eval()
    # which images were its val split (FERDataModule.state_dict; absent in checkpoints from before it was recorded)
    model.val_split_record = checkpoint.get("FERDataModule", {}).get("val_split")
    return model
