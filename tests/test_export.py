"""export.py and fer.runtime: every neural model exports to ONNX that matches its checkpoint, says what it is, runs
without torch, and serves predict.py with the same results as the checkpoint; the SVM says it cannot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from fer.classes import CLASS_NAMES
from fer.errors import UserError
from fer.models.loading import load_model
from fer.models.loading import module_class
from fer.models.registry import get_model_class

from helpers import CONF, FAST, MODEL_NAMES, ROOT, SMALL, compose_train, untrained_checkpoint

NEURAL = [m for m in MODEL_NAMES if module_class(get_model_class(m)).onnx_exportable]
DATA = ["data.source.n_train=280", "data.source.n_test=70"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def trained(work):
    """model name -> a checkpoint as train.py writes it: untrained weights for the neural models (export checks
    that the file computes what the checkpoint does, trained or not); the SVM, which has nothing to save unfitted,
    is fitted by a 1-epoch run on the small synthetic set."""
    from fer.training import run_training

    done: dict[str, Path] = {}

    def get(model: str) -> Path:
        if model not in done:
            extra = SMALL.get(model, [])
            if model != "svm":
                done[model] = untrained_checkpoint(work / model / "untrained.ckpt", model,
                                                   [*extra, f"paths.cache_dir={work / 'cache'}"])
                return done[model]
            cfg = compose_train(work / model, [f"model={model}", "logger=none", *FAST, *extra,
                                               f"paths.cache_dir={work / 'cache'}"])
            run_training(cfg)
            (done[model],) = (Path(cfg.paths.output_dir) / "checkpoints").glob("epoch_*.ckpt")
        return done[model]

    return get


def export(work: Path, ckpt, *overrides: str):
    from fer.export.app import run_export

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("export", overrides=[f"ckpt={ckpt}", f"paths.cache_dir={work / 'cache'}", "progress=false",
                                           f"tracking_uri=sqlite:///{work / 'none.db'}", *DATA, *overrides])
    return run_export(cfg)


# one representative model in the fast suite (every flow below exports it too), every model in -m slow
@pytest.mark.parametrize("model", [m if m == "mlp" else pytest.param(m, marks=pytest.mark.slow) for m in NEURAL])
def test_every_neural_model_exports_an_onnx_that_matches_its_checkpoint(model, trained, work):
    from fer.runtime import ExpressionModel

    ckpt = trained(model)
    out = work / f"{model}.onnx"
    result = export(work, ckpt, f"output={out}")
    assert result.comparison.ok and result.comparison.n == 28  # the val split of the 280 training faces
    onnx_model = ExpressionModel(out)
    info = onnx_model.info
    torch_model = load_model(ckpt)
    assert info.model == model and info.class_names == CLASS_NAMES and info.input_size == 48
    assert info.source_checkpoint == str(ckpt) and info.val_split == torch_model.val_split_record
    assert info.temperature == pytest.approx(float(torch_model.calibration_t)) and info.val_acc is not None
    # independently of the export's own check: real faces, batch sizes 1 and 37 (the batch is dynamic)
    from fer.data.synthetic import render_faces, synthetic_labels

    faces = render_faces(synthetic_labels(37, 5), 5)
    with torch.no_grad():
        expected = torch_model.predict_proba(torch.from_numpy(faces).float().div(255).unsqueeze(1)).numpy()
    got = onnx_model.predict_proba(faces)
    assert np.abs(got - expected).max() <= 1e-3 and (got.argmax(1) == expected.argmax(1)).mean() >= 0.999
    np.testing.assert_allclose(onnx_model.predict_proba(faces[0]), expected[:1], atol=1e-3)


def test_svm_says_it_cannot_be_exported(trained, work):
    with pytest.raises(UserError, match="svm model .*cannot be exported to ONNX"):
        export(work, trained("svm"), f"output={work / 'svm.onnx'}")
    assert not (work / "svm.onnx").exists()


def test_a_file_that_does_not_match_the_checkpoint_is_not_kept(trained, work, monkeypatch):
    import fer.export.app as app

    real = app.compare  # as if the ONNX graph had its classes in another order
    monkeypatch.setattr(app, "compare", lambda ref, got: real(ref, np.roll(got, 1, axis=1)))
    with pytest.raises(UserError, match="does not match the checkpoint .*nothing was written"):
        export(work, trained("mlp"), f"output={work / 'broken.onnx'}")
    assert not (work / "broken.onnx").exists()
    # a failed export over a good earlier one leaves that file as it was
    monkeypatch.undo()
    export(work, trained("mlp"), f"output={work / 'kept.onnx'}")
    good = (work / "kept.onnx").read_bytes()
    monkeypatch.setattr(app, "compare", lambda ref, got: real(ref, np.roll(got, 1, axis=1)))
    with pytest.raises(UserError, match="nothing was written"):
        export(work, trained("mlp"), f"output={work / 'kept.onnx'}")
    assert (work / "kept.onnx").read_bytes() == good
    assert [p.name for p in work.glob(".kept*")] == []  # no staged file left behind


def test_smaller_forms_int8_and_fp16_weights(trained, work):
    from fer.runtime import ExpressionModel

    result = export(work, trained("cnn_deep"), f"output={work / 'q.onnx'}", "quantize=[int8,fp16]")
    assert result.smaller == {"int8": work / "q.int8.onnx", "fp16": work / "q.fp16.onnx"}
    fp32_size = result.output.stat().st_size
    assert result.smaller["int8"].stat().st_size < 0.5 * fp32_size
    assert 0.49 * fp32_size < result.smaller["fp16"].stat().st_size < 0.52 * fp32_size  # every weight halved
    assert set(result.accuracy) == {f"{split} {form}" for split in ("val", "test") for form in ("fp32", "int8", "fp16")}
    assert result.smaller_comparison["int8"].n == 28
    # fp16 weights computed in fp32: what fp32 gives, to fp16's rounding of the weights
    assert result.smaller_comparison["fp16"].agreement == 1.0 and result.smaller_comparison["fp16"].max_abs_diff < 2e-3
    # each file carries its own measured figures (its default call), and where it came from
    for kind, path in {"fp32": result.output, **result.smaller}.items():
        info = ExpressionModel(path).info
        assert info.quantized == ("none" if kind == "fp32" else kind)
        assert info.val_acc == result.accuracy[f"val {kind}"] and info.data == "synthetic"
        assert info.extra["fer.test_split"] == "test"
        assert float(info.extra["fer.test_acc"]) == result.accuracy[f"test {kind}"]
        assert {"fer.recipe", "fer.commit", "fer.device"} <= set(info.extra)


def test_int8_export_of_six_views_prints_no_quantiser_notes_and_gives_probabilities(trained, work, caplog):
    """onnxruntime's quantiser notes, on the root logger, each bias it copies for a network used by several views
    and each batch norm's 1-D weight it keeps per tensor (the mlp with six views: dozens of lines): dropped while
    it runs, and only then. The softmax and the views' average stay fp32: each row of probabilities sums to 1, not
    to 1 +- a few quantisation steps."""
    import logging

    from fer.runtime import ExpressionModel

    with caplog.at_level(logging.DEBUG):  # views: the weights are shared by the six views' copies of the network
        result = export(work, trained("mlp"), f"output={work / 'noise.onnx'}", "quantize=int8", "views=flip_shifts")
    assert "Created a copy of bias" not in caplog.text and "out-of-range" not in caplog.text
    assert logging.getLogger().filters == []
    faces = np.random.default_rng(0).integers(0, 256, (16, 48, 48), dtype=np.uint8)
    probs = ExpressionModel(result.smaller["int8"]).predict_proba(faces)
    assert np.abs(probs.sum(axis=1) - 1).max() < 1e-5


@pytest.mark.parametrize("quantize", ["int4", "[int8,bf16]"])
def test_an_unknown_smaller_form_is_one_line(trained, work, quantize):
    with pytest.raises(UserError, match=r"quantize=.*expected none, int8, fp16 or a list of them"):
        export(work, trained("mlp"), f"output={work / 'never.onnx'}", f"quantize={quantize}")
    assert not (work / "never.onnx").exists()


@pytest.mark.slow  # a tracked training (CI runs the slow tests)
def test_export_is_attached_to_the_checkpoints_mlflow_run(work, tmp_path):
    from mlflow.tracking import MlflowClient

    from fer.training import run_training
    from helpers import mlflow_overrides

    cfg = compose_train(tmp_path, ["model=mlp", *FAST, *mlflow_overrides(tmp_path),
                                   f"paths.cache_dir={work / 'cache'}"])
    run_training(cfg)
    client = MlflowClient(cfg.logger.mlflow.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("fer").experiment_id])
    result = export(work, run.info.run_id, f"output={tmp_path / 'run.onnx'}",
                    f"tracking_uri={cfg.logger.mlflow.tracking_uri}")
    assert result.run_id == run.info.run_id
    assert "export/run.onnx" in {a.path for a in client.list_artifacts(run.info.run_id, "export")}
    from fer.runtime import ExpressionModel

    assert ExpressionModel(tmp_path / "run.onnx").info.mlflow_run_id == run.info.run_id


def test_runtime_imports_no_torch_and_classifies(trained, work, tmp_path):
    """In a fresh interpreter: the runtime loads the model and classifies arrays and files without importing
    torch, Lightning or Hydra."""
    import cv2

    out = work / "runtime.onnx"
    export(work, trained("mlp"), f"output={out}", "overwrite=true")
    for folder in ("a", "b"):  # two photos with the same file name in two folders
        (tmp_path / "in" / folder).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "in" / folder / "face.png"),
                    np.random.default_rng(0).integers(0, 256, (61, 50, 3), dtype=np.uint8))
    face, csv_out = tmp_path / "in" / "a" / "face.png", tmp_path / "runtime.csv"
    cli = [str(tmp_path / "in"), "--model", str(out), "--output", str(csv_out)]
    code = (f"import sys, numpy as np\n"
            f"from fer.runtime import ExpressionModel\n"
            f"from fer.runtime.cli import main\n"
            f"m = ExpressionModel({str(out)!r})\n"
            f"p = m.predict_proba(np.zeros((3, 48, 48), np.uint8))\n"
            f"f = m.classify_files([{str(face)!r}])\n"
            f"assert p.shape == (3, 7) and abs(p.sum() - 3) < 1e-4 and f[0].label in m.class_names\n"
            f"first, again = main({cli!r}), main({cli!r})\n"  # its own earlier output: replaced
            f"open({str(csv_out)!r}, 'a').write('edited by hand\\n')\n"
            f"print(first, again, main({cli!r}))\n"  # an output edited since: refused
            f"print(sorted(k for k in ('torch', 'pytorch_lightning', 'lightning', 'hydra', 'sklearn') "
            f"if k in sys.modules))\n")
    env = {**os.environ, "FER_CACHE_DIR": str(tmp_path / "cache")}  # the runtime's ledger of its outputs
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-2:] == ["0 0 2", "[]"]
    assert f"output={csv_out} exists and is not an output of fer" in proc.stderr
    csv_out.write_text("\n".join(csv_out.read_text().splitlines()[:-1]) + "\n")
    rows = csv_out.read_text().splitlines()
    assert rows[0] == "image,label," + ",".join(f"prob_{c}" for c in CLASS_NAMES) and len(rows) == 3
    assert sorted(r.split(",")[0] for r in rows[1:]) == ["a/face.png", "b/face.png"]  # names kept apart


def test_runtime_refuses_foreign_models_and_bad_arrays(work, tmp_path, trained):
    import onnx
    from onnx import TensorProto, helper

    from fer.errors import DataError
    from fer.runtime import ExpressionModel

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.UINT8, ["n", 48, 48])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, ["n", 48, 48])])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), str(foreign))
    with pytest.raises(UserError, match="foreign.onnx: not an ONNX model exported by fer"):
        ExpressionModel(foreign)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(UserError, match="junk.onnx: not a readable ONNX model"):
        ExpressionModel(tmp_path / "junk.onnx")
    out = work / "arrays.onnx"
    export(work, trained("mlp"), f"output={out}", "overwrite=true")
    model = ExpressionModel(out)
    with pytest.raises(DataError, match="expected uint8 images"):
        model.predict_proba(np.zeros((2, 48, 48), np.float32))
    odd = [np.zeros((64, 64), np.uint8), np.zeros((30, 40, 3), np.uint8)]  # any size or colour is converted
    assert model.predict_proba(odd).shape == (2, 7) and len(model.predict(odd)) == 2
    # one colour photo as OpenCV reads it ([H,W,3]) is one image, not H images of W x 3 pixels
    photo = np.random.default_rng(0).integers(0, 256, (60, 50, 3), dtype=np.uint8)
    np.testing.assert_array_equal(model.faces_array(photo), model.faces_array([photo]))
    assert model.predict_proba(photo).shape == (1, 7)
    with pytest.raises(UserError, match="batch_size must be >= 1"):
        model.predict_proba(photo, batch_size=0)


def test_numpy_tta_views_are_the_torch_ones():
    from fer.runtime.tta import tta_views as np_views
    from fer.tta import tta_views as torch_views

    x = np.random.default_rng(0).integers(0, 256, (4, 48, 48), dtype=np.uint8)
    ours = list(np_views(x, True, 2))
    theirs = list(torch_views(torch.from_numpy(x).unsqueeze(1), True, 2))
    assert len(ours) == len(theirs) == 6
    for a, b in zip(ours, theirs):
        assert np.array_equal(a, b[:, 0].numpy())


@pytest.mark.parametrize("tta", [[], ["tta=true", "tta_shifts=true"]])
def test_predict_with_the_onnx_file_writes_the_checkpoints_csv(trained, work, tta):
    from fer.predict.app import run_predict

    ckpt = trained("cnn_deep")
    onnx_file = work / "predict.onnx"
    if not onnx_file.exists():
        export(work, ckpt, f"output={onnx_file}")

    def predict(spec, output):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("predict", overrides=[f"ckpt={spec}", f"output={output}", "data=synthetic", *DATA,
                                                "split=test", "precision=fp32", "probabilities=true",
                                                f"paths.cache_dir={work / 'cache'}", "progress=false", *tta])
        return run_predict(cfg)

    a = predict(ckpt, work / "ckpt.csv")
    b = predict(onnx_file, work / "onnx.csv")
    assert b.extra["device"] == "cpu (onnxruntime)"
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-4)
    rows = [r.split(",")[:2] for r in (work / "ckpt.csv").read_text().splitlines()]
    assert rows == [r.split(",")[:2] for r in (work / "onnx.csv").read_text().splitlines()]
    assert a.accuracy == b.accuracy and a.ece == pytest.approx(b.ece, abs=1e-3)
    mixed = predict(f"[{ckpt},{onnx_file}]", work / "mixed.csv")  # an ensemble of both kinds
    np.testing.assert_allclose(mixed.probs, a.probs, atol=1e-4)


def test_concurrent_exports_to_one_path_each_describe_their_own_file(trained, work, tmp_path, monkeypatch):
    """Two runs exporting to the same output= both succeed, one after the other: what each records after writing
    (metadata, measured accuracy, its MLflow artifact) is its own model, never the file the other run wrote
    meanwhile. The second run is started while the first holds its written file, and the first looks again once
    the second is either waiting or done."""
    import logging
    import threading
    import time

    import fer.export.app as app
    from fer.export.app import run_export
    from fer.runtime import ExpressionModel

    output = tmp_path / "shared.onnx"
    first, second = trained("mlp"), untrained_checkpoint(work / "mlp_b" / "untrained.ckpt", "mlp",
                                                         [f"paths.cache_dir={work / 'cache'}"], temperature=2.0)

    def cfg_for(ckpt):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose("export", overrides=[f"ckpt={ckpt}", f"paths.cache_dir={work / 'cache'}", "progress=false",
                                                f"tracking_uri=sqlite:///{work / 'none.db'}", f"output={output}",
                                                *DATA])

    cfgs = {first: cfg_for(first), second: cfg_for(second)}
    waiting, second_done, seen = threading.Event(), threading.Event(), {}

    class Waiting(logging.Handler):
        def emit(self, record):
            if "waiting for another fer run" in record.getMessage():
                waiting.set()

    handler = Waiting()
    logging.getLogger("fer.runtime.output_guard").addHandler(handler)
    real = app._write_and_measure

    def second_run():
        try:
            run_export(cfgs[second])
        finally:
            second_done.set()

    def write_and_measure(cfg, model, resolved, *rest):
        result = real(cfg, model, resolved, *rest)
        if resolved.path == first:
            thread = threading.Thread(target=second_run)
            thread.start()
            deadline = time.monotonic() + 120
            while not (waiting.is_set() or second_done.is_set()) and time.monotonic() < deadline:
                time.sleep(0.05)
            seen["first"] = ExpressionModel(output).info.source_checkpoint
            seen["thread"] = thread
        return result

    monkeypatch.setattr(app, "_write_and_measure", write_and_measure)
    try:
        run_export(cfgs[first])
        seen["thread"].join(120)
    finally:
        logging.getLogger("fer.runtime.output_guard").removeHandler(handler)
    assert Path(seen["first"]) == first
    assert second_done.is_set() and Path(ExpressionModel(output).info.source_checkpoint) == second


def test_the_form_to_ship_is_the_smallest_within_0_3_points_of_fp32():
    """bench/model_card.py applies the release rule: int8 if its accuracy is within 0.3 points of fp32's, else the
    next smallest form that is (fp16 weights), else fp32."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("model_card", ROOT / "bench" / "model_card.py")
    card = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(card)
    size = {"fp32": 26, "fp16": 13, "int8": 12}
    assert card.form_to_ship({"fp32": 0.690, "int8": 0.6875, "fp16": 0.690}, size) == "int8"
    assert card.form_to_ship({"fp32": 0.690, "int8": 0.6865, "fp16": 0.6895}, size) == "fp16"
    assert card.form_to_ship({"fp32": 0.690, "int8": 0.680, "fp16": 0.686}, size) == "fp32"
    assert card.form_to_ship({"fp32": 0.690}, {"fp32": 26}) == "fp32"
