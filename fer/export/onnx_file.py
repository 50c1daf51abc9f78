"""Write a classifier as an ONNX file: uint8 [N,48,48] faces in, calibrated probabilities [N,7] out, with the
scaling to [0,1], the model's own normalisation (and ten-crop, for crop models) and the calibration temperature
inside the graph; the batch size is dynamic."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from fer.models.base import FERClassifier, Probabilities
from fer.runtime.metadata import ModelInfo

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME = "faces", "probabilities"


class FacesToProbabilities(nn.Module):
    """The exported computation: uint8 faces [N,48,48] -> calibrated probabilities [N,7]."""

    def __init__(self, model: FERClassifier):
        super().__init__()
        self.probabilities = Probabilities(model)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.probabilities(faces.to(torch.float32).div(255.0).unsqueeze(1))


def export_onnx(model: FERClassifier, path: Path, info: ModelInfo, opset: int = 18) -> Path:
    """Write `model` (fp32, CPU, eval) to `path` with `info` as its metadata (a temporary file renamed: never
    half-written)."""
    import onnx

    model = model.cpu().float().eval()
    model.__dict__.pop("_compiled_net", None)  # the plain network is what gets traced
    wrapper = FacesToProbabilities(model).eval()
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
    for key, value in info.to_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = f"fer {info.model}: uint8 faces [N,48,48] -> calibrated probabilities [N,7]"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        onnx.save(proto, tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        Path(tmp_path).unlink(missing_ok=True)
        raise
    return path
