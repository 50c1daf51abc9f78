"""predict.py end to end on tiny generated data: every model in conf/model/, TTA, ensembles, MLflow resolution,
bad inputs. Run from the project root: python -m pytest tests/test_predict.py"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
os.environ.setdefault("FER_ROOT", str(ROOT))

from hydra import compose, initialize_config_dir  # noqa: E402

from fer.classes import CLASS_NAMES  # noqa: E402
from fer.errors import UserError  # noqa: E402
from fer.errors import DataError  # noqa: E402
from fer.predict.app import run_predict  # noqa: E402
from fer.runtime.table import PROB_COLUMNS, output_names, write_csv_atomic  # noqa: E402
from helpers import SMALL, untrained_checkpoint  # noqa: E402

# every model config; files starting with "_" are shared parts, not models. A new model is tested automatically.
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml") if not p.stem.startswith("_"))
N_TEST = 14  # 12 plain + 1 colour + 1 odd-size image in images_test/


def compose_cfg(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(name, overrides=overrides)


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


pytestmark = pytest.mark.usefixtures("one_thread")

# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("predict")


def train_overrides(model: str, out: Path, cache: Path, batch_size: int, batches: int) -> list[str]:
    return [f"model={model}", "logger=none", "trainer.max_epochs=1", f"+trainer.limit_train_batches={batches}",
            "+trainer.limit_val_batches=1", "trainer.accelerator=cpu",
            "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false",
            "callbacks.early_stopping=null",
            "callbacks.model_checkpoint.save_last=false", "+callbacks.model_checkpoint.save_weights_only=true",
            f"paths.output_dir={out}", f"paths.cache_dir={cache}", "data.source.n_train=290",
            "data.source.n_test=8", "data.val_fraction=0.05", f"data.batch_size={batch_size}",
            "data.eval_batch_size=8",
            "data.progress=false", "test=false"]


@pytest.fixture(scope="module")
def trained(work):
    """model name -> a checkpoint as train.py writes it, for the data of train_overrides (its val split recorded):
    untrained weights for the neural models (predict.py reads any checkpoint alike); the SVM, which has nothing to
    save unfitted, from a 1-epoch run on one batch of 16 images (it caps its PCA size to that little data)."""
    from fer.training import run_training

    done: dict[str, Path] = {}

    def get(model: str) -> Path:
        if model not in done:
            out = work / "train" / model
            if model != "svm":
                data = [o for o in train_overrides(model, out, work / "cache", 16, 1)
                        if o.startswith(("data.", "paths."))]
                # where train.py puts it: the run folder resolves to it
                done[model] = untrained_checkpoint(out / "checkpoints" / "epoch_000.ckpt", model,
                                                   [*data, *SMALL.get(model, [])])
                return done[model]
            run_training(compose_cfg("train", train_overrides(model, out, work / "cache", 16, 1)))
            ckpts = sorted(p for p in (out / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt")
            assert ckpts, f"{model}: training wrote no checkpoint"
            done[model] = ckpts[0]
        return done[model]

    return get


@pytest.fixture(scope="module")
def fast_ckpt(trained) -> Path:
    return trained("mlp" if "mlp" in MODELS else MODELS[0])


def make_challenge(root: Path, header: str = "file_name,expression", with_test: bool = True) -> Path:
    rng = np.random.default_rng(0)
    (root / "images_train").mkdir(parents=True)
    rows = []
    for i in range(8):
        cv2.imwrite(str(root / "images_train" / f"tr_{i}.jpg"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
        rows.append(f"tr_{i}.jpg,{i % 7}")
    (root / "challengeA_train.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    if with_test:
        test = root / "images_test"
        test.mkdir()
        for i in range(12):  # names chosen so that sorted order differs from creation order
            cv2.imwrite(str(test / f"{(i * 7) % 12:02d}_face.jpg"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
        cv2.imwrite(str(test / "colour.jpg"), rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
        cv2.imwrite(str(test / "big_odd.png"), rng.integers(0, 256, (61, 50), dtype=np.uint8))
    return root


@pytest.fixture(scope="module")
def challenge(work) -> Path:
    return make_challenge(work / "challenge")


def predict(work: Path, ckpt, *overrides: str, output: str | Path | None = None):
    ckpt_arg = f"[{','.join(map(str, ckpt))}]" if isinstance(ckpt, (list, tuple)) else str(ckpt)
    out = output or work / "out" / "submission.csv"
    cfg = compose_cfg("predict", [f"ckpt={ckpt_arg}", f"output={out}", f"paths.cache_dir={work / 'cache'}",
                                  "progress=false", f"tracking_uri=sqlite:///{work / 'no-store.db'}", *overrides])
    return run_predict(cfg), Path(out)


# ---------------------------------------------------------------------------------------------- submission
@pytest.mark.parametrize("model", MODELS)
def test_submission_every_model(model, trained, work, challenge):
    result, out = predict(work, trained(model), "data=challenge", f"data.root={challenge}", "probabilities=true",
                          output=work / "out" / f"{model}.csv")
    header, rows = read_csv(out)
    assert header == ["file_name", "expression", *PROB_COLUMNS]  # the training CSV's own column names
    assert len(rows) == N_TEST == result.rows
    names = [r[0] for r in rows]
    assert names == sorted(os.listdir(challenge / "images_test"))  # file names only, sorted
    labels = [int(r[1]) for r in rows]
    assert all(0 <= v < 7 for v in labels)
    probs = np.array([[float(v) for v in r[2:]] for r in rows])
    assert probs.shape == (N_TEST, 7)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    assert (probs.argmax(1) == labels).all()
    assert result.resized == 1 and result.color == 1  # the odd-size and the colour image were converted
    assert not list(out.parent.glob(".*.tmp"))


def test_label_names_folder_and_list_inputs(fast_ckpt, work, challenge, caplog):
    folder = challenge / "images_test"
    with caplog.at_level("WARNING"):
        result, out = predict(work, fast_ckpt, f"input={folder}", "label_format=name")
    # a checkpoint of the synthetic default data says that it knows drawn faces only
    assert "trained on the synthetic drawn faces only" in caplog.text
    header, rows = read_csv(out)
    assert header == ["image", "label"]
    assert [r[0] for r in rows] == sorted(os.listdir(folder))
    assert {r[1] for r in rows} <= set(CLASS_NAMES)
    files = [folder / "colour.jpg", folder / "big_odd.png"]
    result, out = predict(work, fast_ckpt, f"input=[{files[0]},{files[1]}]")
    assert [r[0] for r in read_csv(out)[1]] == ["big_odd.png", "colour.jpg"]
    result, out = predict(work, fast_ckpt, f"input=[{files[0]}]", "columns=[id,emotion]")
    assert read_csv(out)[0] == ["id", "emotion"]


def test_output_names_keep_folders_when_file_names_clash():
    assert output_names(["images_test/b.jpg", "images_test/a.jpg"]) == ["b.jpg", "a.jpg"]
    assert output_names(["/p/x/a.jpg", "/p/y/a.jpg"]) == ["x/a.jpg", "y/a.jpg"]


def test_labelled_test_split_reports_accuracy(fast_ckpt, work, capsys):
    root = work / "fer2013"
    rng = np.random.default_rng(1)
    for split, n in (("train", 2), ("publictest", 3)):
        for name in ("happy", "sad"):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                cv2.imwrite(str(root / split / name / f"{split}_{name}_{i}.jpg"),
                            rng.integers(0, 256, (48, 48), dtype=np.uint8))
    result, out = predict(work, fast_ckpt, "data=fer2013", f"data.root={root}", "split=publictest")
    assert result.rows == 6 and result.split == "publictest"
    # the summary's figures, recomputed from the CSV's predictions and the class folders' labels
    from sklearn.metrics import f1_score

    header, rows = read_csv(out)
    truth = [CLASS_NAMES.index(name.split("_")[1]) for name, _ in rows]
    preds = [int(label) for _, label in rows]
    expected_acc = float(np.mean(np.array(truth) == np.array(preds)))
    assert result.accuracy == pytest.approx(expected_acc, abs=1e-12)
    assert result.f1_macro == pytest.approx(f1_score(truth, preds, average="macro", zero_division=0), abs=1e-12)
    assert f"accuracy {expected_acc:.4f}, macro-F1 {result.f1_macro:.4f}" in capsys.readouterr().out
    with pytest.raises(DataError, match="split=validation: not in the data"):
        predict(work, fast_ckpt, "data=fer2013", f"data.root={root}", "split=validation")


# ---------------------------------------------------------------------------------------------- TTA, ensembles
def test_tta_views_and_shapes():
    import torch

    from fer.tta import n_views, shift_batch, tta_proba, tta_views

    x = torch.rand(5, 1, 48, 48)
    assert len(list(tta_views(x, flip=True, shift=0))) == n_views(True, 0) == 2
    assert len(list(tta_views(x, flip=True, shift=2))) == n_views(True, 2) == 6
    assert torch.equal(list(tta_views(x))[1], x.flip(-1))
    moved = shift_batch(x, 0, 2)  # content moves right by 2 px
    assert moved.shape == x.shape and torch.equal(moved[..., 2:], x[..., :-2])
    moved = shift_batch(x, -2, 0)  # up by 2 px
    assert torch.equal(moved[..., :-2, :], x[..., 2:, :])
    probs = tta_proba(lambda v: torch.softmax(v.flatten(1)[:, :7], 1), x, flip=True, shift=2)
    assert probs.shape == (5, 7)
    torch.testing.assert_close(probs.sum(1), torch.ones(5))


def _hand_tta(model, images: np.ndarray, shift: int) -> np.ndarray:
    """The mean of the TTA views, built without fer.tta: the image, its mirror and, when `shift`, copies
    moved by `shift` px right, left, down and up with the edge pixels repeated into the uncovered border."""
    import torch

    views = [images, images[:, :, ::-1]]
    if shift:
        padded = np.pad(images, ((0, 0), (shift, shift), (shift, shift)), mode="edge")
        s, n = shift, images.shape[1]
        views += [padded[:, top:top + n, left:left + n] for top, left in ((s, 0), (s, 2 * s), (0, s), (2 * s, s))]
    with torch.no_grad():
        probs = [model.predict_proba(torch.from_numpy(np.ascontiguousarray(v)).float().div(255).unsqueeze(1))
                 for v in views]
    return torch.stack(probs).mean(0).numpy()


def test_tta_end_to_end(fast_ckpt, work, challenge):
    from fer.data.cache import open_cache
    from fer.data.sources import ImageListSource
    from fer.models.loading import load_model

    folder = challenge / "images_test"
    tta, _ = predict(work, fast_ckpt, f"input={folder}", "precision=fp32", "tta=true", "tta_shifts=true")
    flip, _ = predict(work, fast_ckpt, f"input={folder}", "precision=fp32", "tta=true")
    assert tta.probs.shape == flip.probs.shape == (N_TEST, 7)
    assert flip.extra["mirror_invariant"] == [False]  # no ten crops: the mirror view ran (the summary says "flip")
    # the images exactly as predict.py read them (same cache), in the result's order (sorted by name)
    cache = open_cache(ImageListSource([str(folder)]), work / "cache", progress=False)
    order = np.argsort([Path(n).name for n in cache.names])
    assert [Path(cache.names[i]).name for i in order] == tta.names
    images, model = np.asarray(cache.images)[order], load_model(fast_ckpt)
    six, two = _hand_tta(model, images, 2), _hand_tta(model, images, 0)
    assert not np.allclose(six, two, atol=1e-5)  # the shifted views matter for this model and these images
    np.testing.assert_allclose(tta.probs, six, atol=1e-5)
    np.testing.assert_allclose(flip.probs, two, atol=1e-5)


def test_ensemble_averages_members(trained, work, challenge):
    a, b = trained(MODELS[0]), trained(MODELS[-1])  # two different families where there are two
    args = (f"input={challenge / 'images_test'}", "precision=fp32")
    pa, _ = predict(work, a, *args)
    pb, _ = predict(work, b, *args)
    both, out = predict(work, [a, b], *args)
    assert both.probs.shape == (N_TEST, 7) and len(read_csv(out)[1]) == N_TEST
    np.testing.assert_allclose(both.probs, (pa.probs + pb.probs) / 2, atol=1e-5)


def test_fit_weights_prefers_the_better_member():
    from fer.predict.ensemble import fit_weights

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 600)
    good = np.full((600, 7), 0.02)
    good[np.arange(600), labels] = 0.88
    noise = rng.dirichlet(np.ones(7), 600)
    w = fit_weights(np.stack([noise, good]), labels)
    assert w[1] > 0.95 and w.min() >= 0 and w.sum() == pytest.approx(1.0)

    # two members as good as each other, right on different halves: both are needed, about equally
    half = np.arange(600) < 300
    first, second = np.where(half[:, None], good, noise), np.where(half[:, None], noise, good)
    w = fit_weights(np.stack([first, second]), labels)
    assert w == pytest.approx([0.5, 0.5], abs=0.05)

    def log_lik(weights):
        probs = np.tensordot(weights, np.stack([noise, first, good]), axes=1)
        return np.log(probs[np.arange(600), labels]).sum()

    fitted = fit_weights(np.stack([noise, first, good]), labels)
    assert log_lik(fitted) >= log_lik(np.full(3, 1 / 3))


def test_ensemble_weights_given_and_fitted_on_val(trained, work, challenge, caplog, monkeypatch):
    import torch

    import fer.models.calibration as calibration

    a, b = trained(MODELS[0]), trained(MODELS[-1])
    # a strong re-tempering (T = 0.1: sharper), so that applying it per TTA view instead of to their mean shows
    fitted_on = []
    monkeypatch.setattr(calibration, "fit_temperature",
                        lambda scores, labels, weight=None: fitted_on.append((scores, labels)) or 10.0)
    # the data the fixture's members were trained on (train_overrides), so the val split is theirs
    data = ("data=synthetic", "data.source.n_train=290", "data.source.n_test=8", "data.val_fraction=0.05",
            "split=test", "precision=fp32")
    pa, _ = predict(work, a, *data)
    pb, _ = predict(work, b, *data)

    given, _ = predict(work, [a, b], *data, "ensemble_weights=[3,1]")
    np.testing.assert_allclose(given.probs, 0.75 * pa.probs + 0.25 * pb.probs, atol=1e-5)

    tta = ("tta=true", "tta_shifts=true")
    fitted, _ = predict(work, [a, b], *data, "ensemble_weights=val", *tta)
    info = fitted.extra["ensemble_weights"]
    assert info["how"] == "val" and info["n_val"] == 14 and len(info["member_acc"]) == 2
    tta_a, _ = predict(work, a, *data, *tta)
    tta_b, _ = predict(work, b, *data, *tta)
    w = info["weights"]
    # the mixture, re-tempered by the temperature fitted on the same val probabilities
    from fer.models.calibration import temper

    np.testing.assert_allclose(fitted.probs, temper(w[0] * tta_a.probs + w[1] * tta_b.probs, info["temperature"]),
                               atol=1e-4)  # float32 pow in the ensemble, float64 here
    # the weights were fitted on the val split scored with the same six TTA views as the test images
    from fer.data.cache import open_cache
    from fer.data.splits import train_val_indices
    from fer.data.sources import SyntheticSource
    from fer.models.loading import load_model
    from fer.predict.ensemble import fit_weights

    cache = open_cache(SyntheticSource(n_train=290, n_test=8), work / "cache", progress=False)
    _, val = train_val_indices(cache, "train", 0.05, 0)
    val_probs = np.stack([_hand_tta(load_model(m), np.asarray(cache.images)[val], 2) for m in (a, b)])
    labels = cache.labels[val]
    np.testing.assert_allclose(w, fit_weights(val_probs, labels), atol=1e-4)
    assert info["member_acc"] == pytest.approx([float((p.argmax(1) == labels).mean()) for p in val_probs])
    # the temperature was fitted on the log of the fitted mixture's val probabilities
    assert info["temperature"] == pytest.approx(0.1) and len(fitted_on) == 1
    np.testing.assert_allclose(fitted_on[0][0], np.log(np.tensordot(w, val_probs, axes=1)), atol=1e-4)
    np.testing.assert_array_equal(fitted_on[0][1], labels)

    # images from input=: the val split still comes from data= (its own cache, opened for the weights)
    folder, _ = predict(work, [a, b], *data, "ensemble_weights=val", f"input={challenge / 'images_test'}")
    assert folder.rows == N_TEST and folder.extra["ensemble_weights"]["n_val"] == 14

    # another val split would contain images the members were trained on: refused, naming the member
    with pytest.raises(UserError, match=f"{a}.*another val split"):
        predict(work, [a, b], *data, "data.split_seed=1", "ensemble_weights=val")
    with pytest.raises(UserError, match="ensemble_weights=\\[1.0\\]: expected equal, val"):
        predict(work, [a, b], *data, "ensemble_weights=[1.0]")
    with pytest.raises(UserError, match="ensemble_weights=best"):
        predict(work, [a, b], *data, "ensemble_weights=best")

    # a checkpoint from before the split was recorded: fitted anyway, with a warning that says what is assumed
    old = torch.load(a, map_location="cpu", weights_only=True)
    del old["FERDataModule"]
    old_path = work / "old_format.ckpt"
    torch.save(old, old_path)
    with caplog.at_level("WARNING"):
        result, _ = predict(work, [old_path, b], *data, "ensemble_weights=val")
    assert result.extra["ensemble_weights"]["how"] == "val"
    assert f"{old_path} record no val split" in caplog.text and "split_seed=0" in caplog.text


# ---------------------------------------------------------------------------------------------- MLflow resolution
@pytest.fixture(scope="module")
def store(work) -> str:
    """A tmp MLflow sqlite store (creating one runs MLflow's migrations: seconds, so once per module)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{work / 'mlflow' / 'mlflow.db'}"
    (work / "mlflow").mkdir()
    MlflowClient(uri).create_experiment("fer-test", artifact_location=(work / "mlflow" / "artifacts").as_uri())
    return uri


def test_runs_and_best_resolution(fast_ckpt, work, tmp_path, store, challenge):
    from mlflow.tracking import MlflowClient

    from fer.inference.resolve import resolve_checkpoint

    uri = store
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("fer-test").experiment_id
    copies = {}
    ids = {}
    for name, acc, model in (("low", 0.3, "mlp"), ("high", 0.7, "cnn")):
        copies[name] = tmp_path / f"{name}.ckpt"
        copies[name].write_bytes(fast_ckpt.read_bytes())
        run = client.create_run(exp, run_name=name)
        client.log_metric(run.info.run_id, "val/acc", acc)
        client.log_param(run.info.run_id, "model", model)
        client.set_tag(run.info.run_id, "best_checkpoint", str(copies[name]))
        ids[name] = run.info.run_id
    client.create_run(exp, run_name="no-metric")  # ignored by best
    # a run whose checkpoint file is gone from this machine: taken from its artifact
    remote = client.create_run(exp, run_name="remote")
    client.log_metric(remote.info.run_id, "val/acc", 0.1)
    client.set_tag(remote.info.run_id, "best_checkpoint", "/elsewhere/checkpoints/epoch_007.ckpt")
    art = tmp_path / "upload" / "epoch_007.ckpt"
    art.parent.mkdir()
    art.write_bytes(fast_ckpt.read_bytes())
    client.log_artifact(remote.info.run_id, str(art), "checkpoints")

    def resolve(spec):
        return resolve_checkpoint(spec, uri, "fer-test", tmp_path / "downloads")

    assert resolve("best").path == copies["high"]
    # best:<model>: the best run of that model only (how an ensemble recipe names its members)
    assert resolve("best:mlp").path == copies["low"] and resolve("best:cnn").path == copies["high"]
    # runs rank by their best epoch, not their last: a run that peaked at 0.75 beats one that ended at 0.7
    peaked = client.create_run(exp, run_name="peaked")
    for step, acc in enumerate((0.75, 0.1)):
        client.log_metric(peaked.info.run_id, "val/acc", acc, step=step)
    client.log_param(peaked.info.run_id, "model", "cnn")
    client.set_tag(peaked.info.run_id, "best_checkpoint", str(copies["low"]))
    assert resolve("best:cnn").run_id == peaked.info.run_id
    client.delete_run(peaked.info.run_id)
    with pytest.raises(UserError, match="no run of model 'svm'"):
        resolve("best:svm")
    with pytest.raises(UserError, match="best:<model>"):
        resolve("best:x' or 1=1")
    assert resolve(f"runs:/{ids['low']}").path == copies["low"]
    assert resolve(ids["low"]).path == copies["low"]
    got = resolve(remote.info.run_id)
    assert got.how == "mlflow artifact" and got.path.is_file() and got.path.name == "epoch_007.ckpt"
    assert str(got.path).startswith(str(tmp_path / "downloads"))
    named = resolve(f"runs:/{remote.info.run_id}/checkpoints/epoch_007.ckpt")
    assert named.path.read_bytes() == art.read_bytes()
    with pytest.raises(UserError, match="cannot download artifact"):
        resolve(f"runs:/{remote.info.run_id}/checkpoints/nope.ckpt")
    with pytest.raises(UserError, match="unknown MLflow run id"):
        resolve("0" * 32)
    with pytest.raises(UserError, match="no MLflow experiment"):
        resolve_checkpoint("best", uri, "nope", tmp_path / "downloads")
    # the only run was interrupted (killed before testing): it is there, it just did not finish
    lone = client.create_experiment("fer-interrupted")
    killed = client.create_run(lone, run_name="killed-run")
    client.log_metric(killed.info.run_id, "val/acc", 0.5)
    client.set_tag(killed.info.run_id, "output_dir", "/runs/killed")
    with pytest.raises(UserError, match=r"ckpt=best: the only run in experiment 'fer-interrupted' with a val/acc "
                                        r"\(killed-run, status RUNNING\) did not finish; resume it with "
                                        r"python train.py resume=/runs/killed"):
        resolve_checkpoint("best", uri, "fer-interrupted", tmp_path / "downloads")
    with pytest.raises(UserError, match="no MLflow store"):
        resolve_checkpoint("best", f"sqlite:///{tmp_path / 'missing.db'}", "fer-test", tmp_path)
    # and through predict: runs:/ in an ensemble with a plain path
    result, _ = predict(work, [f"runs:/{ids['high']}", fast_ckpt], f"input={challenge / 'images_test'}",
                        f"tracking_uri={uri}",
                        "experiment_name=fer-test", output=tmp_path / "e.csv")
    assert len(result.extra["models"]) == 2


def test_run_folder_resolution(fast_ckpt, work):
    from fer.inference.resolve import resolve_checkpoint

    folder = fast_ckpt.parent.parent  # the training run folder
    assert resolve_checkpoint(str(folder), "sqlite:////nonexistent/x.db").path == fast_ckpt


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_checkpoints(fast_ckpt, work, tmp_path, challenge, store):
    args = (f"input={challenge / 'images_test'}",)
    with pytest.raises(UserError, match="checkpoint not found"):
        predict(work, tmp_path / "missing.ckpt", *args)
    text = tmp_path / "notes.ckpt"
    text.write_text("not a model")
    with pytest.raises(UserError, match="not a PyTorch checkpoint"):
        predict(work, text, *args)
    broken = tmp_path / "broken.ckpt"
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("junk.txt", "x")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        predict(work, broken, *args)
    import torch

    plain = tmp_path / "plain.ckpt"
    torch.save({"weights": torch.zeros(3)}, plain)
    with pytest.raises(UserError, match="not a fer model checkpoint"):
        predict(work, plain, *args)
    mlp = torch.load(fast_ckpt, map_location="cpu", weights_only=True)
    unknown = tmp_path / "unknown_model.ckpt"
    torch.save({**mlp, "fer_model": "nope"}, unknown)
    with pytest.raises(UserError, match="unknown_model.ckpt: model 'nope' is not a registered model of this fer"):
        predict(work, unknown, *args)
    # the MLP's weights under the CNN's name: refused, naming the file and the model it was taken for
    wrong = tmp_path / "wrong_model.ckpt"
    torch.save({**mlp, "fer_model": "cnn", "hyper_parameters": {}}, wrong)
    with pytest.raises(UserError, match="wrong_model.ckpt: weights do not fit its cnn model"):
        predict(work, wrong, *args)
    with pytest.raises(UserError, match="unknown MLflow run id"):
        predict(work, "f" * 32, *args, f"tracking_uri={store}")
    with pytest.raises(UserError, match="no MLflow store"):
        predict(work, "best", *args)  # predict() points tracking_uri at a file that does not exist
    with pytest.raises(UserError, match="which model"):
        predict(work, "''", *args)


def test_bad_inputs(fast_ckpt, work, tmp_path, challenge):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty folder"):
        predict(work, fast_ckpt, f"input={empty}")
    with pytest.raises(DataError, match="input not found"):
        predict(work, fast_ckpt, f"input={tmp_path / 'nowhere'}")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"ok_{i}.png"), np.full((48, 48), 40 * i, np.uint8))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(DataError, match="broken.jpg"):
        predict(work, fast_ckpt, f"input={folder}")
    result, out = predict(work, fast_ckpt, f"input={folder}", "on_bad_image=skip")
    assert result.skipped == 1 and Path(result.skipped_file).is_file()
    assert result.rows == 3 and len(read_csv(out)[1]) == 3
    with pytest.raises(UserError, match="label_format"):
        predict(work, fast_ckpt, f"input={folder}", "label_format=word")
    no_test = make_challenge(tmp_path / "ch", with_test=False)
    with pytest.raises(UserError, match="nothing to predict"):
        predict(work, fast_ckpt, "data=challenge", f"data.root={no_test}")
    with pytest.raises(UserError, match="is a folder"):
        predict(work, fast_ckpt, f"input={folder}", "on_bad_image=skip", output=tmp_path)


def test_csv_is_never_partial(tmp_path):
    out = tmp_path / "sub.csv"
    write_csv_atomic(out, ["image", "label"], [["a.jpg", 1]])
    before = out.read_text()

    def rows():
        yield ["b.jpg", 2]
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_csv_atomic(out, ["image", "label"], rows())
    assert out.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub.csv"]


@pytest.mark.parametrize("case", ["missing", "not_a_checkpoint", "empty_folder"])
def test_cli_one_line_error(case, fast_ckpt, tmp_path):
    """The real command: one 'error:' line, exit code 2, no traceback; these fail before torch is imported."""
    empty = tmp_path / "empty"
    empty.mkdir()
    notes = tmp_path / "notes.ckpt"
    notes.write_text("not a model")
    ckpt, expected = {"missing": (tmp_path / "nope.ckpt", "checkpoint not found"),
                      "not_a_checkpoint": (notes, "not a PyTorch checkpoint"),
                      "empty_folder": (fast_ckpt, "empty folder")}[case]
    proc = subprocess.run([sys.executable, str(ROOT / "predict.py"), f"ckpt={ckpt}", f"input={empty}",
                           f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr


def test_output_never_replaces_a_file_predict_did_not_write(fast_ckpt, work, tmp_path, challenge):
    args = (f"input={challenge / 'images_test'}",)
    target = tmp_path / "passwd"
    target.write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(UserError, match=r"output=.*passwd exists and is not an output of fer.*overwrite=true"):
        predict(work, fast_ckpt, *args, output=target)
    # refused before anything is read: a checkpoint that does not exist is not even looked at
    with pytest.raises(UserError, match=r"output=.*passwd exists"):
        predict(work, tmp_path / "missing.ckpt", *args, output=target)
    assert target.read_text() == "root:x:0:0:root:/root:/bin/bash\n"
    # a labels CSV looks just like a submission (image,label rows): it is still not ours
    labels = challenge / "challengeA_train.csv"
    before = labels.read_text()
    with pytest.raises(UserError, match="challengeA_train.csv exists and is not an output of fer"):
        predict(work, fast_ckpt, *args, "columns=[file_name,expression]", output=labels)
    assert labels.read_text() == before
    # our own output: re-running into it is fine; once edited by hand, it is the user's
    ours = tmp_path / "ours.csv"
    predict(work, fast_ckpt, *args, output=ours)
    predict(work, fast_ckpt, *args, "label_format=name", output=ours)
    assert read_csv(ours)[1][0][1] in CLASS_NAMES
    ours.write_text(ours.read_text() + "extra,row\n")
    with pytest.raises(UserError, match="ours.csv exists and is not an output of fer"):
        predict(work, fast_ckpt, *args, output=ours)
    # overwrite=true replaces anything
    result, _ = predict(work, fast_ckpt, *args, "overwrite=true", output=target)
    assert read_csv(target)[0] == ["image", "label"] and len(read_csv(target)[1]) == result.rows == N_TEST


def test_full_disk_is_one_line_and_leaves_no_file(fast_ckpt, work, tmp_path, challenge, monkeypatch):
    import errno

    import fer.runtime.table as submission

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(submission.os, "fsync", full)
    out = tmp_path / "sub" / "submission.csv"
    with pytest.raises(UserError, match=r"cannot write output=.*submission.csv: no space left on the device"):
        predict(work, fast_ckpt, f"input={challenge / 'images_test'}", output=out)
    assert list(out.parent.iterdir()) == []  # no partial file, no temporary file


@pytest.mark.parametrize("setting", ["video_every=abc", "batch_size=x", "tta_shift=two", "num_threads=many",
                                     "face_upscale=big"])
def test_a_word_where_a_number_belongs_is_one_line(setting, work):
    key, value = setting.split("=")
    with pytest.raises(UserError, match=f"^{key}='{value}' is not a number$"):
        predict(work, work / "any.ckpt", setting)


@pytest.mark.parametrize("case,message", [
    ("huge", r"its config asks for a cnn of 7,827,654,471 parameters, more than any model of fer \(200,000,000\)"),
    ("unknown setting", r"its config does not build a mlp model \(TypeError: .*unexpected keyword argument 'nope'"),
    ("ill-typed setting", r"its config does not build a mlp model"),
    ("list of settings", r"damaged checkpoint \(hyper_parameters and state_dict must be mappings; got list and "),
    ("state_dict a string", r"damaged checkpoint .* got dict and str\)"),
])
def test_malformed_checkpoint_config_is_one_line_before_anything_is_built(case, message, fast_ckpt, tmp_path):
    """A 2 KB checkpoint can ask for a model of gigabytes, or for settings its model does not have: refused in one
    line naming the file, the size counted on the meta device (nothing allocated)."""
    import torch

    from fer.models.loading import load_model

    ckpt = torch.load(fast_ckpt, map_location="cpu", weights_only=True)
    hp = dict(ckpt["hyper_parameters"])
    bad = {"huge": {"fer_model": "cnn", "hyper_parameters": {"channels": [4096] * 4, "fc": [200000]}},
           "unknown setting": {"hyper_parameters": {**hp, "nope": 3}},
           "ill-typed setting": {"hyper_parameters": {**hp, "hidden": "wide"}},
           "list of settings": {"hyper_parameters": list(hp)},
           "state_dict a string": {"state_dict": "x"}}[case]
    path = tmp_path / "bad.ckpt"
    torch.save({**ckpt, **bad}, path)
    with pytest.raises(UserError, match=f"^{path}: {message}"):
        load_model(path)


def test_num_threads_holds_while_scoring_and_the_callers_count_is_restored(work, fast_ckpt, challenge, monkeypatch):
    """num_threads=N is torch's thread count while predict.py scores; run_predict, a library call too, hands the
    process back with the caller's count (it used to leave N set for whatever ran next)."""
    import torch

    from fer.inference import engine

    seen = []
    real = engine.predict_array
    monkeypatch.setattr(engine, "predict_array",
                        lambda *a, **k: (seen.append(torch.get_num_threads()), real(*a, **k))[1])
    outer = torch.get_num_threads()
    torch.set_num_threads(2)  # the caller's own setting (the module runs on one thread)
    try:
        predict(work, fast_ckpt, "num_threads=1", f"input={challenge / 'images_test'}")
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(outer)
