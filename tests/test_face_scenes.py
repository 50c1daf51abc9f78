"""bench/faces.py's reference crop: a face cut from its true square in a generated scene is the face that was placed
there, turned back upright, so the benchmark's "perfect detector" rows measure what they say."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bench.faces import gap_by_condition, truth_crop
from bench.scenes import DEGRADATIONS, make_scene


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


def test_the_gap_table_shrinks_each_fer_crop_to_its_face_size_in_the_scene():
    """The "shrunk" row of bench/faces.py's gap table is each face's FER crop at as many pixels as the scene gave it:
    a classifier that is right only on full-detail pixel noise is right on every FER crop and on the shrunk crops of
    faces of 48 px or more, wrong on those of faces under 40 px."""
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, size=(20, 48, 48)).astype(np.uint8)

    def classify(crops: np.ndarray) -> np.ndarray:  # class 0 where the pixels keep their full detail, else class 1
        detail = np.array([np.abs(cv2.Laplacian(c.astype(np.float32), cv2.CV_32F)).mean() for c in crops])
        return np.eye(7)[(detail < 200).astype(int)]

    scenes = [make_scene(rng, faces, np.zeros(20, dtype=np.int64), np.arange(20)) for _ in range(30)]
    truth = [t for _, faces_of in scenes for t in faces_of]
    table = gap_by_condition(scenes, classify, faces, np.zeros(len(truth), bool)).splitlines()
    columns = [c.strip() for c in table[0].split("|")[1:-1]]
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]] for r in table[2:]}
    shrunk, crops = rows["FER crops shrunk to the face's scene size"], rows["FER crops"]
    assert set(crops) == {"1.00", "1.000"} and rows["cut from the scene (a perfect detector)"][0] == "0.000"
    assert shrunk[columns.index("24-40 px") - 1] == "0.00" and shrunk[columns.index("120-200 px") - 1] == "1.00"
    big = np.mean([t.square[2] >= 47.5 for t in truth])
    assert float(shrunk[0]) == pytest.approx(big, abs=1e-3)  # right on exactly the faces of 48 px or more


def test_a_scene_without_a_degradation_is_the_same_scene_otherwise():
    """bench/scene_gap.py compares scenes with one degradation left out against the scenes as generated: the same
    faces in the same places at the same sizes, or the difference would measure other faces. With all of them left
    out, each face is the FER crop resized into its square, nothing else."""
    faces = _faces(20, np.random.default_rng(1))

    def scenes(without=frozenset()):
        rng = np.random.default_rng(0)
        return [make_scene(rng, faces, np.arange(20) % 7, np.arange(20), without) for _ in range(6)]

    def placed(made):
        return [(t.square, t.index, t.label) for _, truth in made for t in truth]

    generated = scenes()
    for name in DEGRADATIONS:
        other = scenes(frozenset([name]))
        assert placed(other) == placed(generated), name
        assert any(not np.array_equal(a, b) for (a, _), (b, _) in zip(other, generated)), name
    bare = scenes(frozenset(DEGRADATIONS))
    assert placed(bare) == placed(generated)
    for img, truth in bare:
        for t in truth:
            x, y, side, _ = t.square
            face = cv2.resize(faces[t.index], (side, side), interpolation=cv2.INTER_AREA if side < 48 else
                              cv2.INTER_CUBIC).astype(np.float32)
            at = np.float32([[1, 0, x], [0, 1, y]])  # the square's corner is fractional: the paste interpolates
            expected = cv2.warpAffine(face, at, img.shape[1::-1], flags=cv2.INTER_LINEAR)
            inside = cv2.warpAffine(np.ones_like(face), at, img.shape[1::-1], flags=cv2.INTER_LINEAR) == 1
            assert t.angle == 0 and not t.covered and inside.sum() >= (side - 2) ** 2
            assert np.abs(img[inside].astype(int) - expected[inside, None]).max() <= 1


def test_an_unknown_degradation_is_refused():
    with pytest.raises(ValueError, match="no such degradation: \\['sepia'\\]"):
        make_scene(np.random.default_rng(0), _faces(2, np.random.default_rng(0)), np.zeros(2, int), np.arange(2),
                   frozenset(["sepia"]))


def test_the_ablation_table_has_a_row_per_degradation_and_the_crops_by_their_conditions_as_generated(monkeypatch):
    """bench/scene_gap.py: one row per degradation left out, on the same faces; the FER crops row groups the faces by
    their conditions as generated (not as in the last variant, where no face is turned or covered)."""
    import bench.scene_gap as gap

    faces = _faces(20, np.random.default_rng(1))
    labels = np.arange(20) % 7

    monkeypatch.setattr(gap, "split_faces", lambda data, source: (faces, labels, np.ones(20, bool)))
    table = gap.ablation_table(None, "val", 8, 0, lambda crops: np.eye(7)[np.zeros(len(crops), int)])
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]] for r in table.splitlines()[2:]}
    assert list(rows) == ["as generated", *[f"without {d}" for d in DEGRADATIONS], "without any of them",
                          "their FER crops"]
    assert "-" in rows["without turn"] and "-" not in rows["as generated"] and "-" not in rows["their FER crops"]
    placed = [t for _, truth in gap.make_scenes(faces, labels, np.ones(20, bool), 8, 0) for t in truth]
    assert rows["their FER crops"][0] == f"{np.mean([t.label == 0 for t in placed]):.3f}"  # class 0 said for all


def test_the_paired_table_gives_each_models_accuracy_on_the_same_faces_and_their_difference(monkeypatch):
    """bench/scene_gap.py --against: two stand-in models (one always says class 0, the other class 1) on the same
    faces; each row's difference is the first model's accuracy less the second's, overall and by size."""
    import bench.scene_gap as gap

    faces = _faces(20, np.random.default_rng(2))
    labels = np.arange(20) % 7
    monkeypatch.setattr(gap, "split_faces", lambda data, source: (faces, labels, np.ones(20, bool)))
    says = lambda c: (lambda crops: np.eye(7)[np.full(len(crops), c)])  # noqa: E731
    table = gap.paired_table(None, "val", 12, 0, says(0), says(1))
    rows = {r.split("|")[1].strip(): [float(c) for c in r.split("|")[2:-1]] for r in table.splitlines()
            if r.startswith("| ") and not r.startswith("| faces |")}
    placed = [t for _, truth in gap.make_scenes(faces, labels, np.ones(20, bool), 12, 0) for t in truth]
    zero, one = np.mean([t.label == 0 for t in placed]), np.mean([t.label == 1 for t in placed])
    for name in ("cut from the scene (a perfect detector)", "FER crops"):
        assert rows[name][:3] == pytest.approx([zero, one, zero - one], abs=6e-4)
    for name, lo, hi in (("24-40", 24, 40), ("40-70", 40, 70)):
        some = [t for t in placed if lo <= t.square[2] < hi]
        assert rows[f"cut from the scene, {name} px"][2] == pytest.approx(
            np.mean([t.label == 0 for t in some]) - np.mean([t.label == 1 for t in some]), abs=6e-4)
