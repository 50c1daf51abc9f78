"""The MLflow model every run logs, for every registered model (the SVM too): one pyfunc around the best checkpoint.

Input: uint8 images [N,48,48], pixels 0-255, as a user has them (fer.tracking.served_input checks them). Output: a
DataFrame, one row per image, one column of calibrated probabilities per class (fer.classes.CLASS_NAMES order) and
`label`, the most probable class name. The artifact is the checkpoint file itself, loaded with
fer.models.loading.load_model, so the served model predicts exactly what predict.py does with that file.
docs/SERVING.md is the user's side of this.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from fer.classes import CLASS_NAMES
from fer.data.augment import to_unit_float
from fer.tracking.served_input import as_images

CHECKPOINT_ARTIFACT = "checkpoint"  # the key of the checkpoint file in the model's artifacts
LABEL_COLUMN = "label"
_BATCH = 256  # images per forward pass: bounds the memory a large request takes


class ServedFER(mlflow.pyfunc.PythonModel):
    """Carries no state of its own when pickled: everything comes from the checkpoint artifact in load_context."""

    def load_context(self, context) -> None:
        self.model = load_checkpoint(context.artifacts[CHECKPOINT_ARTIFACT])

    # np.ndarray is a hint MLflow takes without inferring a schema from it (no validation of its own, which
    # as_images does, nested lists included); with no hint at all MLflow warns on every model it logs
    def predict(self, context, model_input: np.ndarray, params=None) -> pd.DataFrame:
        return probability_table(self.model, as_images(model_input))


def load_checkpoint(path: str | Path):
    """The checkpoint's model on the CPU in eval mode, never compiled (load_model rebuilds it for inference)."""
    from fer.models.loading import load_model

    return load_model(path, map_location="cpu")


def probability_table(model, images: np.ndarray) -> pd.DataFrame:
    """One row per uint8 [48,48] image: the calibrated probabilities the model gives for images / 255, and the label."""
    with torch.inference_mode():
        chunks = [model.predict_proba(to_unit_float(torch.from_numpy(images[i:i + _BATCH]))).float().numpy()
                  for i in range(0, len(images), _BATCH)]
    probs = np.concatenate(chunks) if chunks else np.zeros((0, len(CLASS_NAMES)), dtype=np.float32)
    table = pd.DataFrame(probs.astype(np.float64), columns=list(CLASS_NAMES))  # float64: exact, and JSON-safe
    table[LABEL_COLUMN] = np.asarray(CLASS_NAMES, dtype=object)[probs.argmax(1)]
    return table


INPUT_CONTRACT = "uint8 grayscale faces [N,48,48] (or one [48,48]), pixels 0-255"  # in the model's metadata


def signature():
    """Outputs only: the columns of the answer. The input is declared by the input example and INPUT_CONTRACT, not
    by an input schema, because MLflow enforces an input schema before predict() sees the data: strictly for Python
    callers (an int64 array of pixels is refused) and lossily over JSON (`mlflow models serve` casts the payload to
    the schema's dtype, and np.array(0.5, dtype=uint8) is 0: an image in [0,1] would be answered as a black one,
    with a 200). Without one, predict() gets the data as sent and as_images checks all of it."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    return ModelSignature(
        inputs=None,
        outputs=Schema([*(ColSpec("double", name) for name in CLASS_NAMES), ColSpec("string", LABEL_COLUMN)]))


def input_example() -> np.ndarray:
    """Two synthetic faces (happy, surprise), drawn the same every time: what a request looks like."""
    from fer.data.synthetic import render_faces

    return render_faces(np.array([CLASS_NAMES.index("happy"), CLASS_NAMES.index("surprise")]), seed=0)
