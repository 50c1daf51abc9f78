"""An exported expression model (ONNX, from `python export.py`, or the bundled one) on ONNX Runtime: numpy in,
probabilities out.

    from fer.runtime import ExpressionModel
    model = ExpressionModel()                     # the bundled FER2013 model (or ExpressionModel("model.onnx"))
    faces = model.analyze("group.jpg")            # the faces in a photo, each with its box, label and probabilities
    model.predict(crops)                          # face crops: uint8 [N,48,48], one image, or a list -> ["happy", ...]
    model.predict_proba(crops)                    # [N,7] calibrated probabilities

Imports numpy, OpenCV and onnxruntime only (no torch, Lightning or Hydra): starting it takes a fraction of a second.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from fer.errors import DataError, UserError
from fer.runtime.bundled import model_path
from fer.runtime.images import DEFAULT_MAX_PIXELS, read_image, to_gray48
from fer.runtime.sessions import session_options
from fer.runtime.metadata import SYNTHETIC_WARNING, ModelInfo, read_info
from fer.runtime.tta import tta_proba

log = logging.getLogger("fer")

# An image up to this many times the model's input side (96 px for 48x48 models) on both sides is taken to be a
# face crop and classified whole; a larger one is a photo, searched for faces. FER2013 crops are 48x48; a face
# crop much larger than 2x is rare, and a photo that small holds no face a detector could find anyway.
CROP_SIDE_FACTOR = 2


@dataclass
class Prediction:
    """One image's prediction: its name, the top class, and every class's probability."""

    name: str
    label: str
    probabilities: dict[str, float]


@dataclass
class Face:
    """A face: its box (x, y, w, h in image pixels), its 48x48 crop and its prediction. `whole`: the image was
    itself a face crop (classified as it is; the box is the whole image)."""

    box: tuple[int, int, int, int]
    crop: np.ndarray
    label: str
    probabilities: dict[str, float]
    whole: bool = False


class ExpressionModel:
    """An ONNX expression model exported by fer, with its metadata checked on loading. `path`: an .onnx file;
    None or "pretrained": the model bundled with the package (docs/MODEL_CARD.md)."""

    def __init__(self, path: str | Path | None = None, threads: int | None = None,
                 providers: Sequence[str] | None = None):
        import onnxruntime as ort

        self.path = model_path(path)
        if not self.path.is_file():
            raise UserError(f"model not found: {self.path}")
        try:
            self.session = ort.InferenceSession(str(self.path), session_options(threads),
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
        outputs = self.session.get_outputs()
        if len(outputs) != 1 or outputs[0].type != "tensor(float)" or len(outputs[0].shape) != 2 or (
                isinstance(outputs[0].shape[1], int) and outputs[0].shape[1] != len(self.class_names)):
            raise UserError(f"{self.path}: its output is {[(o.name, o.type, o.shape) for o in outputs]}, not one "
                            f"float [N,{len(self.class_names)}] array of probabilities as its metadata says")
        # what flows ask of any model (fer.capabilities.Predictor), declared, not probed
        self.val_split_record = self.info.val_split  # what ensembles check before fitting weights on val
        self.mirror_invariant = self.info.views != "none"  # the graph averages the face with its mirror already
        self._detector = None
        if self.info.synthetic:
            log.warning("%s: %s", self.path.name, SYNTHETIC_WARNING)

    def __repr__(self) -> str:
        return f"ExpressionModel({str(self.path)!r}, model={self.info.model!r})"

    @property
    def crop_side(self) -> int:
        """The largest side of an image that is classified whole, as a face crop (see CROP_SIDE_FACTOR)."""
        return CROP_SIDE_FACTOR * self.info.input_size

    @property
    def detector(self):
        """The default face detector (fer.runtime.faces: YuNet), loaded once per model rather than once per photo
        (its ONNX Runtime session takes 58 ms to open here, a 512x512 photo 12 ms to search)."""
        if self._detector is None:
            from fer.runtime.faces import FaceDetector

            self._detector = FaceDetector()
        return self._detector

    def is_face_crop(self, image: np.ndarray) -> bool:
        return max(image.shape[:2]) <= self.crop_side

    # ---- arrays ------------------------------------------------------------------------------------------
    def faces_array(self, faces: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """uint8 [N,S,S] from: such a batch, one face (gray [H,W] or colour [H,W,3|4], as OpenCV reads it), or a
        list / [N,H,W] / [N,H,W,C] batch of face crops of any size and colour (each converted to SxS grayscale as
        the training data was)."""
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
        """Calibrated class probabilities [N,7] float32 of face crops. tta: the mean over the image and its
        mirror, and with tta_shift > 0 four copies moved by that many pixels (the views of predict.py tta=true
        tta_shifts=true); a model whose graph already averages such views (info.views) is run as it is."""
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        tta = tta and self.info.views == "none"
        x = self.faces_array(faces)
        out = np.empty((len(x), len(self.class_names)), np.float32)
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size]
            out[start:start + len(batch)] = tta_proba(self._run, batch, True, tta_shift) if tta else self._run(batch)
        return out

    def tta_proba(self, faces: np.ndarray, flip: bool = True, shift: int = 0) -> np.ndarray:
        """fer.capabilities.Predictor: the mean over test-time views of uint8 faces [N,48,48]; a graph that
        averages views already (info.views) is run as it is."""
        if self.info.views != "none":
            return self.predict_proba(faces)
        return tta_proba(self._run, self.faces_array(faces), flip, shift)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        try:
            out = self.session.run(None, {self._input: np.ascontiguousarray(batch)})[0]
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own kinds when a graph fails
            raise UserError(f"{self.path}: the model failed on a batch of {len(batch)} face(s) "
                            f"({str(exc).splitlines()[0][:200]})") from exc
        if out.shape != (len(batch), len(self.class_names)):
            raise UserError(f"{self.path}: the model returned an array of shape {out.shape} for {len(batch)} "
                            f"face(s), not [{len(batch)},{len(self.class_names)}] probabilities")
        return out

    __call__ = predict_proba

    def predict(self, faces: np.ndarray | Sequence[np.ndarray], **kwargs) -> list[str]:
        """The most probable class name of each face crop."""
        return [self.class_names[i] for i in self.predict_proba(faces, **kwargs).argmax(axis=1)]

    # ---- files and photos --------------------------------------------------------------------------------
    def analyze(self, image: str | Path | np.ndarray, detector=None, max_pixels: int = DEFAULT_MAX_PIXELS,
                **kwargs) -> list[Face]:
        """The faces of an image (a path or a decoded image): a face crop (up to `crop_side` px) is one face,
        classified as it is; a larger image is a photo, searched for faces (find_faces): [] when it has none."""
        img = read_image(image, max_pixels) if isinstance(image, (str, Path)) else np.asarray(image)
        if not self.is_face_crop(img):
            return self.find_faces(img, detector, max_pixels, **kwargs)
        # a file may hold 16-bit pixels (converted like the training data); an array of the caller's must be uint8
        crop = self.faces_array([img] if isinstance(image, (str, Path)) else img)[0]
        probs = self.predict_proba(crop[None], **kwargs)[0]
        h, w = img.shape[:2]
        return [Face((0, 0, w, h), crop, *self._label(probs), whole=True)]

    def classify_files(self, paths: Iterable[str | Path], max_pixels: int = DEFAULT_MAX_PIXELS,
                       **kwargs) -> list[Prediction]:
        """One Prediction per image file, each classified whole as a face crop (converted to 48x48 grayscale); an
        unreadable file raises DataError naming it. Photos larger than a face crop are classified whole too, with
        a warning naming them: analyze() finds the faces in photos."""
        paths = [Path(p) for p in paths]
        images = [read_image(p, max_pixels) for p in paths]
        large = [f"{p.name} ({i.shape[1]}x{i.shape[0]})" for p, i in zip(paths, images) if not self.is_face_crop(i)]
        if large:
            log.warning("classified whole although larger than a face crop (%d px): %s; analyze() finds the faces "
                        "in photos", self.crop_side, ", ".join(large[:5]) + (" ..." if len(large) > 5 else ""))
        probs = self.predict_proba(images, **kwargs)
        return [Prediction(str(p), *self._label(pr)) for p, pr in zip(paths, probs)]

    def find_faces(self, photo: str | Path | np.ndarray, detector=None, max_pixels: int = DEFAULT_MAX_PIXELS,
                   **kwargs) -> list[Face]:
        """The faces found in a photo (a path or a decoded image), left to right, classified in one batch.
        detector: a fer.runtime.faces.FaceDetector (default: YuNet, crops levelled and aligned on its landmarks)."""
        img = read_image(photo, max_pixels) if isinstance(photo, (str, Path)) else np.asarray(photo)
        boxes, crops = (detector or self.detector).faces(img)
        if not boxes:
            return []
        probs = self.predict_proba(crops, **kwargs)
        return [Face(b, c, *self._label(p)) for b, c, p in zip(boxes, crops, probs)]

    def _label(self, probs: np.ndarray) -> tuple[str, dict[str, float]]:
        return self.class_names[int(np.argmax(probs))], {c: float(v) for c, v in zip(self.class_names, probs)}
