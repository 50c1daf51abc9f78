"""bench/expressions.py, expression labels on real photos end to end: it reads class folders (any spelling
fer.classes knows, non-class folders reported) and GENKI-4K's labels, counts a photo without a face as wrong, names
unreadable files, and scores smiles against the model's P(happy)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.expressions import LabelledPhoto, read_class_folders, read_genki, run, score_classes, score_smiles
from fer.classes import CLASS_NAMES
from fer.runtime.faces import FaceDetector

ASTRONAUT = Path(__file__).resolve().parent / "data" / "astronaut.jpg"
HAPPY, FEAR = CLASS_NAMES.index("happy"), CLASS_NAMES.index("fear")

pytestmark = pytest.mark.usefixtures("one_thread")


def _onehot(c: int) -> np.ndarray:
    return np.eye(len(CLASS_NAMES))[c]


def test_class_folders_any_spelling_and_the_left_out_ones_reported(tmp_path):
    for folder, names in {"Happy": ["a.jpg", "b.png", ".DS_Store"], "Scared": ["c.jpg"], "Random": ["d.jpg"]}.items():
        (tmp_path / folder).mkdir()
        for name in names:
            (tmp_path / folder / name).write_bytes(b"x")
    photos, notes = read_class_folders(tmp_path)
    assert [(p.path.name, p.label) for p in photos] == [("a.jpg", HAPPY), ("b.png", HAPPY), ("c.jpg", FEAR)]
    assert notes == ["Random/: no expression class, 1 file(s) left out"]
    with pytest.raises(SystemExit, match="no class folders"):
        read_class_folders(tmp_path / "Random")


def test_genki_labels_and_a_bad_line(tmp_path):
    (tmp_path / "labels.txt").write_text("1 0.1 0.2 0.3\n0 0 0 0\n\n")
    assert read_genki(tmp_path) == [LabelledPhoto(tmp_path / "files" / "file0001.jpg", 1),
                                    LabelledPhoto(tmp_path / "files" / "file0002.jpg", 0)]
    (tmp_path / "labels.txt").write_text("1 0 0 0\n2 0 0 0\n")
    with pytest.raises(SystemExit, match=r"line\(s\) \[2\]"):
        read_genki(tmp_path)


def test_no_face_counts_as_wrong_end_to_end():
    photos = [LabelledPhoto(Path(f"{i}.jpg"), c) for i, c in enumerate([HAPPY, HAPPY, FEAR, FEAR])]
    r = score_classes(photos, [_onehot(HAPPY), _onehot(FEAR), _onehot(FEAR), None])
    assert r["found"] == 0.75 and r["acc_found"] == pytest.approx(2 / 3) and r["end_to_end"] == 0.5
    assert r["per_class"] == {"fear": (1, 2), "happy": (1, 2)}


def test_smiles_against_happy_and_its_auc():
    photos = [LabelledPhoto(Path(f"{i}.jpg"), s) for i, s in enumerate([1, 1, 0, 0, 1])]
    sad = CLASS_NAMES.index("sad")
    probs = [_onehot(HAPPY) * 0.9 + _onehot(sad) * 0.1, _onehot(sad) * 0.6 + _onehot(HAPPY) * 0.4,
             _onehot(sad) * 0.8 + _onehot(HAPPY) * 0.2, _onehot(sad), None]
    r = score_smiles(photos, probs)
    # found 4 of 5; right: smile->happy yes, smile->sad no, none->sad yes twice; P(happy) ranks both smiles first
    assert r["found"] == 0.8 and r["acc_found"] == 0.75 and r["end_to_end"] == pytest.approx(3 / 5)
    assert r["auc"] == 1.0


def test_an_unreadable_photo_is_named_and_counted(tmp_path):
    from fer.runtime import ExpressionModel

    shutil.copy(ASTRONAUT, tmp_path / "astronaut.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    photos = [LabelledPhoto(tmp_path / "astronaut.jpg", HAPPY), LabelledPhoto(tmp_path / "empty.jpg", HAPPY)]
    probs, unreadable, ms = run(ExpressionModel(threads=1), FaceDetector("yunet", threads=1), photos)
    assert probs[0].shape == (len(CLASS_NAMES),) and int(np.argmax(probs[0])) == HAPPY  # she smiles
    assert probs[1] is None and len(unreadable) == 1 and "empty.jpg" in unreadable[0] and ms > 0
