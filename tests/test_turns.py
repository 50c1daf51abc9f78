"""Searching turned views of a photo (fer.runtime.turns, FaceDetector(turns=...), face_turns=, --turns): a small
face tilted by 45 degrees that YuNet misses upright is found where it is, with its landmarks carried back, and a
face found at several turns is reported once."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from fer.errors import UserError
from fer.runtime.faces import FaceDetector

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = ROOT / "tests" / "data" / "astronaut.jpg"
CENTRE = np.array([222.0, 115.0])  # the astronaut's face
TURNS = (-30.0, 30.0)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return cv2.imread(str(ASTRONAUT))


def _small_and_tilted(photo: np.ndarray, degrees: float, scale: float) -> np.ndarray:
    m = cv2.getRotationMatrix2D(tuple(CENTRE), degrees, 1.0)  # about the face: it stays at CENTRE
    turned = cv2.warpAffine(photo, m, photo.shape[1::-1], borderMode=cv2.BORDER_REFLECT)
    return cv2.resize(turned, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("degrees,scale", [(45, 0.3), (-45, 0.25)])
def test_a_small_face_tilted_by_45_degrees_is_found_in_a_turned_view(photo, degrees, scale):
    img = _small_and_tilted(photo, degrees, scale)  # a face of 25-30 px
    assert FaceDetector("yunet").find(img) == []  # past what YuNet finds upright
    (face,) = FaceDetector("yunet", turns=TURNS).find(img)
    x, y, w, h = face.box
    centre = CENTRE * scale
    assert np.hypot(x + w / 2 - centre[0], y + h / 2 - centre[1]) < 5, face.box  # where the face is in the photo
    assert np.linalg.norm(face.landmarks.mean(axis=0) - centre) < 5, face.landmarks  # its landmarks too ...
    (rx, ry), (lx, ly) = face.landmarks[:2]
    eye_line = np.degrees(np.arctan2(ly - ry, lx - rx))  # ... tilted the face's way (the image's y points down)
    assert np.sign(eye_line) == -np.sign(degrees) and 20 < abs(eye_line) < 50, eye_line


def test_a_face_found_at_several_turns_is_reported_once(photo):
    """The upright astronaut is found in all three views; the surest (upright) detection stays."""
    (plain,) = FaceDetector("yunet").find(photo)
    (face,) = FaceDetector("yunet", turns=TURNS).find(photo)
    assert face.box == plain.box and face.score == pytest.approx(plain.score)


def test_the_cascades_search_turned_views_too(photo):
    """Turns are the detector's own search: the Haar cascade, upright only, finds the face tilted by 40 degrees
    once it also looks at the photo turned by 30."""
    from fer.runtime.cascade import haar_path

    if haar_path() is None:
        pytest.skip("this OpenCV build has no Haar cascade")
    img = _small_and_tilted(photo, 40, 1.0)
    near = [b for b in FaceDetector("haar").detect(img) if np.hypot(b[0] + b[2] / 2 - CENTRE[0],
                                                                    b[1] + b[3] / 2 - CENTRE[1]) < 20]
    assert near == []
    (face,) = [b for b in FaceDetector("haar", turns=TURNS).detect(img)
               if np.hypot(b[0] + b[2] / 2 - CENTRE[0], b[1] + b[3] / 2 - CENTRE[1]) < 20]


@pytest.mark.parametrize("turns", [(0.0,), (120.0,), ("left",)])
def test_bad_turns_are_one_line(turns):
    with pytest.raises(UserError, match=r"face_turns=.*non-zero angles in degrees within \[-90, 90\]"):
        FaceDetector("yunet", turns=turns)


def test_face_turns_in_predict_and_turns_in_fer_classify_reach_the_detector(tmp_path):
    from fer.predict.settings import PredictSettings
    from fer.runtime.cli import _arguments

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("predict", overrides=["face_turns=[-30,30]", f"paths.cache_dir={tmp_path}"])
    detector = PredictSettings.from_config(cfg).faces.build()
    assert detector.turns == TURNS and "turned by -30, 30 degrees" in detector.describe()
    assert _arguments(["photo.jpg", "--turns", "-30", "30"]).turns == list(TURNS)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        assert PredictSettings.from_config(compose("predict")).faces.build().turns == ()  # off by default
