"""bench/photos.py, the real-photo benchmark: it reads dlib's imglab files (ignored boxes apart), carries each
hand-drawn box along when it turns, covers or shrinks a photo, and scores a detection on an ignored face neither
way, so its recall and precision measure what they say."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.photos import Photo, harder, read_imglab, score
from fer.runtime.faces import FaceDetector
from fer.runtime.yunet import Detection

ASTRONAUT = Path(__file__).resolve().parent / "data" / "astronaut.jpg"
FACE = (183, 85, 76, 76)  # the astronaut's face, drawn by hand (x, y, w, h), centred on its landmarks

pytestmark = pytest.mark.usefixtures("one_thread")


def _imglab(tmp_path: Path) -> Path:
    shutil.copy(ASTRONAUT, tmp_path / "astronaut.jpg")
    xml = tmp_path / "faces.xml"
    xml.write_text("<?xml version='1.0'?>\n<dataset><images>\n<image file='astronaut.jpg'>\n"
                   f"  <box top='{FACE[1]}' left='{FACE[0]}' width='{FACE[2]}' height='{FACE[3]}'/>\n"
                   "  <box top='300' left='300' width='40' height='40' ignore='1'/>\n</image>\n</images></dataset>\n")
    return xml


def test_imglab_boxes_and_ignored_ones(tmp_path):
    (photo,) = read_imglab(_imglab(tmp_path))
    assert photo.path == tmp_path / "astronaut.jpg"
    assert photo.faces == (tuple(float(v) for v in FACE),) and photo.ignored == ((300.0, 300.0, 40.0, 40.0),)
    (tmp_path / "astronaut.jpg").unlink()
    with pytest.raises(SystemExit, match="no photo .*astronaut.jpg"):
        read_imglab(tmp_path / "faces.xml")


@pytest.mark.parametrize("angle,shrink", [(0, 1.0), (30, 1.0), (-45, 0.5)])
def test_a_drawn_box_moves_with_its_face(tmp_path, angle, shrink):
    import cv2

    (photo,) = read_imglab(_imglab(tmp_path))
    img, (box,), _ = harder(cv2.imread(str(photo.path)), photo, angle, cover=False, shrink=shrink)
    found = FaceDetector("yunet", turns=(-30.0, 30.0)).find(img)
    centres = [np.array(d.landmarks).mean(axis=0) for d in found]
    want = np.array([box[0] + box[2] / 2, box[1] + box[3] / 2])
    assert min(np.linalg.norm(c - want) for c in centres) < 6 * shrink, (box, [d.box for d in found])
    assert box[2] == pytest.approx(FACE[2] * shrink)


def test_the_cover_hides_the_lower_third_only(tmp_path):
    import cv2

    (photo,) = read_imglab(_imglab(tmp_path))
    original = cv2.imread(str(photo.path))
    covered, _, _ = harder(original, photo, 0, cover=True, shrink=1.0)
    x, y, w, h = FACE
    changed = np.abs(covered.astype(int) - original).max(axis=2) > 0
    assert changed[y + h * 3 // 4, x + w // 2] and not changed[y + h // 3, x + w // 2]


def test_a_photo_made_grey_keeps_its_light(tmp_path):
    import cv2

    (photo,) = read_imglab(_imglab(tmp_path))
    original = cv2.imread(str(photo.path))
    grey, _, _ = harder(original, photo, 0, cover=False, shrink=1.0, grey=True)
    assert (grey == grey[..., :1]).all() and np.array_equal(grey[..., 0], cv2.cvtColor(original, cv2.COLOR_BGR2GRAY))


def test_a_detection_on_an_ignored_face_is_not_false():
    photo = Photo(Path("p.jpg"), ((0.0, 0.0, 40.0, 40.0),), ((100.0, 100.0, 40.0, 40.0),))
    same = (1.0, 0.0, 0.0)  # boxes already drawn the annotation's way
    found = [Detection((0, 0, 40, 40), 0.9), Detection((101, 99, 40, 40), 0.8), Detection((300, 0, 40, 40), 0.7)]
    assert score(found, photo.faces, photo.ignored, same)[:2] == (1, 1)  # one found, one false, one ignored
