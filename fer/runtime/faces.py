"""Faces in the wild: find faces in an image, crop them to 48x48 grayscale the way FER2013's faces are cropped, draw
the results. Torch-free (OpenCV, numpy, ONNX Runtime): owned by the runtime; predict.py and the video reader use it
from here.

Detectors (face_detector=...):
- yunet_fer (the default; auto means it) and yunet: fer.runtime.yunet, a small CNN shipped inside the package, with
  five landmarks per face. yunet is the network as published (trained on photos); yunet_fer adds a copy of its later
  layers trained to find FER2013-style faces (tight grey crops) as well, and keeps the copy's own faces only where the
  photo is grey (fer.runtime.yunet.GREY_CHROMA): colour photos get what the published network finds, black-and-white
  ones more faces and more false ones (bench/photos.py). Their crops are aligned: a similarity transform (rotation,
  scale, shift) takes the landmarks to where they sit on an average FER2013 face (FER_LANDMARKS), so a tilted head
  is classified as an upright one. The landmarks follow a turn only partly, so the face is first levelled
  (fer.runtime.levelling; level=False skips it).
- haar, lbp: the cascades of fer.runtime.cascade (upright frontal faces only); their crops are the box grown by a
  margin. bench/faces.py measures all three on the same scenes, bench/photos.py on real photos.
turns=(-30, 30) searches the photo turned by those angles as well (fer.runtime.turns): faces tilted by 45 degrees
are found, at about four times the detection time (bench/photos.py).
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from fer.classes import CLASS_NAMES, IMAGE_SIZE
from fer.errors import UserError
from fer.runtime.cascade import Box, Cascade
from fer.runtime.images import to_bgr_u8, to_gray48, to_gray_u8
from fer.runtime.levelling import level_landmarks
from fer.runtime.turns import search_turns
from fer.runtime.yunet import MODEL_FILE as YUNET_FILE
from fer.runtime.yunet import FER_FILE as FER_YUNET_FILE
from fer.runtime.yunet import Detection, YuNet

DETECTORS = ("auto", "yunet", "yunet_fer", "haar", "lbp")
# the YuNet files: the published network, and with it a copy fine-tuned to find FER2013-style faces (tight grey crops)
# too (fer/runtime/yunet.py, docs/BENCHMARKS.md); the second is the default
_YUNET_FILES = {"yunet": YUNET_FILE, "yunet_fer": FER_YUNET_FILE}
_ALIASES = {"opencv": "haar", "skimage": "lbp"}  # the names before YuNet: configs written then keep working
# Per detector: smallest face side kept (photo pixels), the size a bigger photo is searched at (boxes are still
# reported in photo pixels), and the margin a box grows by on each side when it is cropped without landmarks: the
# median that turns the detector's box into the FER2013 square on 1,000 upright FER2013 train faces
# (bench/faces.py --calibrate: YuNet -0.007, Haar 0.022, LBP 0.045). YuNet needs no minimum: its own floor is a face
# of about 10 px of the searched image (opencv_zoo's model notes; fewer photo pixels with upscale); the cascades'
# window is 20 px.
_DEFAULTS = {"yunet": dict(min_size=0, max_side=1280, margin=0.0),
             "yunet_fer": dict(min_size=0, max_side=1280, margin=0.0),
             "haar": dict(min_size=30, max_side=800, margin=0.02),
             "lbp": dict(min_size=30, max_side=800, margin=0.05)}
# YuNet's score threshold, looked at on 150 scenes of FER2013 *train* faces (bench/faces.py --source train --sweep;
# never on the publictest scenes that docs/BENCHMARKS.md reports): precision 0.80 / 0.91 / 0.96 and recall
# 0.47 / 0.35 / 0.24 at 0.3 / 0.6 / 0.8. 0.6 keeps nine found faces in ten real ones; real photos score higher
# (the test photo's face: 0.84-0.93 turned by up to 45 degrees or with the mouth covered).
YUNET_SCORE_THRESHOLD = 0.6
# Where YuNet's five landmarks (right eye, left eye, nose tip, right and left mouth corner) sit on a 48x48 FER2013
# face: the median over FER2013 train faces (bench/faces.py --calibrate). Aligning to them gives a crop framed as
# the classifier's training faces were.
FER_LANDMARKS = np.array([[14.0, 18.8], [33.0, 18.8], [23.1, 28.1], [16.0, 36.2], [31.8, 36.0]], np.float32)


class FaceDetector:
    """faces(image) -> (boxes, 48x48 crops) of the faces in a decoded image (gray, BGR or BGRA; 8 or 16 bit),
    left to right; find() gives the Detections themselves, detect() their boxes."""

    def __init__(self, backend: str = "auto", min_size: int | None = None, min_neighbors: int | None = None,
                 scale_factor: float = 1.1, max_side: int | None = None, score_threshold: float | None = None,
                 margin: float | None = None, align: bool = True, upscale: float = 1.0, threads: int | None = None,
                 level: bool = True, turns: tuple[float, ...] = (), model_file: str | None = None):
        name = _ALIASES.get(backend, backend)
        if name not in DETECTORS:
            raise UserError(f"face_detector={backend}: expected one of {', '.join(DETECTORS)}")
        self.backend = "yunet_fer" if name == "auto" else name
        defaults = _DEFAULTS[self.backend]
        self.min_size = int(defaults["min_size"] if min_size is None else min_size)
        self.max_side = int(defaults["max_side"] if max_side is None else max_side)
        self.margin = float(defaults["margin"] if margin is None else margin)
        self.align = bool(align)
        self.level = bool(level)  # YuNet's aligned crops: level a turned face first (fer.runtime.levelling)
        if not 1.0 <= upscale <= 4.0:
            raise UserError(f"face_upscale must be in [1, 4], got {upscale}")
        self.upscale = float(upscale)
        # also search the photo turned by these angles (fer.runtime.turns): faces tilted past ~30 degrees
        self.turns = _turn_angles(turns)
        if self.backend in _YUNET_FILES:
            score = YUNET_SCORE_THRESHOLD if score_threshold is None else float(score_threshold)
            if not 0.0 < score < 1.0:
                raise UserError(f"face_score_threshold must be in (0, 1), got {score}")
            self._engine = YuNet(score_threshold=score, threads=threads,
                                 model_file=model_file or _YUNET_FILES[self.backend])
        else:
            self._engine = Cascade(self.backend, min_neighbors, scale_factor)
        self.model_file = self._engine.model_file

    def describe(self) -> str:
        how = f"margin {self.margin:g}"
        if self.backend in _YUNET_FILES and self.align:
            how = "levelled, then aligned on its landmarks" if self.level else "aligned on its landmarks"
        turned = f"; also searched turned by {', '.join(f'{a:g}' for a in self.turns)} degrees" if self.turns else ""
        return f"{self.backend} ({os.path.basename(self.model_file)}; crops {how}{turned})"

    def find(self, img: np.ndarray) -> list[Detection]:
        h, w = img.shape[:2]
        # big photos are searched on a smaller copy (max_side); upscale > 1 searches a larger one, for small faces
        scale = min(self.upscale, self.max_side / max(h, w))
        if scale != 1.0:
            img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))),
                             interpolation=cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR)
        if self.backend in _YUNET_FILES:
            found = search_turns(to_bgr_u8(img), self._engine.detect, self.turns)
        else:
            min_size = int(round(self.min_size * scale))
            found = search_turns(to_gray_u8(img), lambda view: self._engine.detect(view, min_size), self.turns)
        if scale != 1.0:
            found = [Detection(tuple(int(round(v / scale)) for v in d.box), d.score,
                               None if d.landmarks is None else d.landmarks / scale) for d in found]
        found = [d for d in found if min(d.box[2:]) >= self.min_size]
        return sorted(found, key=lambda d: (d.box[0], d.box[1]))

    def detect(self, img: np.ndarray) -> list[Box]:
        return [d.box for d in self.find(img)]

    def crop_landmarks(self, gray: np.ndarray, found: Detection) -> np.ndarray | None:
        """The landmarks (photo pixels) that the crop of one face of a 2-D uint8 image is aligned on, levelled if
        level is on; None where it is cut from its box (no landmarks, or align off). bench/alignment.py measures
        them against each face's true square."""
        if not self.align or found.landmarks is None:
            return None
        return level_landmarks(gray, found.landmarks, self._engine, FER_LANDMARKS) if self.level else found.landmarks

    def crop(self, gray: np.ndarray, found: Detection) -> np.ndarray:
        """One face of a 2-D uint8 image -> 48x48 uint8: aligned on crop_landmarks() where it has them, else its box
        grown by the margin."""
        landmarks = self.crop_landmarks(gray, found)
        aligned = None if landmarks is None else align_face(gray, landmarks)
        return aligned if aligned is not None else crop_face(gray, found.box, self.margin)

    def faces(self, img: np.ndarray) -> tuple[list[Box], np.ndarray]:
        found = self.find(img)
        gray = to_gray_u8(img)
        crops = [self.crop(gray, d) for d in found]
        return [d.box for d in found], (np.stack(crops) if crops else np.empty((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8))


def _turn_angles(turns) -> tuple[float, ...]:
    try:
        angles = tuple(float(a) for a in (turns or ()))
    except (TypeError, ValueError):
        angles = (float("nan"),)
    if any(not -90.0 <= a <= 90.0 or a == 0.0 for a in angles):  # nan fails the range test too
        raise UserError(f"face_turns={turns}: give non-zero angles in degrees within [-90, 90], e.g. [-30,30]")
    return angles


def crop_face(img: np.ndarray, box: Box, margin: float = 0.1) -> np.ndarray:
    """The box grown by `margin` x its size on every side (clipped to the photo) -> 48x48 uint8 gray."""
    x, y, w, h = box
    H, W = img.shape[:2]
    mx, my = int(round(w * margin)), int(round(h * margin))
    x0, y0 = max(0, x - mx), max(0, y - my)
    x1, y1 = min(W, x + w + mx), min(H, y + h + my)
    face, _, _ = to_gray48(np.ascontiguousarray(img[y0:y1, x0:x1]))
    return face


def align_face(gray: np.ndarray, landmarks: np.ndarray, template: np.ndarray = FER_LANDMARKS) -> np.ndarray | None:
    """The face whose five landmarks are given, warped by the similarity transform that takes them to `template`
    (least median of squares: one stray landmark does not drag the crop) -> 48x48 uint8; pixels past the photo's
    edge repeat the edge. None when no transform fits (landmarks collapsed onto one point)."""
    matrix, _ = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), template, method=cv2.LMEDS)
    if matrix is None:
        return None
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    shrink = int(1 / scale) if scale < 0.5 else 1
    if shrink > 1:  # a big face: shrink the photo first (area averaging), so the warp does not alias
        small = cv2.resize(gray, (max(1, gray.shape[1] // shrink), max(1, gray.shape[0] // shrink)),
                           interpolation=cv2.INTER_AREA)
        matrix = matrix * [[gray.shape[1] / small.shape[1], gray.shape[0] / small.shape[0], 1.0]]
        gray = small
    return cv2.warpAffine(gray, matrix, (IMAGE_SIZE, IMAGE_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


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
