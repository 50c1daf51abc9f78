"""The torch-free runtime as users meet it: fer-classify on photos, face crops and folders (auto, crops and faces
modes), the CSV it shares with predict.py, the bundled model, and its refusals."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fer.classes import CLASS_NAMES, IMAGE_SIZE
from fer.errors import DataError, UserError
from fer.runtime import ExpressionModel
from fer.runtime.cli import WHOLE, main
from fer.runtime.metadata import ModelInfo
from fer.runtime.table import NO_FACE, PROB_COLUMNS

from helpers import CONF, ROOT

ASTRONAUT = ROOT / "tests" / "data" / "astronaut.jpg"
ASTRONAUT_FACE = (222, 115)  # centre of the face in the 512x512 photo, measured by eye

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    """A small untrained MLP exported directly (no training, no data set): what the runtime sees of any model."""
    from fer.export.onnx_file import export_onnx
    from helpers import classifier

    torch.manual_seed(0)
    model = classifier("mlp", {"hidden": (32,)})
    path = tmp_path_factory.mktemp("runtime") / "mlp.onnx"
    return export_onnx(model, path, ModelInfo("mlp", CLASS_NAMES, IMAGE_SIZE, data="fer2013"))


@pytest.fixture
def ledger(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))  # the runtime's record of its own outputs


@pytest.fixture
def inputs(tmp_path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "astronaut.jpg").write_bytes(ASTRONAUT.read_bytes())
    y, x = np.mgrid[0:240, 0:320]
    scene = ((x + y) * 255 / 560).astype(np.uint8)  # a photo with nothing face-like in it
    cv2.imwrite(str(folder / "no_face.png"), scene)
    crop = cv2.resize(cv2.imread(str(ASTRONAUT), cv2.IMREAD_GRAYSCALE)[60:170, 170:280], (48, 48))
    cv2.imwrite(str(folder / "crop.png"), crop)
    return folder


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_auto_mode_finds_faces_in_photos_and_takes_crops_as_they_are(onnx_model, inputs, tmp_path, ledger, capsys):
    """A photo is never squashed to 48x48: its faces are found (with boxes); a photo without a face says so; a
    face crop is classified whole."""
    out = tmp_path / "faces.csv"
    assert main([str(inputs), "--model", str(onnx_model), "--output", str(out)]) == 0
    rows = _rows(out)
    assert list(rows[0]) == ["image", "face", "x", "y", "w", "h", "label", *PROB_COLUMNS, "note"]
    by_image = {r["image"]: r for r in rows}
    assert len(rows) == 3 and set(by_image) == {"astronaut.jpg", "crop.png", "no_face.png"}
    face = by_image["astronaut.jpg"]
    x, y, w, h = (int(face[k]) for k in "xywh")
    assert abs(x + w / 2 - ASTRONAUT_FACE[0]) < 30 and abs(y + h / 2 - ASTRONAUT_FACE[1]) < 30
    assert face["face"] == "0" and face["label"] in CLASS_NAMES and face["note"] == ""
    assert by_image["crop.png"]["note"] == WHOLE and [by_image["crop.png"][k] for k in "xywh"] == ["0", "0", "48", "48"]
    assert by_image["no_face.png"]["face"] == "-1" and by_image["no_face.png"]["note"] == NO_FACE
    assert by_image["no_face.png"]["label"] == ""
    probs = np.array([[float(face[c]) for c in PROB_COLUMNS]])
    assert abs(probs.sum() - 1) < 1e-4
    assert "2 face(s) in 3 images; no face found in 1" in capsys.readouterr().out


def test_crops_mode_classifies_every_image_whole_and_faces_mode_searches_every_one(onnx_model, inputs, tmp_path,
                                                                                  ledger):
    crops = tmp_path / "crops.csv"
    assert main([str(inputs), "--model", str(onnx_model), "--output", str(crops), "--mode", "crops",
                 "--labels", "index", "--no-probabilities"]) == 0
    rows = _rows(crops)
    assert list(rows[0]) == ["image", "label"] and [r["image"] for r in rows] == ["astronaut.jpg", "crop.png",
                                                                                  "no_face.png"]
    assert all(r["label"] in {str(i) for i in range(7)} for r in rows)
    faces = tmp_path / "searched.csv"
    assert main([str(inputs / "crop.png"), "--model", str(onnx_model), "--output", str(faces), "--mode", "faces"]) == 0
    assert len(_rows(faces)) == 1 and _rows(faces)[0]["note"] != WHOLE  # searched by the detector, not taken whole


def test_a_16_bit_crop_is_read_like_the_training_data(onnx_model, tmp_path, ledger):
    crop = (np.random.default_rng(0).integers(0, 65536, (48, 48))).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), crop)
    out = tmp_path / "deep.csv"
    assert main([str(tmp_path / "deep.png"), "--model", str(onnx_model), "--output", str(out)]) == 0
    (face,) = ExpressionModel(onnx_model).analyze(tmp_path / "deep.png")
    assert face.whole and _rows(out)[0]["label"] == face.label


def test_a_model_given_first_is_still_the_model(onnx_model, inputs, tmp_path, ledger):
    """Before the bundled model, the model was the first argument: `python -m fer.runtime model.onnx photo.jpg`."""
    out = tmp_path / "old_style.csv"
    assert main([str(onnx_model), str(inputs / "crop.png"), "--output", str(out)]) == 0
    assert [r["image"] for r in _rows(out)] == ["crop.png"]


def test_unreadable_files_stop_with_their_name_or_are_skipped_and_counted(onnx_model, inputs, tmp_path, ledger,
                                                                          capsys):
    (inputs / "notes.txt").write_text("not an image")
    out = tmp_path / "out.csv"
    assert main([str(inputs), "--model", str(onnx_model), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "notes.txt: not a readable image" in err and "--skip-bad" in err and not out.exists()
    assert main([str(inputs), "--model", str(onnx_model), "--output", str(out), "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert "skipped 1 unreadable file(s)" in captured.err and "notes.txt" in captured.err
    assert "1 unreadable file(s) skipped" in captured.out and len(_rows(out)) == 3


@pytest.mark.parametrize("which", ["exported", "pretrained"])
def test_predict_py_writes_the_same_csv_as_the_runtime(which, onnx_model, tmp_path, ledger):
    """One table writer: predict.py with the runtime's options gives the runtime's file, byte for byte; the
    bundled model is ckpt=pretrained there and the runtime's default."""
    from hydra import compose, initialize_config_dir

    from fer.predict.app import run_predict

    crops = tmp_path / "crops"
    crops.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        cv2.imwrite(str(crops / f"c{i}.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
    runtime_csv, predict_csv = tmp_path / "runtime.csv", tmp_path / "predict.csv"
    model_args, ckpt = (["--model", str(onnx_model)], onnx_model) if which == "exported" else ([], "pretrained")
    assert main([str(crops), *model_args, "--output", str(runtime_csv)]) == 0
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("predict", overrides=[f"ckpt={ckpt}", f"input={crops}", f"output={predict_csv}",
                                            "label_format=name", "probabilities=true", "progress=false",
                                            f"paths.cache_dir={tmp_path / 'cache'}"])
    run_predict(cfg)
    assert predict_csv.read_bytes() == runtime_csv.read_bytes()


def test_refusals_are_one_line(onnx_model, tmp_path, ledger, capsys):
    assert main([str(tmp_path / "missing.jpg"), "--model", str(onnx_model), "--output", str(tmp_path / "o.csv")]) == 2
    assert "input not found" in capsys.readouterr().err
    assert main([str(ASTRONAUT), "--model", str(tmp_path / "nope.onnx"), "--output", str(tmp_path / "o.csv")]) == 2
    assert "model not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--model", str(onnx_model), "--output", str(tmp_path / "o.csv")]) == 2
    assert "empty folder" in capsys.readouterr().err


def test_analyze_api_photo_and_crop(onnx_model):
    model = ExpressionModel(onnx_model)
    (face,) = model.analyze(ASTRONAUT)
    assert not face.whole and face.crop.shape == (48, 48) and face.label in CLASS_NAMES
    crop = cv2.imread(str(ASTRONAUT))[60:170, 170:280]  # 110 px: larger than 96, so a photo to search
    assert model.analyze(cv2.resize(crop, (90, 90)))[0].whole
    with pytest.raises(DataError, match="missing.jpg"):
        model.analyze("missing.jpg")


def test_classifying_a_photo_whole_warns(onnx_model, caplog):
    with caplog.at_level("WARNING", logger="fer"):
        ExpressionModel(onnx_model).classify_files([ASTRONAUT])
    assert "astronaut.jpg (512x512)" in caplog.text and "analyze()" in caplog.text


def test_a_model_trained_on_synthetic_faces_says_so(tmp_path, caplog):
    from fer.export.onnx_file import export_onnx
    from helpers import classifier

    path = export_onnx(classifier("mlp", {"hidden": (8,)}), tmp_path / "synthetic.onnx",
                       ModelInfo("mlp", CLASS_NAMES, IMAGE_SIZE, data="synthetic"))
    with caplog.at_level("WARNING", logger="fer"):
        ExpressionModel(path)
    assert "synthetic drawn faces only" in caplog.text


def test_views_baked_into_the_graph_are_the_tta_views(tmp_path):
    """export views=flip_shifts: the file's plain call gives what tta=true tta_shifts=true gives on the plain file."""
    from fer.export.onnx_file import export_onnx
    from helpers import classifier

    torch.manual_seed(1)
    net = classifier("mlp", {"hidden": (16,)})
    plain = ExpressionModel(export_onnx(net, tmp_path / "plain.onnx", ModelInfo("mlp", CLASS_NAMES, IMAGE_SIZE)))
    baked = ExpressionModel(export_onnx(net, tmp_path / "baked.onnx",
                                        ModelInfo("mlp", CLASS_NAMES, IMAGE_SIZE, views="flip_shifts")))
    x = np.random.default_rng(0).integers(0, 256, (9, 48, 48), dtype=np.uint8)
    assert baked.info.views == "flip_shifts"
    np.testing.assert_allclose(baked.predict_proba(x), plain.predict_proba(x, tta=True, tta_shift=2), atol=1e-5)
    assert np.abs(baked.predict_proba(x) - plain.predict_proba(x)).max() > 1e-4  # the views do change the answer
    np.testing.assert_array_equal(baked.predict_proba(x, tta=True), baked.predict_proba(x))  # never twice


@pytest.mark.parametrize("views", ["none", pytest.param("flip_shifts", marks=pytest.mark.slow)])  # ~15 s
def test_a_crop_model_exports_with_its_ten_crop_evaluation(views, tmp_path):
    """A model trained on 40x40 crops and evaluated by ten crops: the runtime, given 48x48 faces, answers what the
    checkpoint answers (with the same test-time views; the mirror view skipped, as ten crops already hold it)."""
    from fer.export.check import compare, torch_probabilities
    from fer.export.onnx_file import export_onnx
    from helpers import classifier

    torch.manual_seed(0)
    model = classifier("cnn_deep", {"channels": [8, 16, 16, 32], "fc": 64}, crop_size=40).eval()
    assert model.mirror_invariant
    runtime = ExpressionModel(export_onnx(model, tmp_path / "crops.onnx",
                                          ModelInfo("cnn_deep", CLASS_NAMES, IMAGE_SIZE, views=views)))
    faces = np.random.default_rng(0).integers(0, 256, (200, 48, 48), dtype=np.uint8)
    result = compare(torch_probabilities(model, faces, views=views), runtime.predict_proba(faces))
    assert result.agreement >= 0.995 and result.max_abs_diff < 1e-4, result


def test_the_default_face_detector_needs_neither_the_haar_cascade_nor_scikit_image(monkeypatch):
    """YuNet ships in the package and runs on ONNX Runtime: an OpenCV without the Haar cascade (OpenCV 5) and an
    install without scikit-image still find faces; asking for a cascade that is not there is one line."""
    import builtins

    import cv2

    import fer.runtime.cascade as cascade
    from fer.runtime.faces import FaceDetector

    real_import = builtins.__import__

    def no_skimage(name, *args, **kwargs):
        if name.startswith("skimage"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(cascade, "haar_path", lambda: None)
    monkeypatch.setattr(builtins, "__import__", no_skimage)
    assert len(FaceDetector().detect(cv2.imread(str(ASTRONAUT)))) == 1
    with pytest.raises(UserError, match="face_detector=lbp needs scikit-image"):
        FaceDetector("lbp")
    with pytest.raises(UserError, match="face_detector=haar: this OpenCV .* has no"):
        FaceDetector("haar")


@pytest.mark.parametrize("entry", ["train.py", "predict.py", "export.py", "fer-classify"])
def test_fer_cache_dir_pointing_at_a_file_is_one_line(entry, tmp_path, monkeypatch, capsys):
    import subprocess
    import sys

    afile = tmp_path / "not-a-folder"
    afile.write_text("x")
    expected = f"error: FER_CACHE_DIR={afile} is a file, not a folder: point it at a folder (made if missing)"
    if entry == "fer-classify":
        from fer.runtime.cli import main

        monkeypatch.setenv("FER_CACHE_DIR", str(afile))
        assert main([str(ASTRONAUT), "--output", str(tmp_path / "out.csv")]) == 2
        assert capsys.readouterr().err.strip() == expected
        return
    proc = subprocess.run([sys.executable, str(ROOT / entry), "ckpt=pretrained"], capture_output=True, text=True,
                          env={**os.environ, "FER_CACHE_DIR": str(afile)}, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == expected, proc.stderr


@pytest.mark.parametrize("case,message", [
    ("three outputs", r"its output is \[.*\], not one float \[N,7\] array of probabilities"),
    ("ten classes", r"its output is \[.*\], not one float \[N,7\] array of probabilities"),
    ("fails at run time", r"the model failed on a batch of 2 face\(s\)"),
    ("wrong rows", r"the model returned an array of shape \(1, 7\) for 2 face\(s\)"),
])
def test_a_graph_that_does_not_give_probabilities_is_one_line(case, message, tmp_path):
    """A file with fer's metadata whose graph has other outputs, or fails or answers wrongly at run time: one line
    naming the file (at loading where its declared outputs show it, else at the first prediction)."""
    import onnx
    from onnx import TensorProto, helper

    from fer.runtime import ExpressionModel
    from fer.runtime.bundled import model_path

    meta = {p.key: p.value for p in onnx.load(str(model_path(None)), load_external_data=False).metadata_props}
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, ["n", 48, 48])

    def out(name, dims):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)

    def const(name, values):
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.INT64,
                                                                                   [len(values)], values))

    cast = helper.make_node("Cast", ["x"], ["f"], to=TensorProto.FLOAT)
    nodes, outputs = {
        "three outputs": ([cast, helper.make_node("Identity", ["f"], ["a"]), helper.make_node("Identity", ["f"], ["b"]),
                           helper.make_node("Identity", ["f"], ["c"])], [out(n, ["n", 48, 48]) for n in "abc"]),
        "ten classes": ([cast, const("s", [-1, 2304]), helper.make_node("Reshape", ["f", "s"], ["r"]),
                         const("st", [0]), const("en", [10]), const("ax", [1]),
                         helper.make_node("Slice", ["r", "st", "en", "ax"], ["y"])], [out("y", ["n", 10])]),
        "fails at run time": ([cast, const("s", [-1, 7]), helper.make_node("Reshape", ["f", "s"], ["y"])],
                              [out("y", ["n", 7])]),
        "wrong rows": ([cast, const("s", [-1, 2304]), helper.make_node("Reshape", ["f", "s"], ["r"]),
                        const("st", [0, 0]), const("en", [1, 7]), const("ax", [0, 1]),
                        helper.make_node("Slice", ["r", "st", "en", "ax"], ["y"])], [out("y", ["m", 7])]),
    }[case]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], outputs),
                              opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, meta)
    path = tmp_path / "odd.onnx"
    onnx.save(model, str(path))
    faces = np.zeros((2, 48, 48), np.uint8)
    with pytest.raises(UserError, match=f"^{path}: {message}"):
        ExpressionModel(path).predict_proba(faces)
