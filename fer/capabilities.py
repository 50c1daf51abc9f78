"""What a flow may ask of a model, declared once: flows read these attributes, they never probe for them by name.

`Predictor` is answered by everything predict.py, export.py, calibration and the ensembles handle: a trained model
(fer.models.base.FERClassifier), an exported model in a torch ensemble (fer.predict.ensemble.OnnxMember), an
exported model itself (fer.runtime.ExpressionModel, torch-free: it declares the attributes, it needs no import of
this module), and an ensemble (fer.predict.ensemble.Ensemble). `Trainable` adds what the training and export flows
ask of a trained model; FERClassifier declares every answer with its default, so a new model states only where it
differs (as the SVM does)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Predictor(Protocol):
    # its predictions already average each image with its mirror (ten-crop models; exports with the flip view
    # baked in): a mirror view in test-time augmentation would give the same probabilities at twice the cost
    mirror_invariant: bool
    # the val split it was selected on ({"digest", "n", "data", ...}, fer.data.splits); None when unknown
    val_split_record: dict | None

    def predict_proba(self, x: Any) -> Any:
        """Calibrated class probabilities [B,7] for a batch in the predictor's own input format."""

    def tta_proba(self, x: Any, flip: bool = True, shift: int = 0) -> Any:
        """The mean of predict_proba over test-time views (fer.tta), skipping views that add nothing."""


@runtime_checkable
class Trainable(Predictor, Protocol):
    train_augmentation: bool  # the DataModule augments its training batches (False: it sees them as they are)
    onnx_exportable: bool  # export.py can write it as ONNX ...
    onnx_refusal: str  # ... and, when it cannot, why (one line for the user)
