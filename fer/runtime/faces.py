"""Faces in the wild: find faces in an image, crop them (with a margin) to 48x48 grayscale, draw the results.
Torch-free (OpenCV, numpy): owned by the runtime; predict.py and the video reader use it from here.

Detector (face_detector=auto): OpenCV's bundled Haar cascade (cv2.data.haarcascades +
haarcascade_frontalface_default.xml) when the installed OpenCV ships it; an OpenCV without the cascade classifier
and its XML files falls back to the LBP frontal-face cascade that ships with scikit-image
(skimage.data.lbp_frontal_face_cascade_filename()): the same kind of boosted sliding-window cascade. Neither needs
a download.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from fer.classes import CLASS_NAMES
from fer.runtime.images import to_gray48, to_gray_u8
from fer.errors import UserError

HAAR_FILE = "haarcascade_frontalface_default.xml"
BACKENDS = ("auto", "opencv", "skimage")
# minimum neighbouring detections for a face to count; the two cascades group detections differently
_DEFAULT_NEIGHBORS = {"opencv": 5, "skimage": 8}

Box = tuple[int, int, int, int]  # x, y, w, h in photo pixels


def _haar_path() -> str | None:
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not folder or not hasattr(cv2, "CascadeClassifier"):
        return None
    path = os.path.join(folder, HAAR_FILE)
    return path if os.path.isfile(path) else None


class FaceDetector:
    """detect(gray uint8 photo) -> face boxes (x, y, w, h), left to right."""

    def __init__(self, backend: str = "auto", min_size: int = 30, min_neighbors: int | None = None,
                 scale_factor: float = 1.1, max_side: int = 800):
        if backend not in BACKENDS:
            raise UserError(f"face_detector={backend}: expected one of {', '.join(BACKENDS)}")
        haar = _haar_path()
        if backend == "auto":
            backend = "opencv" if haar else "skimage"
        if scale_factor <= 1.0:
            raise UserError(f"face_scale_factor must be > 1, got {scale_factor}")
        self.backend = backend
        self.min_size, self.scale_factor, self.max_side = int(min_size), float(scale_factor), int(max_side)
        self.min_neighbors = int(min_neighbors if min_neighbors is not None else _DEFAULT_NEIGHBORS[backend])
        if backend == "opencv":
            if not haar:
                raise UserError(f"face_detector=opencv: this OpenCV ({cv2.__version__}) has no {HAAR_FILE} / "
                                "CascadeClassifier; use face_detector=auto or skimage")
            self._cascade = cv2.CascadeClassifier(haar)
            self.model_file = haar
        else:
            try:
                from skimage.data import lbp_frontal_face_cascade_filename
                from skimage.feature import Cascade
            except ImportError as exc:  # the torch-free install has OpenCV only
                raise UserError(f"no face detector: this OpenCV ({cv2.__version__}) has no Haar cascade classifier "
                                "(OpenCV 5 dropped it) and scikit-image is not installed; install "
                                "'opencv-python-headless<5' (pip install fer-toolkit does) or scikit-image") from exc

            self.model_file = lbp_frontal_face_cascade_filename()
            self._cascade = Cascade(self.model_file)

    def describe(self) -> str:
        return f"{self.backend} cascade {os.path.basename(self.model_file)}"

    def detect(self, gray: np.ndarray) -> list[Box]:
        h, w = gray.shape
        scale = min(1.0, self.max_side / max(h, w))  # big photos: detect on a smaller copy, same boxes
        small = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                           interpolation=cv2.INTER_AREA) if scale < 1.0 else gray
        min_size = max(20, int(round(self.min_size * scale)))
        if min(small.shape) < min_size:
            return []
        if self.backend == "opencv":
            found = self._cascade.detectMultiScale(cv2.equalizeHist(small), scaleFactor=self.scale_factor,
                                                   minNeighbors=self.min_neighbors, minSize=(min_size, min_size))
            boxes = [tuple(int(v) for v in b) for b in (found if len(found) else [])]
        else:
            side = min(small.shape)
            found = self._cascade.detect_multi_scale(img=small, scale_factor=self.scale_factor, step_ratio=1,
                                                     min_size=(min_size, min_size), max_size=(side, side),
                                                     min_neighbor_number=self.min_neighbors)
            boxes = [(d["c"], d["r"], d["width"], d["height"]) for d in found]
        boxes = [(int(round(x / scale)), int(round(y / scale)), int(round(bw / scale)), int(round(bh / scale)))
                 for x, y, bw, bh in suppress_overlaps(boxes)]
        return sorted(boxes, key=lambda b: (b[0], b[1]))


def suppress_overlaps(boxes: list[Box], threshold: float = 0.5) -> list[Box]:
    """One box per face: drop a box when more than `threshold` of the smaller one's area overlaps a bigger kept
    box (cascades sometimes report the same face at two neighbouring scales)."""
    kept: list[Box] = []
    for b in sorted(boxes, key=lambda b: b[2] * b[3], reverse=True):
        x, y, w, h = b
        if all(max(0, min(x + w, kx + kw) - max(x, kx)) * max(0, min(y + h, ky + kh) - max(y, ky))
               <= threshold * min(w * h, kw * kh) for kx, ky, kw, kh in kept):
            kept.append(b)
    return kept


def crop_face(img: np.ndarray, box: Box, margin: float = 0.1) -> np.ndarray:
    """The box grown by `margin` x its size on every side (clipped to the photo) -> 48x48 uint8 gray."""
    x, y, w, h = box
    H, W = img.shape[:2]
    mx, my = int(round(w * margin)), int(round(h * margin))
    x0, y0 = max(0, x - mx), max(0, y - my)
    x1, y1 = min(W, x + w + mx), min(H, y + h + my)
    face, _, _ = to_gray48(np.ascontiguousarray(img[y0:y1, x0:x1]))
    return face


_COLORS = [(0, 0, 255), (0, 128, 255), (128, 0, 128), (0, 200, 0), (255, 0, 0), (0, 255, 255), (200, 200, 200)]


def draw_faces(img: np.ndarray, boxes: list[Box], probs: np.ndarray, names: list[str] | None = None) -> np.ndarray:
    """A BGR copy of `img` with each face's box and predicted label (and probability, and a name such as a track
    id) drawn on it."""
    if img.dtype != np.uint8:
        img = to_gray_u8(img)
    if img.ndim == 2 or img.shape[2] == 1:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    img = np.ascontiguousarray(img)
    thick = max(1, round(min(img.shape[:2]) / 300))
    for k, (box, p) in enumerate(zip(boxes, probs)):
        x, y, w, h = box
        color = _COLORS[int(np.argmax(p)) % len(_COLORS)]
        cv2.rectangle(img, (x, y), (x + w, y + h), color, thick)
        text = f"{names[k]} " if names else ""
        text += f"{CLASS_NAMES[int(np.argmax(p))]} {float(np.max(p)):.2f}"
        scale = max(0.4, w / 160)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = y - 4 if y - th - base - 4 >= 0 else y + h + th + 4
        cv2.rectangle(img, (x, ty - th - base), (x + tw, ty + base), color, cv2.FILLED)
        cv2.putText(img, text, (x, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return img
