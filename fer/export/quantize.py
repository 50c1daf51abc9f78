"""int8 ONNX: onnxruntime's static quantisation (QDQ, 7-bit weights per channel), its activation ranges calibrated on
training images."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def quantize_int8(fp32: Path, out: Path, calibration_images: np.ndarray, batch_size: int = 64) -> Path:
    """Write the int8 version of the fp32 model at `fp32` to `out`; its metadata is kept, marked quantized."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from fer.export.onnx_file import merge_metadata, save
    from fer.runtime.metadata import QUANTIZED

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
        quantize_static(str(prepared), str(quantized), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        proto = onnx.load(str(quantized))
        source = {p.key: p.value for p in onnx.load(str(fp32), load_external_data=False).metadata_props}
        merge_metadata(proto, {**source, QUANTIZED: "int8"})
        return save(proto, out)
