"""Faces in the wild: detection on a real photo (scikit-image's astronaut, shipped with the package), none on a
photo without a face, crops, annotated copies, and predict.py's face_detect rows."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("FER_ROOT", str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402
from skimage.data import astronaut  # noqa: E402

from fer.errors import UserError  # noqa: E402
from fer.errors import DataError  # noqa: E402
from fer.runtime.faces import FaceDetector, crop_face  # noqa: E402
from fer.predict.faces import scan_photos  # noqa: E402

# the astronaut's face in skimage.data.astronaut() (512x512): centre and size, measured by eye
FACE_CENTRE = (222, 115)
FACE_SIZE = 95


pytestmark = pytest.mark.usefixtures("one_thread")

@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    cv2.imwrite(str(folder / "astronaut.jpg"), cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR))
    y, x = np.mgrid[0:240, 0:320]
    scene = ((x + y) * 255 / 560).astype(np.uint8)  # a smooth gradient with a plain disc: nothing face-like
    cv2.circle(scene, (160, 120), 50, 30, -1)
    cv2.imwrite(str(folder / "no_face.png"), scene)
    return folder


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def _near_face(box) -> bool:
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    return abs(cx - FACE_CENTRE[0]) < 30 and abs(cy - FACE_CENTRE[1]) < 30 and 0.6 < w / FACE_SIZE < 1.6


@pytest.mark.parametrize("backend", ["yunet", "haar", "lbp"])
def test_detects_the_astronaut_and_nothing_else(backend, photos):
    from fer.runtime.cascade import haar_path

    if backend == "haar" and haar_path() is None:
        pytest.skip(f"OpenCV {cv2.__version__} has no Haar cascade (auto uses skimage's LBP cascade)")
    detector = FaceDetector(backend)
    boxes = detector.detect(cv2.cvtColor(astronaut(), cv2.COLOR_RGB2GRAY))
    assert len(boxes) == 1 and _near_face(boxes[0]), boxes
    assert detector.detect(cv2.imread(str(photos / "no_face.png"), cv2.IMREAD_GRAYSCALE)) == []


def test_big_photo_is_searched_downscaled_but_boxes_are_in_photo_pixels(detector):
    gray = cv2.resize(cv2.cvtColor(astronaut(), cv2.COLOR_RGB2GRAY), (1536, 1536))  # 3x, > face_max_side
    boxes = detector.detect(gray)
    assert any(_near_face([v / 3 for v in b]) for b in boxes), boxes


def test_overlapping_detections_of_one_face_are_merged():
    from fer.runtime.cascade import suppress_overlaps

    kept = suppress_overlaps([(514, 190, 298, 298), (583, 228, 240, 240), (1248, 1294, 98, 98)])
    assert kept == [(514, 190, 298, 298), (1248, 1294, 98, 98)]


def test_no_face(detector, photos):
    assert detector.detect(cv2.imread(str(photos / "no_face.png"), cv2.IMREAD_GRAYSCALE)) == []
    assert detector.detect(np.zeros((10, 10), np.uint8)) == []  # smaller than any face


def test_crop_is_48x48_gray_with_margin_clipped_to_photo():
    img = np.zeros((100, 120, 3), np.uint8)
    img[20:60, 30:70] = 255
    face = crop_face(img, (30, 20, 40, 40), margin=0.0)
    assert face.shape == (48, 48) and face.dtype == np.uint8 and face.min() == 255
    wide = crop_face(img, (30, 20, 40, 40), margin=0.25)  # 10 px of black on each side
    assert wide[0, 0] == 0 and wide[24, 24] == 255
    assert crop_face(img, (0, 0, 40, 40), margin=0.5).shape == (48, 48)  # margin past the edge: clipped


def test_scan_photos_and_bad_photo(detector, photos, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    paths = [str(photos / "astronaut.jpg"), str(photos / "no_face.png"), str(bad)]
    with pytest.raises(DataError, match="broken.jpg"):
        scan_photos(paths, detector)
    scan = scan_photos(paths, detector, on_bad_image="skip")
    assert scan.n_faces == 1 and scan.crops.shape == (1, 48, 48)
    assert [len(b) for b in scan.boxes] == [1, 0] and len(scan.skipped) == 1


def test_unknown_backend_and_the_names_before_yunet():
    with pytest.raises(UserError, match="face_detector=dlib: expected one of auto, yunet, yunet_fer, haar, lbp"):
        FaceDetector("dlib")
    assert FaceDetector("auto").backend == "yunet_fer"
    assert FaceDetector("skimage").backend == "lbp"  # configs written before YuNet keep working


# ---------------------------------------------------------------------------------------------- predict.py
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A small untrained MLP saved the way train.py saves models (the labels do not matter here)."""
    import torch

    from helpers import classifier

    torch.manual_seed(0)
    model = classifier("mlp", {"hidden": (32,)})
    path = tmp_path_factory.mktemp("ckpt") / "mlp.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "fer_model": "mlp"}, path)
    return path


def _predict(ckpt: Path, tmp_path: Path, *overrides: str):
    from fer.predict.app import run_predict

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("predict", overrides=[f"ckpt={ckpt}", f"output={tmp_path / 'faces.csv'}", "face_detect=true",
                                            f"paths.cache_dir={tmp_path / 'cache'}", "progress=false", *overrides])
    return run_predict(cfg)


def test_predict_faces_rows_and_annotations(ckpt, photos, tmp_path):
    result = _predict(ckpt, tmp_path, f"input={photos}", "probabilities=true", f"annotate={tmp_path / 'drawn'}")
    with open(tmp_path / "faces.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:7] == ["image", "face", "x", "y", "w", "h", "label"] and list(rows[0])[-1] == "note"
    assert len(rows) == result.rows == 2
    face, none = rows  # sorted by photo name: astronaut.jpg, no_face.png
    assert face["image"] == "astronaut.jpg" and face["face"] == "0" and face["note"] == ""
    assert _near_face(tuple(int(face[k]) for k in "xywh"))
    assert 0 <= int(face["label"]) < 7
    assert abs(sum(float(v) for k, v in face.items() if k.startswith("prob_")) - 1) < 1e-4
    assert none["image"] == "no_face.png" and none["face"] == "-1" and none["label"] == ""
    assert none["note"] == "no face detected"
    assert result.probs.shape == (1, 7)
    drawn = cv2.imread(str(tmp_path / "drawn" / "astronaut.jpg"))
    original = cv2.imread(str(photos / "astronaut.jpg"))
    assert drawn.shape == original.shape and np.abs(drawn.astype(int) - original).max() > 100  # boxes drawn
    assert (tmp_path / "drawn" / "no_face.png").is_file()


def test_annotated_copy_path_is_known_before_writing(tmp_path):
    # the output guard checks the file that annotate_photo will write, so the PNG fallback is decided up front
    from fer.predict.faces import annotated_path

    assert annotated_path(tmp_path / "a.jpg") == tmp_path / "a.jpg"
    assert annotated_path(tmp_path / "a.unknownformat") == tmp_path / "a.png"


def test_predict_faces_bad_input(ckpt, photos, tmp_path):
    with pytest.raises(UserError, match="face_detect=true needs photos"):
        _predict(ckpt, tmp_path)
    bad = tmp_path / "in" / "broken.png"
    bad.parent.mkdir()
    bad.write_bytes(b"\x89PNG nothing")
    with pytest.raises(DataError, match="broken.png"):
        _predict(ckpt, tmp_path, f"input=[{bad},{photos / 'astronaut.jpg'}]")
    result = _predict(ckpt, tmp_path, f"input=[{bad},{photos / 'astronaut.jpg'}]", "on_bad_image=skip")
    assert result.skipped == 1 and Path(result.skipped_file).is_file() and result.rows == 1
    with pytest.raises(DataError, match="none of the 1 photo"):
        _predict(ckpt, tmp_path, f"input={bad}", "on_bad_image=skip")
    # a decompression bomb among the photos: refused from its header, or skipped and listed
    from conftest import png_bomb

    bomb = png_bomb(tmp_path / "in" / "bomb.png", side=8000)
    with pytest.raises(DataError, match="bomb.png: 8000x8000 pixels, over the limit of 50,000,000"):
        _predict(ckpt, tmp_path, f"input=[{bomb},{photos / 'astronaut.jpg'}]")
    result = _predict(ckpt, tmp_path, f"input=[{bomb},{photos / 'astronaut.jpg'}]", "on_bad_image=skip")
    assert result.skipped == 1 and "bomb.png" in Path(result.skipped_file).read_text() and result.rows == 1


def test_several_faces_in_one_photo_rows_order_and_boxes(ckpt, tmp_path):
    """A group photo (the astronaut twice: as is on the right, mirrored on the left and 100 px lower, so that left
    to right is not top to bottom): one row per face, left to right, each box on its face, each face's
    probabilities those of its own crop."""
    import torch

    from fer.models.loading import load_model

    photo, shift = astronaut(), 100
    blank = np.zeros((shift, *photo.shape[1:]), photo.dtype)
    # 1024 x 612: faces near x = 290 (lower) and 734
    group = np.concatenate([np.concatenate([blank, photo[:, ::-1]]), np.concatenate([photo, blank])], axis=1)
    folder = tmp_path / "group"
    folder.mkdir()
    cv2.imwrite(str(folder / "b_group.png"), cv2.cvtColor(np.ascontiguousarray(group), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "a_single.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    result = _predict(ckpt, tmp_path, f"input={folder}", "probabilities=true")
    with open(tmp_path / "faces.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["image"], r["face"]) for r in rows] == [("a_single.png", "0"), ("b_group.png", "0"),
                                                       ("b_group.png", "1")]
    boxes = [tuple(int(r[k]) for k in "xywh") for r in rows]
    mirrored_centre = (512 - FACE_CENTRE[0], FACE_CENTRE[1] + shift)
    for box, (cx, cy) in zip(boxes, [FACE_CENTRE, mirrored_centre, (512 + FACE_CENTRE[0], FACE_CENTRE[1])]):
        x, y, w, h = box
        assert abs(x + w / 2 - cx) < 30 and abs(y + h / 2 - cy) < 30 and 0.6 < w / FACE_SIZE < 1.6, box
    # each row's probabilities are the model's on that face's own crop (faces are batched, not mixed up)
    _, crops = FaceDetector().faces(cv2.cvtColor(np.ascontiguousarray(group), cv2.COLOR_RGB2BGR))
    with torch.no_grad():
        expected = load_model(ckpt).predict_proba(torch.from_numpy(crops).float().div(255).unsqueeze(1)).numpy()
    got = np.array([[float(r[f"prob_{c}"]) for c in ("angry", "disgust", "fear", "happy", "sad", "surprise",
                                                       "neutral")] for r in rows[1:]])
    np.testing.assert_allclose(got, expected, atol=2e-3)  # bf16 where the CPU has it
    assert result.rows == 3 and result.extra["faces"] == 3
