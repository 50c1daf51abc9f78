"""Write a classifier as an ONNX file: uint8 [N,48,48] faces in, calibrated probabilities [N,7] out, with the
scaling to [0,1], the model's own normalisation (and ten-crop, for crop models), the calibration temperature and,
optionally, the mean over test-time views (fer.tta) inside the graph; the batch size is dynamic."""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from fer.models.base import FERClassifier, Probabilities
from fer.runtime.atomic import atomic_path
from fer.runtime.metadata import ModelInfo
from fer.tta import NAMED_VIEWS, tta_proba

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME = "faces", "probabilities"


class FacesToProbabilities(nn.Module):
    """The exported computation: uint8 faces [N,48,48] -> calibrated probabilities [N,7], averaged over the named
    test-time views (the same views as predict.py's tta; no mirror view for a model that already averages it)."""

    def __init__(self, model: FERClassifier, views: str = "none"):
        super().__init__()
        self.probabilities = Probabilities(model)
        flip_shift = NAMED_VIEWS[views]
        self.views = None if flip_shift is None else (flip_shift[0] and not model.mirror_invariant, flip_shift[1])

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        x = faces.to(torch.float32).div(255.0).unsqueeze(1)
        return self.probabilities(x) if self.views is None else tta_proba(self.probabilities, x, *self.views)


def export_onnx(model: FERClassifier, path: Path, info: ModelInfo, opset: int = 18) -> Path:
    """Write `model` (fp32, CPU, eval) to `path` with `info` as its metadata. `path` is written in place: the
    caller stages it (fer.runtime.atomic) and checks it before it replaces anything."""
    import onnx

    model = model.cpu().float().eval()
    model.__dict__.pop("_compiled_net", None)  # the plain network is what gets traced
    wrapper = FacesToProbabilities(model, info.views).eval()
    example = torch.zeros(2, info.input_size, info.input_size, dtype=torch.uint8)
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        program = torch.onnx.export(wrapper, (example,), dynamo=True, opset_version=opset,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes={"faces": {0: batch}}, verbose=False)
        raw = Path(tmp) / "model.onnx"
        program.save(str(raw))
        proto = onnx.load(str(raw))
    merge_metadata(proto, info.to_props())
    proto.doc_string = f"fer {info.model}: uint8 faces [N,48,48] -> calibrated probabilities [N,7]"
    onnx.save(proto, str(path))
    return path


def stamp_metadata(path: Path, props: dict[str, str]) -> Path:
    """Add (or replace) metadata entries of an ONNX file, e.g. the accuracy measured on the written file."""
    import onnx

    proto = onnx.load(str(path))
    merge_metadata(proto, props)
    return save(proto, path)


def merge_metadata(proto, props: dict[str, str]) -> None:
    """Set `props` in a loaded ONNX model's metadata, keeping its other entries (one entry per key)."""
    kept = {p.key: p.value for p in proto.metadata_props}
    kept.update(props)
    del proto.metadata_props[:]
    for key, value in kept.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def save(proto, path: Path) -> Path:
    import onnx

    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    return path
