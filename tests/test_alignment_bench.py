"""bench/alignment.py: a crop's turn, scale and centre against the face's true square are measured as the
similarity transform between the two crops, and each face found is paired with its own true square's result."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bench.alignment import crop_error, measure, truth_matrix
from bench.scenes import make_scene
from fer.runtime.faces import FER_LANDMARKS
from fer.runtime.yunet import Detection


def _landmarks(square, angle: float, off: np.ndarray = np.eye(3)) -> np.ndarray:
    """The landmarks that crop_error reads as the crop `off` (48 -> 48 px) away from the true square's crop."""
    back = np.linalg.inv(off @ truth_matrix(square, angle))  # crop -> scene
    return (FER_LANDMARKS @ back[:2, :2].T + back[:2, 2]).astype(np.float32)


def test_crop_error_is_the_turn_scale_and_shift_between_the_crop_and_the_true_squares():
    square, angle = (100.3, 50.7, 80.0, 80.0), 25.0
    assert crop_error(_landmarks(square, angle), square, angle) == pytest.approx((0.0, 0.0, 0.0), abs=1e-4)
    off = np.vstack([cv2.getRotationMatrix2D((24.0, 24.0), 10.0, 1.1), [0.0, 0.0, 1.0]])
    off[:2, 2] += (3.0, 4.0)  # and moved by 5 px of the crop
    turn, scale, shift = crop_error(_landmarks(square, angle, off), square, angle)
    assert (turn, scale, shift) == pytest.approx((-10.0, np.log(1.1), 5.0), abs=1e-3)  # as cv2 counts turns: -10


class _Perfect:
    """A detector stand-in that finds each face of the scene at its true square, right to left, with the landmarks
    of its true crop; its crops are blank."""

    margin = 0.0

    def __init__(self, truth_of):
        self.truth_of = truth_of

    def find(self, img):
        truth = self.truth_of[id(img)]
        return [Detection(tuple(int(round(v)) for v in t.square), 0.9, _landmarks(t.square, t.angle))
                for t in reversed(truth)]

    def crop(self, gray, found):
        return np.zeros((48, 48), np.uint8)

    def crop_landmarks(self, gray, found):
        return found.landmarks


def test_each_face_found_is_measured_with_its_own_true_square_and_turn():
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (12, 48, 48), dtype=np.uint8)
    labels = np.arange(12) % 7
    scenes = [make_scene(rng, faces, labels, np.arange(12)) for _ in range(5)]
    truth = [t for _, faces_in in scenes for t in faces_in]
    truth_ok = np.array([t.label == 0 for t in truth])  # per face in scene order: whether its true square is right
    m = measure(_Perfect({id(img): t for img, t in scenes}), scenes, lambda crops: np.eye(7)[np.zeros(len(crops), int)],
                truth_ok)
    assert len(m["right"]) == len(truth) > 5
    np.testing.assert_allclose(m["errors"], 0.0, atol=1e-3)
    # every face once, its turn with its own true square's result (turns tell the faces apart)
    assert sorted(zip(m["angles"], m["truth_right"])) == sorted((t.angle, t.label == 0) for t in truth)
    np.testing.assert_array_equal(m["right"], m["truth_right"])  # says class 0: right exactly where the label is 0
