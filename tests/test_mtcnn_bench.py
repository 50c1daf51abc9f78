"""bench/mtcnn_detector.py, MTCNN measured beside the package's detectors: it hands MTCNN the photo in RGB, turns its
corner boxes into the (x, y, w, h) boxes the benchmarks score, keeps its landmarks for alignment, and says how to
install facenet-pytorch when it is missing. facenet-pytorch itself is not installed here (it pins torch < 2.3): a
stand-in module takes its place."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from bench.faces import make_detector
from fer.runtime.faces import align_face
from fer.runtime.yunet import Detection


class _FakeMTCNN:
    seen: list[np.ndarray] = []

    def __init__(self, **options):
        self.options = options

    def detect(self, rgb, landmarks=False):
        assert landmarks
        self.seen.append(rgb)
        if rgb.sum() == 0:
            return None, None, None
        boxes = np.array([[200.4, 20.6, 260.4, 90.6], [10.0, 30.0, 70.0, 100.0]])
        points = np.array([[[220, 45], [245, 45], [232, 60], [222, 75], [243, 75]],
                           [[25, 55], [55, 55], [40, 70], [28, 85], [52, 85]]], np.float64)
        return boxes, np.array([0.91, 0.99]), points


@pytest.fixture
def fake_facenet(monkeypatch):
    module = types.ModuleType("facenet_pytorch")
    module.MTCNN = _FakeMTCNN
    monkeypatch.setitem(sys.modules, "facenet_pytorch", module)
    _FakeMTCNN.seen = []
    return _FakeMTCNN


def test_boxes_landmarks_and_colour_order(fake_facenet):
    det = make_detector("mtcnn", align=True, margin=None, upscale=1.0, threads=None, level=True, turns=())
    assert det._net.options["thresholds"][-1] == 0.7 and det.margin == pytest.approx(-0.017)
    bgr = np.zeros((120, 300, 3), np.uint8)
    bgr[..., 0] = 1  # blue
    found = det.find(bgr)
    assert (fake_facenet.seen[0][..., 2] == 1).all() and (fake_facenet.seen[0][..., :2] == 0).all()  # RGB
    assert [d.box for d in found] == [(10, 30, 60, 70), (200, 21, 60, 70)]  # corners -> x, y, w, h; left to right
    assert [d.score for d in found] == pytest.approx([0.99, 0.91])
    assert found[0].landmarks.dtype == np.float32 and found[0].landmarks[0].tolist() == [25, 55]
    gray = np.random.default_rng(0).integers(0, 255, (120, 300), np.uint8)
    assert np.array_equal(det.crop(gray, found[0]), align_face(gray, found[0].landmarks, det.template))
    assert det.find(np.zeros((120, 300), np.uint8)) == []  # a gray photo with nothing in it


def test_box_crop_without_alignment(fake_facenet):
    det = make_detector("mtcnn", align=False, margin=0.0)
    gray = np.zeros((120, 300), np.uint8)
    gray[30:100, 10:70] = 200
    elsewhere = np.array([[220, 45], [245, 45], [232, 60], [222, 75], [243, 75]], np.float32)  # on black
    crop = det.crop(gray, Detection((10, 30, 60, 70), 0.9, elsewhere))
    assert crop.shape == (48, 48) and crop.min() == 200  # the box itself, not the landmarks


def test_missing_facenet_pytorch_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)  # import fails as when it is not installed
    with pytest.raises(SystemExit, match=r"pip install --no-deps facenet-pytorch==2\.6\.0"):
        make_detector("mtcnn")
