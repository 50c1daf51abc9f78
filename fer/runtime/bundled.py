"""The model that ships inside the package (fer/runtime/models/): what `ExpressionModel()` and `fer-classify` use
when no model is named, and what predict.py calls ckpt=pretrained. How it was trained and how well it does:
docs/MODEL_CARD.md. Package data, read from the installed package: no download, works offline."""

from __future__ import annotations

from pathlib import Path

from fer.errors import UserError

PRETRAINED = "pretrained"  # the name users give it: ExpressionModel("pretrained"), ckpt=pretrained
MODELS_DIR = Path(__file__).resolve().parent / "models"
BUNDLED_FILE = "fer2013_expression.onnx"


def bundled_model_path() -> Path:
    """The bundled ONNX model; a clear error if this installation lacks it (e.g. a checkout without the file)."""
    path = MODELS_DIR / BUNDLED_FILE
    if not path.is_file():
        raise UserError(f"the bundled model {path} is missing from this installation; reinstall fer-toolkit, or "
                        "name a model file exported with: python export.py ckpt=<checkpoint>")
    return path


def model_path(spec: str | Path | None) -> Path:
    """A model argument -> its file: None or "pretrained" is the bundled model, anything else a path."""
    if spec is None or str(spec) == PRETRAINED:
        return bundled_model_path()
    return Path(spec).expanduser()
