"""The MLflow model every run logs (fer.tracking.served_model), for every registered model (a new one is covered
with no test edit): uint8 faces in; the checkpoint's calibrated probabilities and the label out; bad input refused
with one line and HTTP 400, never answered. docs/SERVING.md is what these tests promise the user."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from fer.classes import CLASS_NAMES
from fer.data.augment import to_unit_float
from fer.data.synthetic import render_faces, synthetic_labels
from fer.models.base import CALIBRATION_KEY
from fer.models.loading import load_model
from fer.models.registry import list_models
from fer.models.svm import HogSVM
from fer.training import instantiate_model
from fer.tracking.served_model import input_example

from helpers import ROOT, compose_train

COLUMNS = [*CLASS_NAMES, "label"]


def write_untrained_checkpoint(name: str, folder: Path) -> Path:
    """The model of conf/model/<name>.yaml with untrained weights (the SVM fitted on a few synthetic faces), saved
    as train.py saves it, with a calibration temperature that is not 1 (so the served probabilities are calibrated)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = instantiate_model(compose_train(folder, [f"model={name}", "logger=none"]).model)
    if isinstance(model, HogSVM):  # its pipeline must be fitted before it predicts anything
        labels = synthetic_labels(28, seed=0)
        x = to_unit_float(torch.from_numpy(render_faces(labels, seed=0)))
        model._train_features, model._train_labels = [model.hog.transform(x.reshape(len(x), -1).numpy())], [labels]
        model.fit_pipeline()
    state = model.state_dict()
    state[CALIBRATION_KEY] = torch.tensor(1.7)
    checkpoint = {"state_dict": state, "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)  # the registered name (and the SVM's pipeline)
    path = folder / f"{name}.ckpt"
    torch.save(checkpoint, path)
    return path


def log_served_model(checkpoint: Path, store: Path) -> str:
    """Log `checkpoint` with RunRecord.log_model into a new run of the sqlite store at `store`; its model URI."""
    from mlflow.tracking import MlflowClient

    from fer.tracking.record import ARTIFACT_MODEL, RunRecord

    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    exp = client.get_experiment_by_name("serving")
    exp_id = exp.experiment_id if exp else client.create_experiment(
        "serving", artifact_location=(store / "artifacts").as_uri())
    run = client.create_run(exp_id)
    import mlflow

    callers = mlflow.get_tracking_uri()
    RunRecord(client, run.info.run_id, exp_id).log_model(checkpoint)
    assert mlflow.get_tracking_uri() == callers  # the process's store is left as the caller had it
    client.set_terminated(run.info.run_id)
    return f"runs:/{run.info.run_id}/{ARTIFACT_MODEL}"


def expected_probabilities(model, faces: np.ndarray) -> np.ndarray:
    """What the checkpoint's own predict_proba gives for faces / 255 as float [N,1,48,48]."""
    x = torch.from_numpy(faces).float().unsqueeze(1) / 255
    with torch.no_grad():
        return model.predict_proba(x).numpy()


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """Six synthetic faces, an all-black and an all-white image: uint8 [8,48,48]."""
    drawn = render_faces(synthetic_labels(6, seed=1), seed=1)
    return np.concatenate([drawn, np.zeros((1, 48, 48), np.uint8), np.full((1, 48, 48), 255, np.uint8)])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    import mlflow

    store = tmp_path_factory.mktemp("mlruns")
    # runs:/ URIs resolve through the process's store: the test points it there, as a user's program would
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    yield store
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module", params=list_models())
def served(request, store, tmp_path_factory):
    import mlflow.pyfunc

    checkpoint = write_untrained_checkpoint(request.param, tmp_path_factory.mktemp(request.param))
    uri = log_served_model(checkpoint, store)
    # dst_path: without it MLflow downloads the model into a temporary folder of its own and never removes it
    pyfunc = mlflow.pyfunc.load_model(uri, dst_path=str(tmp_path_factory.mktemp(f"{request.param}_download")))
    return SimpleNamespace(name=request.param, uri=uri, pyfunc=pyfunc, model=load_model(checkpoint))


def test_answer_is_the_checkpoints_calibrated_probabilities_and_label(served, faces):
    out = served.pyfunc.predict(faces)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == COLUMNS and len(out) == len(faces)
    expected = expected_probabilities(served.model, faces)
    np.testing.assert_allclose(out[list(CLASS_NAMES)].to_numpy(), expected, atol=1e-5)
    assert out["label"].tolist() == [CLASS_NAMES[i] for i in expected.argmax(1)]


def test_model_declares_uint8_faces_in_and_the_columns_out(served, tmp_path):
    """The input is declared by the example and the metadata (no input schema: MLflow would cast JSON pixels to it,
    truncating an image in [0,1] to black before the model's own check; see served_model.signature)."""
    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    metadata = served.pyfunc.metadata
    assert metadata.get_input_schema() is None and metadata.metadata["input"].startswith("uint8 grayscale faces")
    local = download_artifacts(served.uri, dst_path=str(tmp_path))  # MLflow's own temporary folder is never removed
    example = Model.load(local).load_input_example(local)
    example = np.asarray(example)  # stored as JSON: whole numbers 0-255, what a JSON client sends
    assert example.shape == (2, 48, 48) and example.min() >= 0 and example.max() <= 255
    np.testing.assert_array_equal(example, input_example())
    assert served.pyfunc.predict(example)["label"].tolist() == served.pyfunc.predict(input_example())["label"].tolist()
    assert metadata.get_output_schema().input_names() == COLUMNS


def test_integral_int64_and_float64_one_image_and_an_empty_batch(served, faces):
    out = served.pyfunc.predict(faces)
    for same in (faces.astype(np.int64), faces.astype(np.float64), faces.astype(np.int32), faces.tolist()):
        pd.testing.assert_frame_equal(served.pyfunc.predict(same), out)
    one = served.pyfunc.predict(faces[3])  # one [48,48] image: a batch of one (its own kernels: not bit-equal)
    assert list(one.columns) == COLUMNS and one["label"].tolist() == [out["label"][3]]
    np.testing.assert_allclose(one[list(CLASS_NAMES)].to_numpy(), out[list(CLASS_NAMES)].to_numpy()[[3]], atol=1e-5)
    for empty in (np.zeros((0, 48, 48), np.uint8), []):
        nothing = served.pyfunc.predict(empty)
        assert list(nothing.columns) == COLUMNS and len(nothing) == 0


BAD_INPUTS = {  # name: (make the input from the uint8 faces, what the message says)
    "unit floats": (lambda f: f / 255.0, r"fractional values .*images in \[0,1\] must be multiplied by 255"),
    "half pixels": (lambda f: f + 0.5, r"pixels are integers 0-255; image 0 has fractional values \(e.g. "),
    "above 255": (lambda f: f.astype(np.int64) + 1, r"pixels are integers 0-255; got values from 1 to 256"),
    "negative": (lambda f: f.astype(np.int16) - 1, r"pixels are integers 0-255; got values from -1 to 254"),
    "nan": (lambda f: np.where(f > 100, np.nan, f.astype(np.float32)), r"got NaN or infinity"),
    "flattened": (lambda f: f.reshape(len(f), -1), r"got shape \[8, 2304\] \(flattened images: reshape"),
    "channel axis": (lambda f: f[:, None], r"got shape \[8, 1, 48, 48\] \(drop the channel axis"),
    "other size": (lambda f: f[:, :32, :32], r"expected uint8 images of shape \[N,48,48\].*got shape \[8, 32, 32\]"),
    "strings": (lambda f: f.astype(str), r"pixels 0-255; got strings"),
    "bools": (lambda f: f > 100, r"pixels 0-255; got booleans"),
    "missing values": (lambda f: np.where(f > 100, None, f).tolist(), r"got objects \(mixed or missing values\)"),
    "ragged": (lambda f: [f[0].tolist(), f[1][:40].tolist()], r"the nested lists are ragged"),
    "dataframe": (lambda f: pd.DataFrame(f.reshape(len(f), -1)), r"got a DataFrame"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_refused_with_its_message(served, faces, case):
    from mlflow.exceptions import MlflowException

    make, message = BAD_INPUTS[case]
    with pytest.raises(MlflowException, match=message) as refused:
        served.pyfunc.predict(make(faces))
    assert refused.value.get_http_status_code() == 400 and "\n" not in refused.value.message


def test_json_requests_take_the_same_checks(served, faces):
    """What `mlflow models serve` does with a JSON body (its invocations(), minus HTTP): integers are answered as
    the uint8 faces; an image in [0,1] is refused, not cast to a black image by MLflow first."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import invocations

    def post(images) -> list[dict]:
        body = json.dumps({"inputs": images})
        answer = invocations(body, "application/json", served.pyfunc, served.pyfunc.metadata.get_input_schema())
        assert answer.status == 200
        return json.loads(answer.response)["predictions"]

    expected = served.pyfunc.predict(faces).to_dict(orient="records")
    for images in (faces.tolist(), faces.astype(np.float64).tolist()):
        got = post(images)
        assert [row["label"] for row in got] == [row["label"] for row in expected]
        np.testing.assert_allclose([[row[c] for c in CLASS_NAMES] for row in got],
                                   [[row[c] for c in CLASS_NAMES] for row in expected], atol=1e-7)
    with pytest.raises(MlflowException, match=r"must be multiplied by 255") as refused:
        post((faces / 255.0).tolist())
    assert refused.value.get_http_status_code() == 400


# ---- a real server ---------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, payload) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.slow  # a real `mlflow models serve` (interpreter start, imports, model load): ~30 s
def test_mlflow_models_serve_answers_faces_and_refuses_unit_floats(tmp_path, faces):
    checkpoint = write_untrained_checkpoint("mlp", tmp_path / "ckpt")
    uri = log_served_model(checkpoint, tmp_path / "mlruns")
    port = _free_port()
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
           # MLflow starts the server as `uvicorn ...`: the venv's, found on PATH
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           # the server downloads the model into a temporary folder that nobody removes (it is killed): the test's
           "TMPDIR": str(tmp_path / "tmp")}
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager", "local",
           "-h", "127.0.0.1", "-p", str(port)]
    base = f"http://127.0.0.1:{port}"
    with open(tmp_path / "serve.log", "w") as log:
        server = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)  # its own process group: uvicorn is a child of the CLI
        try:
            deadline = time.monotonic() + 180
            while server.poll() is None and time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"{base}/ping", timeout=2):
                        break
                except OSError:
                    time.sleep(0.5)
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]

            status, body = _post(f"{base}/invocations", {"inputs": faces[:2].tolist()})
            assert status == 200, body
            rows = body["predictions"]
            assert [list(row) for row in rows] == [COLUMNS, COLUMNS]
            expected = expected_probabilities(load_model(checkpoint), faces[:2])
            np.testing.assert_allclose([[row[c] for c in CLASS_NAMES] for row in rows], expected, atol=1e-5)
            assert [row["label"] for row in rows] == [CLASS_NAMES[i] for i in expected.argmax(1)]

            status, body = _post(f"{base}/invocations", {"inputs": (faces[:2] / 255.0).tolist()})
            assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE", body
            assert "images in [0,1] must be multiplied by 255" in body["message"]
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def test_the_served_model_class_draws_no_mlflow_warning():
    """MLflow warns, once per process, about a PythonModel whose predict() has no input type hint ("Add type hints
    to the `predict` method..."); fer's hint is np.ndarray, which MLflow takes without inferring a schema (its
    own checks: fer.tracking.served_input). In a fresh interpreter, where nothing drew the warning before."""
    script = ("import warnings\n"
              "with warnings.catch_warnings(record=True) as caught:\n"
              "    warnings.simplefilter('always')\n"
              "    import fer.tracking.served_model\n"
              "print([str(w.message) for w in caught if 'predict' in str(w.message)])\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "[]", (done.stdout, done.stderr[-2000:])
