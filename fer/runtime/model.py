"""An exported expression model (ONNX, from `python export.py`) on ONNX Runtime: numpy in, probabilities out.

    from fer.runtime import ExpressionModel
    model = ExpressionModel("cnn_deep.onnx")
    probs = model.predict_proba(faces)            # faces: uint8 [N,48,48], one 48x48 face, or a list of images
    labels = model.predict(faces)                 # ["happy", ...]
    model.classify_files(["a.jpg", "b.png"])      # one Prediction per file (any size, colour or gray)
    model.find_faces("group.jpg")                 # faces found in a photo, each with its box and prediction

Imports numpy, OpenCV and onnxruntime only (no torch, Lightning or Hydra): starting it takes a fraction of a second.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from fer.data.decode import DEFAULT_MAX_PIXELS, decode_bytes, to_gray48
from fer.errors import DataError, UserError
from fer.runtime.metadata import ModelInfo, read_info
from fer.runtime.tta import tta_proba


@dataclass
class Prediction:
    """One image's prediction: its name, the top class, and every class's probability."""

    name: str
    label: str
    probabilities: dict[str, float]


@dataclass
class Face:
    """A face found in a photo: its box (x, y, w, h in photo pixels), its 48x48 crop and its prediction."""

    box: tuple[int, int, int, int]
    crop: np.ndarray
    label: str
    probabilities: dict[str, float]


class ExpressionModel:
    """An ONNX expression model exported by fer, with its metadata checked on loading."""

    def __init__(self, path: str | Path, threads: int | None = None, providers: Sequence[str] | None = None):
        import onnxruntime as ort

        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise UserError(f"model not found: {self.path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or os.cpu_count() or 1)
        options.log_severity_level = 3  # warnings about the graph are for the exporter, not for the user
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own kinds for a foreign file
            raise UserError(f"{self.path}: not a readable ONNX model ({str(exc).splitlines()[0][:200]})") from exc
        self.info: ModelInfo = read_info(self.session.get_modelmeta().custom_metadata_map, str(self.path))
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(uint8)" or list(inputs[0].shape[1:]) != [
                self.info.input_size, self.info.input_size]:
            raise UserError(f"{self.path}: its input is {[(i.name, i.type, i.shape) for i in inputs]}, not one "
                            f"uint8 [N,{self.info.input_size},{self.info.input_size}] batch as its metadata says")
        self._input = inputs[0].name
        self.class_names: tuple[str, ...] = self.info.class_names
        self.val_split_record = self.info.val_split  # what ensembles check before fitting weights on val

    def __repr__(self) -> str:
        return f"ExpressionModel({str(self.path)!r}, model={self.info.model!r})"

    # ---- arrays ------------------------------------------------------------------------------------------
    def faces_array(self, faces: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """uint8 [N,S,S] from: such a batch, one face (gray [H,W] or colour [H,W,3|4], as OpenCV reads it), or a
        list / [N,H,W] / [N,H,W,C] batch of images of any size and colour (each converted to SxS grayscale as the
        training data was)."""
        s = self.info.input_size
        if isinstance(faces, np.ndarray):
            if faces.dtype != np.uint8:
                raise DataError(f"expected uint8 images (0-255), got {faces.dtype}; convert them first, e.g. "
                                "(x * 255).round().astype(np.uint8) for floats in [0, 1]")
            # one image: [H,W], or [H,W,3|4] (a batch of 3- or 4-pixel-wide grayscale images is no use to anyone)
            if faces.ndim == 2 or (faces.ndim == 3 and faces.shape[2] in (3, 4)):
                faces = faces[None]
            if faces.ndim == 3 and faces.shape[1:] == (s, s):
                return np.ascontiguousarray(faces)
            if faces.ndim not in (3, 4):
                raise DataError(f"expected images [N,H,W] or [N,H,W,C], got an array of shape {faces.shape}")
        out = [to_gray48(np.asarray(f))[0] for f in faces]
        if out and out[0].shape != (s, s):  # a model for other than 48x48 input: resize what to_gray48 gives
            import cv2

            out = [cv2.resize(f, (s, s), interpolation=cv2.INTER_AREA) for f in out]
        return np.stack(out) if out else np.empty((0, s, s), np.uint8)

    def predict_proba(self, faces: np.ndarray | Sequence[np.ndarray], batch_size: int = 256, tta: bool = False,
                      tta_shift: int = 2) -> np.ndarray:
        """Calibrated class probabilities [N,7] float32. tta: the mean over the image and its mirror, and with
        tta_shift > 0 four copies moved by that many pixels (the views of predict.py tta=true tta_shifts=true)."""
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        x = self.faces_array(faces)
        out = np.empty((len(x), len(self.class_names)), np.float32)
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size]
            out[start:start + len(batch)] = tta_proba(self._run, batch, True, tta_shift) if tta else self._run(batch)
        return out

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input: np.ascontiguousarray(batch)})[0]

    __call__ = predict_proba

    def predict(self, faces: np.ndarray | Sequence[np.ndarray], **kwargs) -> list[str]:
        """The most probable class name of each face."""
        return [self.class_names[i] for i in self.predict_proba(faces, **kwargs).argmax(axis=1)]

    # ---- files and photos --------------------------------------------------------------------------------
    def classify_files(self, paths: Iterable[str | Path], max_pixels: int = DEFAULT_MAX_PIXELS,
                       **kwargs) -> list[Prediction]:
        """One Prediction per image file (decoded, converted to 48x48 grayscale); an unreadable file raises
        DataError naming it."""
        paths = [Path(p) for p in paths]
        images = [_read(p, max_pixels) for p in paths]
        probs = self.predict_proba(images, **kwargs)
        return [self._prediction(str(p), pr) for p, pr in zip(paths, probs)]

    def find_faces(self, photo: str | Path | np.ndarray, detector=None, margin: float = 0.1,
                   max_pixels: int = DEFAULT_MAX_PIXELS, **kwargs) -> list[Face]:
        """The faces in a photo (a path or a decoded image), left to right, classified in one batch."""
        from fer.data.faces import FaceDetector, crop_face, to_gray_u8

        img = _read(Path(photo), max_pixels) if isinstance(photo, (str, Path)) else np.asarray(photo)
        detector = detector or FaceDetector()
        boxes = detector.detect(to_gray_u8(img))
        if not boxes:
            return []
        crops = np.stack([crop_face(img, b, margin) for b in boxes])
        probs = self.predict_proba(crops, **kwargs)
        return [Face(b, c, self._prediction("", p).label, self._prediction("", p).probabilities)
                for b, c, p in zip(boxes, crops, probs)]

    def _prediction(self, name: str, probs: np.ndarray) -> Prediction:
        return Prediction(name, self.class_names[int(np.argmax(probs))],
                          {c: float(v) for c, v in zip(self.class_names, probs)})


def _read(path: Path, max_pixels: int) -> np.ndarray:
    try:
        return decode_bytes(np.fromfile(path, dtype=np.uint8), max_pixels)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: {exc}") from exc
