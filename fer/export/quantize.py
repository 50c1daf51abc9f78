"""The smaller forms of an exported ONNX file: int8 (onnxruntime's static quantisation, QDQ, 7-bit weights per
channel, its activation ranges calibrated on training images; the probabilities computed in fp32) and fp16 weights
(half the file, fp32 compute)."""

from __future__ import annotations

import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SMALLER_FORMS = ("int8", "fp16")
# weights smaller than this stay fp32: the Cast each one needs would cost more than the bytes it saves
_FP16_MIN_ELEMENTS = 1024


def write_smaller(form: str, fp32: Path, out: Path, calibration_images: np.ndarray) -> Path:
    """Write the `form` version of the fp32 model at `fp32` to `out`; its metadata is kept, marked quantized."""
    if form == "int8":
        return quantize_int8(fp32, out, calibration_images)
    if form == "fp16":
        return weights_fp16(fp32, out)
    raise ValueError(f"no smaller form {form!r}: expected one of {SMALLER_FORMS}")


def quantize_int8(fp32: Path, out: Path, calibration_images: np.ndarray, batch_size: int = 64) -> Path:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"faces": np.ascontiguousarray(calibration_images[s:s + batch_size])}
                                 for s in range(0, len(calibration_images), batch_size)])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantized = Path(tmp) / "int8.onnx"
        # reduce_range: 7-bit weights. CPUs without VNNI (AVX2 only) multiply uint8 by int8 with an instruction that
        # saturates 16-bit pair sums; with 8-bit weights a cnn_deep gave the fp32 class on 63% of faces there (and
        # 94% on a VNNI CPU). A shipped file must be right on every CPU it may meet.
        with _quantizer_notes_dropped():
            quantize_static(str(prepared), str(quantized), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, nodes_to_exclude=probability_tail(onnx.load(str(prepared))))
        return _save_marked(onnx.load(str(quantized)), fp32, "int8", out)


def probability_tail(model) -> list[str]:
    """The names of the Softmax nodes and of every node fed by them (the views' average): left in fp32. Quantized,
    the probabilities came in steps of about 0.004 and a row of the six-view graph summed to 0.98-1.02; in fp32
    they cost next to nothing."""
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    seen, todo = {}, [n for n in model.graph.node if n.op_type == "Softmax"]
    while todo:  # by identity: a node may have no name, and the walk must still go on past it
        node = todo.pop()
        if id(node) not in seen:
            seen[id(node)] = node.name
            todo += [c for out in node.output for c in consumers.get(out, [])]
    return sorted(seen.values())


@contextmanager
def _quantizer_notes_dropped():
    """onnxruntime's quantiser writes a note per tensor on the root logger ("Created a copy of bias input", "Axis 1
    is out-of-range" for a batch norm's 1-D weight: it keeps those per tensor): dozens of lines nobody can act on.
    Dropped while it runs, its errors kept; the root logger is left as it was."""
    def keep(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or "onnxruntime" not in record.pathname

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def weights_fp16(fp32: Path, out: Path) -> Path:
    """fp16 storage of the float weights, each read back through a Cast to fp32: the graph computes in fp32 as
    before (CPUs have few fp16 kernels; onnxruntime folds the Casts once, when the session opens)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    proto = onnx.load(str(fp32))
    graph, casts = proto.graph, []
    for i, init in enumerate(graph.initializer):
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < _FP16_MIN_ELEMENTS:
            continue
        name, weights = init.name, numpy_helper.to_array(init)
        if np.abs(weights).max() > np.finfo(np.float16).max:  # would become inf: keep it exact instead
            continue
        half = numpy_helper.from_array(weights.astype(np.float16), f"{name}__fp16")
        graph.initializer[i].CopyFrom(half)
        casts.append(helper.make_node("Cast", [half.name], [name], to=TensorProto.FLOAT, name=f"{name}__to_fp32"))
    nodes = [*casts, *graph.node]  # the Casts before every node that reads them: still in topological order
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(proto)
    return _save_marked(proto, fp32, "fp16", out)


def _save_marked(proto, fp32: Path, form: str, out: Path) -> Path:
    import onnx

    from fer.export.onnx_file import merge_metadata, save
    from fer.runtime.metadata import QUANTIZED

    source = {p.key: p.value for p in onnx.load(str(fp32), load_external_data=False).metadata_props}
    merge_metadata(proto, {**source, QUANTIZED: form})
    return save(proto, out)
