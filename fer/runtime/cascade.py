"""The boosted sliding-window cascades, kept as options beside YuNet (face_detector=haar | lbp): OpenCV's Haar frontal
cascade (cv2.data.haarcascades + haarcascade_frontalface_default.xml), and the LBP frontal-face cascade that ships
with scikit-image (skimage.data.lbp_frontal_face_cascade_filename()) for an OpenCV without the cascade classifier.
Neither needs a download; both find upright frontal faces only (bench/faces.py measures them beside YuNet).
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from fer.errors import UserError
from fer.runtime.yunet import Detection

HAAR_FILE = "haarcascade_frontalface_default.xml"
# minimum neighbouring detections for a face to count; the two cascades group detections differently
DEFAULT_NEIGHBORS = {"haar": 5, "lbp": 8}

Box = tuple[int, int, int, int]  # x, y, w, h in image pixels


def haar_path() -> str | None:
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not folder or not hasattr(cv2, "CascadeClassifier"):
        return None
    path = os.path.join(folder, HAAR_FILE)
    return path if os.path.isfile(path) else None


class Cascade:
    """detect(gray uint8 image, min_size) -> Detections (boxes only: a cascade gives no landmarks or score)."""

    def __init__(self, kind: str, min_neighbors: int | None = None, scale_factor: float = 1.1):
        if scale_factor <= 1.0:
            raise UserError(f"face_scale_factor must be > 1, got {scale_factor}")
        self.kind, self.scale_factor = kind, float(scale_factor)
        self.min_neighbors = int(min_neighbors if min_neighbors is not None else DEFAULT_NEIGHBORS[kind])
        if kind == "haar":
            haar = haar_path()
            if not haar:
                raise UserError(f"face_detector=haar: this OpenCV ({cv2.__version__}) has no {HAAR_FILE} / "
                                "CascadeClassifier; use face_detector=yunet or lbp")
            self._cascade = cv2.CascadeClassifier(haar)
            self.model_file = haar
        else:
            try:
                from skimage.data import lbp_frontal_face_cascade_filename
                from skimage.feature import Cascade as SkimageCascade
            except ImportError as exc:  # the torch-free install has OpenCV only
                raise UserError("face_detector=lbp needs scikit-image (pip install scikit-image); the default "
                                "face_detector=yunet needs nothing more") from exc

            self.model_file = lbp_frontal_face_cascade_filename()
            self._cascade = SkimageCascade(self.model_file)

    def detect(self, gray: np.ndarray, min_size: int) -> list[Detection]:
        min_size = max(20, min_size)  # the cascades' own window size: nothing smaller can be found
        if min(gray.shape) < min_size:
            return []
        if self.kind == "haar":
            found = self._cascade.detectMultiScale(cv2.equalizeHist(gray), scaleFactor=self.scale_factor,
                                                   minNeighbors=self.min_neighbors, minSize=(min_size, min_size))
            boxes = [tuple(int(v) for v in b) for b in (found if len(found) else [])]
        else:
            side = min(gray.shape)
            found = self._cascade.detect_multi_scale(img=gray, scale_factor=self.scale_factor, step_ratio=1,
                                                     min_size=(min_size, min_size), max_size=(side, side),
                                                     min_neighbor_number=self.min_neighbors)
            boxes = [(d["c"], d["r"], d["width"], d["height"]) for d in found]
        return [Detection(b, 1.0) for b in suppress_overlaps(boxes)]


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
