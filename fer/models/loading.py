"""Load any fer checkpoint (any model family) for inference, with clear errors for bad files."""

from __future__ import annotations

import importlib
import zipfile
from pathlib import Path

import torch

from fer.cli import UserError
from fer.models.base import FERClassifier


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not a PyTorch checkpoint (expected a .ckpt written by train.py)")
    try:
        # weights_only: checkpoints hold only tensors and plain types (the SVM pickles its pipeline to bytes)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise UserError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc


def model_class(checkpoint: dict, path: str | Path = "") -> type[FERClassifier]:
    target = checkpoint.get("fer_model_class")
    if not target or "state_dict" not in checkpoint:
        raise UserError(f"{path}: not a fer model checkpoint (no model class recorded); use a .ckpt from train.py")
    module, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"{path}: model class {target} not found in this version of fer") from exc
    return cls


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> FERClassifier:
    """The model in eval mode, rebuilt from its own saved hyper-parameters."""
    checkpoint = read_checkpoint(path)
    cls = model_class(checkpoint, path)
    model = cls(**cls.inference_kwargs(checkpoint.get("hyper_parameters", {})))
    model.on_load_checkpoint(checkpoint)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not fit {cls.__name__} ({str(exc).splitlines()[0]})") from exc
    model = model.to(map_location).eval()
    # which images were its val split (FERDataModule.state_dict; absent in checkpoints from before it was recorded)
    model.val_split_record = checkpoint.get("FERDataModule", {}).get("val_split")
    return model
