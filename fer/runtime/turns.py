"""Searching a photo turned by a few angles as well as upright, for faces tilted past what a detector finds.

YuNet finds a face up to about 30 degrees off upright; past that it loses most (on dlib's hand-boxed photos turned
by 45 degrees it finds half: docs/BENCHMARKS.md, "Real photos"). Searching the photo turned by -30 and +30
degrees as well brings a face tilted by 45 back within its reach, at three detector passes on slightly larger
images. Each face found is carried back into the photo: its box keeps its size and moves with its centre, its
landmarks are mapped exactly, so alignment and levelling work on it as on a face found upright.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from fer.runtime.yunet import Detection

# Two detections of one face (found at two turns) overlap by more than this (IoU of their boxes): the surer stays.
SAME_FACE_IOU = 0.3


def turn_onto_canvas(w: int, h: int, angle: float, scale: float = 1.0) -> tuple[np.ndarray, tuple[int, int]]:
    """The 2x3 matrix that turns a w x h image by `angle` degrees (counter-clockwise) and scales it about its centre,
    onto a canvas that holds all of it; and that canvas's (width, height)."""
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    size = (int(np.ceil(h * sin + w * cos)), int(np.ceil(h * cos + w * sin)))
    m[:, 2] += (size[0] - w) / 2, (size[1] - h) / 2
    return m, size


def turned_view(img: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The image turned by `angle` degrees (counter-clockwise) on a canvas that holds all of it, edges repeated;
    and the 2x3 matrix that takes the turned image's points back to the image's."""
    m, size = turn_onto_canvas(img.shape[1], img.shape[0], angle)
    turned = cv2.warpAffine(img, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return turned, cv2.invertAffineTransform(m)


def carried_back(found: Detection, back: np.ndarray) -> Detection:
    """A detection in a turned view -> the same face in the image: the box (same size) moved with its centre, the
    landmarks mapped point by point."""
    x, y, w, h = found.box
    cx, cy = back @ np.array([x + w / 2, y + h / 2, 1.0])
    landmarks = None
    if found.landmarks is not None:
        landmarks = (found.landmarks @ back[:, :2].T + back[:, 2]).astype(np.float32)
    return Detection((int(round(cx - w / 2)), int(round(cy - h / 2)), w, h), found.score, landmarks)


def search_turns(img: np.ndarray, detect: Callable[[np.ndarray], list[Detection]],
                 turns: Sequence[float]) -> list[Detection]:
    """detect() on the image as it is and turned by each of `turns`, merged: where two turns found one face, the
    surer detection stays."""
    found = list(detect(img))
    for angle in turns:
        view, back = turned_view(img, float(angle))
        found += [carried_back(d, back) for d in detect(view)]
    if not turns or len(found) < 2:
        return found
    keep = cv2.dnn.NMSBoxes([list(d.box) for d in found], [d.score for d in found], 0.0, SAME_FACE_IOU)
    return [found[i] for i in np.asarray(keep).reshape(-1)]
