"""bench/faces.py's reference crop: a face cut from its true square in a generated scene is the face that was placed
there, turned back upright, so the benchmark's "perfect detector" rows measure what they say."""

from __future__ import annotations

import cv2
import numpy as np

from bench.faces import truth_crop
from bench.scenes import make_scene


def _faces(n: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth random 48x48 textures: structure at every angle, so a crop turned the wrong way correlates poorly."""
    noise = rng.integers(0, 256, size=(n, 48, 48)).astype(np.float32)
    return np.stack([cv2.normalize(cv2.GaussianBlur(f, (0, 0), 3), None, 0, 255, cv2.NORM_MINMAX) for f in noise]
                    ).astype(np.uint8)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    centre = slice(12, 36)  # inside the scene's oval cut, away from the background in the corners
    return float(np.corrcoef(a[centre, centre].ravel().astype(float), b[centre, centre].ravel().astype(float))[0, 1])


def test_truth_crop_is_the_placed_face_turned_back_upright():
    rng = np.random.default_rng(0)
    faces = _faces(20, rng)
    checked = 0
    for _ in range(12):
        scene, truth = make_scene(rng, faces, np.zeros(20, dtype=np.int64), np.arange(20))
        gray = cv2.cvtColor(scene, cv2.COLOR_BGR2GRAY)
        for t in truth:
            levelled, as_turned = truth_crop(gray, t), truth_crop(gray, t, level=False)
            assert levelled.shape == as_turned.shape == (48, 48) and levelled.dtype == np.uint8
            if t.covered or abs(t.angle) < 20:
                continue
            checked += 1
            assert _corr(levelled, faces[t.index]) > 0.6, (t.angle, t.square)
            assert _corr(levelled, faces[t.index]) > _corr(as_turned, faces[t.index]) + 0.2
    assert checked >= 5
