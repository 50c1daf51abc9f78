"""What an ONNX model exported by fer says about itself (ONNX metadata_props): the one place these keys are named,
for the exporter (fer.export) that writes them and the runtime that reads them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from fer.classes import CLASS_NAMES, IMAGE_SIZE
from fer.errors import UserError

FORMAT = "fer.format"
FORMAT_VERSION = "1"
MODEL = "fer.model"
CLASS_NAMES_KEY = "fer.class_names"
INPUT = "fer.input"
INPUT_SIZE = "fer.input_size"
OUTPUT = "fer.output"
TEMPERATURE = "fer.temperature"
SOURCE_CHECKPOINT = "fer.source_checkpoint"
MLFLOW_RUN_ID = "fer.mlflow_run_id"
VAL_SPLIT = "fer.val_split"
VAL_ACC = "fer.val_acc"
QUANTIZED = "fer.quantized"
EXPORTED = "fer.exported"
VIEWS = "fer.views"  # test-time views averaged inside the graph (fer.tta.NAMED_VIEWS): none | flip | flip_shifts
DATA = "fer.data"  # the data set it was trained on (synthetic: drawn faces only)
# provenance, for the model card and for people who find the file on its own
RECIPE = "fer.recipe"
COMMIT = "fer.commit"
DEVICE = "fer.device"
TEST_SPLIT = "fer.test_split"
TEST_ACC = "fer.test_acc"
KNOWN_VIEWS = ("none", "flip", "flip_shifts")  # as fer.tta.NAMED_VIEWS, which the exporter bakes into the graph
PROVENANCE = (RECIPE, COMMIT, DEVICE, TEST_SPLIT, TEST_ACC)
SYNTHETIC = "synthetic"
SYNTHETIC_WARNING = ("this model was trained on the synthetic drawn faces only (the default data): its predictions "
                     "on real faces mean nothing. Use the bundled FER2013 model (no model argument, or "
                     "ckpt=pretrained), or train on real data: python train.py data=fer2013 data.root=PATH")
_REQUIRED = (FORMAT, MODEL, CLASS_NAMES_KEY, INPUT_SIZE)
INPUT_TEXT = f"uint8 grayscale faces [N,{IMAGE_SIZE},{IMAGE_SIZE}], 0-255"
OUTPUT_TEXT = "calibrated class probabilities [N,7] (float32), classes in fer.class_names order"


@dataclass
class ModelInfo:
    model: str
    class_names: tuple[str, ...]
    input_size: int
    temperature: float = 1.0
    source_checkpoint: str = ""
    mlflow_run_id: str | None = None
    val_split: dict | None = None
    val_acc: float | None = None
    quantized: str = "none"
    exported: str = ""
    views: str = "none"
    data: str = ""
    extra: dict[str, str] = field(default_factory=dict)  # PROVENANCE keys and anything else worth keeping

    @property
    def synthetic(self) -> bool:
        return self.data == SYNTHETIC

    def to_props(self) -> dict[str, str]:
        props = {FORMAT: FORMAT_VERSION, MODEL: self.model, CLASS_NAMES_KEY: json.dumps(list(self.class_names)),
                 INPUT: INPUT_TEXT, INPUT_SIZE: str(self.input_size), OUTPUT: OUTPUT_TEXT,
                 TEMPERATURE: repr(float(self.temperature)), SOURCE_CHECKPOINT: self.source_checkpoint,
                 QUANTIZED: self.quantized, EXPORTED: self.exported, VIEWS: self.views}
        if self.data:
            props[DATA] = self.data
        if self.mlflow_run_id:
            props[MLFLOW_RUN_ID] = self.mlflow_run_id
        if self.val_split is not None:
            props[VAL_SPLIT] = json.dumps(self.val_split)
        if self.val_acc is not None:
            props[VAL_ACC] = repr(float(self.val_acc))
        return {**props, **self.extra}


def read_info(props: dict[str, str], where: str) -> ModelInfo:
    """ModelInfo from an ONNX model's metadata; one line naming the file when it is not a model fer exported."""
    missing = [k for k in _REQUIRED if k not in props]
    if missing:
        raise UserError(f"{where}: not an ONNX model exported by fer (no {missing[0]} in its metadata); export one "
                        "with: python export.py ckpt=<checkpoint>")
    if props[FORMAT] != FORMAT_VERSION:
        raise UserError(f"{where}: fer ONNX format {props[FORMAT]!r}, this fer reads {FORMAT_VERSION!r}")
    try:
        names = tuple(json.loads(props[CLASS_NAMES_KEY]))
        info = ModelInfo(model=props[MODEL], class_names=names, input_size=int(props[INPUT_SIZE]),
                         temperature=float(props.get(TEMPERATURE, 1.0)),
                         source_checkpoint=props.get(SOURCE_CHECKPOINT, ""),
                         mlflow_run_id=props.get(MLFLOW_RUN_ID),
                         val_split=json.loads(props[VAL_SPLIT]) if VAL_SPLIT in props else None,
                         val_acc=float(props[VAL_ACC]) if VAL_ACC in props else None,
                         quantized=props.get(QUANTIZED, "none"), exported=props.get(EXPORTED, ""),
                         views=props.get(VIEWS, "none"), data=props.get(DATA, ""),
                         extra={k: props[k] for k in PROVENANCE if k in props})
    except (ValueError, TypeError) as exc:
        raise UserError(f"{where}: damaged fer metadata ({exc})") from exc
    if info.views not in KNOWN_VIEWS:
        raise UserError(f"{where}: fer.views={info.views!r}, this fer knows {', '.join(KNOWN_VIEWS)}")
    if names != CLASS_NAMES:
        raise UserError(f"{where}: classes {list(names)}, this fer knows {list(CLASS_NAMES)}")
    return info

