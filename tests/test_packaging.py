"""The package as users install it: `pip install <checkout>` gives the torch-free runtime with the bundled model,
which works from any folder, offline; the [train] extra pins what requirements.txt pins."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from helpers import ROOT

# what a user types, from a folder outside the checkout, with the network cut off (any connection attempt raises)
THREE_LINES = """
import socket
def _no_network(*args, **kwargs):
    raise OSError("network access attempted")
socket.socket.connect = socket.create_connection = _no_network

from fer.runtime import ExpressionModel
model = ExpressionModel()
faces = model.analyze(PHOTO)

import sys, numpy as np, cv2
crop = cv2.resize(cv2.imread(PHOTO, cv2.IMREAD_GRAYSCALE)[60:170, 170:280], (48, 48))
print(len(faces), faces[0].label, model.predict(crop)[0], model.info.data, model.path.parents[3].name)
print(sorted(k for k in ("torch", "pytorch_lightning", "hydra", "sklearn", "mlflow") if k in sys.modules))
"""


def _requirement_pins(path: Path) -> set[str]:
    return {line.split("#")[0].strip() for line in path.read_text().splitlines()
            if line.split("#")[0].strip() and not line.startswith("pytest")}


def test_train_extra_pins_what_requirements_txt_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set(project["optional-dependencies"]["train"]) == _requirement_pins(ROOT / "requirements.txt")
    runtime = {d.split(">")[0].split("=")[0] for d in project["dependencies"]}
    assert runtime == {"numpy", "onnxruntime", "opencv-python-headless"}  # torch-free by construction


def test_the_bundled_model_is_package_data_within_the_size_limit():
    from fer.runtime.bundled import bundled_model_path

    path = bundled_model_path()
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert path.relative_to(ROOT / "fer" / "runtime").match(package_data["fer.runtime"][0])
    assert path.stat().st_size <= 16 * 2**20


def test_the_bundled_model_gives_probabilities_that_sum_to_one():
    """Each row of the shipped file's probabilities sums to 1: its softmax and views' average are fp32 (an int8
    graph that quantized them gave rows of 0.98-1.02, in steps of about 0.004)."""
    import numpy as np

    from fer.runtime import ExpressionModel

    faces = np.random.default_rng(0).integers(0, 256, (32, 48, 48), dtype=np.uint8)
    probs = ExpressionModel(threads=1).predict_proba(faces)
    assert np.abs(probs.sum(axis=1) - 1).max() < 1e-5


@pytest.mark.slow
def test_wheel_installs_without_torch_and_works_offline_from_anywhere(tmp_path):
    """Build the wheel, install it into a fresh venv (no torch), and from a folder outside the checkout: the three
    lines classify the faces of a photo and a face crop with the bundled model; fer-classify does the same."""
    from bench.install_size import build_wheel

    venv, elsewhere = tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    wheel = build_wheel(tmp_path)
    packed = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("fer/")}
    assert packed == {str(p.relative_to(ROOT)) for p in (ROOT / "fer").rglob("*")
                      if p.is_file() and "__pycache__" not in p.parts}  # all of fer/, the model too; nothing stale
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=900)
    installed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True,
                               text=True, check=True).stdout.lower()
    assert "torch" not in installed and "onnxruntime" in installed
    photo = str(ROOT / "tests" / "data" / "astronaut.jpg")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FER_ROOT")}
    env["FER_CACHE_DIR"] = str(tmp_path / "cache")
    proc = subprocess.run([str(python), "-c", f"PHOTO = {photo!r}\n" + THREE_LINES], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found, modules = proc.stdout.strip().splitlines()[-2:]
    n_faces, label, crop_label, data, site = found.split()
    assert n_faces == "1" and label in CLASSES and crop_label in CLASSES and data == "fer2013"
    assert site == "site-packages" and modules == "[]"  # the installed copy, not the checkout; no torch
    out = elsewhere / "photo.csv"
    proc = subprocess.run([str(venv / "bin" / "fer-classify"), photo, "--output", str(out)], cwd=elsewhere,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = out.read_text().splitlines()
    assert rows[0].startswith("image,face,x,y,w,h,label,prob_angry") and len(rows) == 2
    assert rows[1].split(",")[6] == label  # the command and the API agree


CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@pytest.mark.slow
def test_bundled_model_scores_on_publictest_what_its_metadata_and_card_say(shared_fer2013):
    """The shipped file, through the runtime's default call, on FER2013 publictest: the accuracy recorded in its
    metadata at export (the model card's figure), to the last image."""
    import numpy as np

    from fer.data.opened import open_data
    from fer.data.sources import FolderSource
    from fer.runtime import ExpressionModel

    model = ExpressionModel()
    data = open_data(FolderSource(str(shared_fer2013)), str(ROOT / ".cache" / "fer"), progress=False)
    idx = data.cache.split_indices("publictest")
    accuracy = float((model.predict_proba(np.asarray(data.cache.images)[idx]).argmax(1) == data.cache.labels[idx])
                     .mean())
    assert model.info.data == "fer2013" and model.info.extra["fer.test_split"] == "publictest"
    assert accuracy == float(model.info.extra["fer.test_acc"])
    card = (ROOT / "docs" / "MODEL_CARD.md").read_text()
    assert f"{accuracy:.1%}" in card  # the card states what the file does


SUBMISSIONS = sorted((ROOT / "submissions").glob("*.csv"))


@pytest.mark.parametrize("path", SUBMISSIONS, ids=[p.name for p in SUBMISSIONS])
def test_committed_submission_is_in_the_challenge_format(path):
    """What the challenge scores: the header of challengeA_train.csv (image,label), labels 0-6, one row per test
    image; every committed submission covers the same images."""
    import csv

    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", "label"], f"{path.name}: header {rows[0]}"
    images = [r[0] for r in rows[1:]]
    assert all(len(r) == 2 and r[1] in set("0123456") for r in rows[1:]), path.name
    assert len(images) == len(set(images)) == 3589
    first = [r[0] for r in list(csv.reader(open(SUBMISSIONS[0], newline="")))[1:]]
    assert sorted(images) == sorted(first)


@pytest.mark.slow
def test_pretrained_submission_is_what_the_bundled_model_predicts(shared_challenge_a, tmp_path, monkeypatch):
    """submissions/pretrained.csv is the bundled model's default call on challengeA's images_test (prediction
    only), checked on every 8th image (a swapped model changes far more rows than that misses): a model swapped
    without rewriting the submission fails here."""
    from fer.runtime.cli import main

    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))  # the runtime's ledger of its outputs
    committed = (ROOT / "submissions" / "pretrained.csv").read_text().splitlines()
    sample = tmp_path / "sample"
    sample.mkdir()
    for row in committed[1::8]:
        (sample / row.split(",")[0]).symlink_to(shared_challenge_a / "images_test" / row.split(",")[0])
    out = tmp_path / "pretrained.csv"
    assert main([str(sample), "--labels", "index", "--no-probabilities", "--output", str(out)]) == 0
    assert out.read_text().splitlines() == [committed[0]] + committed[1::8]
