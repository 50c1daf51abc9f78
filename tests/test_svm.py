"""The HOG + SVM model (fer.models.svm.HogSVM) through the same DataModule, Trainer and checkpoints as the
neural models: one-epoch fit on un-augmented images, SVC scores as logits calibrated as every model's, checkpoint round trip."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from skimage.feature import hog as skimage_hog
from torch import nn

from fer.data.augment import to_unit_float
from fer.data.datamodule import FERDataModule
from fer.data.sources import SyntheticSource
from fer.errors import UserError
from fer.models.calibration import fit_temperature
from fer.models.hog import HogFeatures, hog_batch
from fer.models.loading import load_model, read_checkpoint
from fer.models.svm import HogSVM
from fer.models.svm_storage import LEGACY_PICKLE_KEY, SKOPS_KEY
from fer.training import instantiate_model

from conftest import ROOT


class Poison(nn.Module):
    """An "augmentation" that blanks every image: any batch it touched is all zeros."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class RecordTrainingBatches(pl.Callback):
    """Keeps the training batches exactly as the model received them (after on_after_batch_transfer)."""

    def __init__(self) -> None:
        self.images: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.images.append(batch[0].detach().cpu().clone())


def make_dm(cache_dir: Path) -> FERDataModule:
    return FERDataModule(source=SyntheticSource(n_train=350, n_test=140, seed=3), cache_dir=str(cache_dir),
                         batch_size=64, eval_batch_size=64, val_fraction=0.2, augment=Poison(), progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("svm")
    dm = make_dm(tmp / "cache")
    model = HogSVM(cell_sizes=[8, 6], pca_components=60, C=10.0)
    recorder = RecordTrainingBatches()
    trainer = pl.Trainer(accelerator="cpu", max_epochs=3, logger=False, enable_checkpointing=True,
                         default_root_dir=tmp, callbacks=[recorder], enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    ckpt = trainer.checkpoint_callback.best_model_path
    test_metrics = trainer.test(model, datamodule=dm, ckpt_path=ckpt, verbose=False)[0]
    x_test = to_unit_float(torch.from_numpy(np.ascontiguousarray(dm.cache.images[dm.idx["test"]])))
    y_test = torch.from_numpy(dm.cache.labels[dm.idx["test"]])
    return SimpleNamespace(dm=dm, model=model, trainer=trainer, recorder=recorder, ckpt=ckpt, fit_metrics=fit_metrics,
                           test_metrics=test_metrics, x_test=x_test, y_test=y_test)


# ---- HOG ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", [8, 6, 4])
def test_batched_hog_equals_skimage(cell):
    rng = np.random.default_rng(cell)
    images = rng.random((5, 48, 48), dtype=np.float32)
    images[:, 10:30, 20:24] += 1.0  # some strong edges
    ours = hog_batch(images, orientations=9, cell=cell, block=2, block_norm="L2-Hys")
    ref = np.stack([skimage_hog(im, orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(2, 2),
                                block_norm="L2-Hys") for im in images])
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_hog_features_accepts_any_image_layout_and_concatenates_cell_sizes():
    x = np.random.default_rng(0).random((3, 1, 48, 48), dtype=np.float32)
    hog = HogFeatures(cell_sizes=(8, 6), soft_binning=True)
    flat = hog.transform(x.reshape(3, -1))
    assert flat.shape == (3, 900 + 1764)
    np.testing.assert_array_equal(flat, hog.transform(x))


# ---- training ----------------------------------------------------------------------------------------
def test_fits_once_in_exactly_one_epoch(trained):
    trainer, model, dm = trained.trainer, trained.model, trained.dm
    assert trainer.current_epoch == 1 and trainer.max_epochs == 3  # stopped after the first epoch
    assert model.fitted and trainer.global_step == 1  # the fit counts as the one step (so checkpoints save)
    n_batches = len(dm.train_dataloader())
    assert len(trained.recorder.images) == n_batches
    assert model.fit_info["svm_n_train"] == n_batches * 64
    assert Path(trained.ckpt).is_file()
    assert {"val/acc", "val/loss", "train/acc", "train/svm_fit_seconds"} <= set(trained.fit_metrics)
    # one calibration convention: the shared temperature (fer.training.calibrate), no scale of the SVM's own
    assert set(model.state_dict()) == {"class_weight", "calibration_t"} and "val/temperature" not in trained.fit_metrics


def test_svm_saw_unaugmented_training_images(trained):
    assert HogSVM.train_augmentation is False
    seen = torch.cat(trained.recorder.images)
    assert seen.shape[1:] == (1, 48, 48) and seen.dtype == torch.float32
    assert seen.flatten(1).amax(1).min() > 0  # the blanking "augmentation" never ran
    pixels = seen * 255
    assert torch.equal(pixels, pixels.round())  # still exactly the decoded uint8 values
    train_images = trained.dm.cache.images[trained.dm.idx["train"]]
    known = {img.tobytes() for img in train_images}
    assert all(img.tobytes() in known for img in pixels.round().to(torch.uint8)[:, 0].numpy())


def test_datamodule_augments_only_models_that_want_it(tmp_path):
    dm = make_dm(tmp_path)
    batch = (torch.full((4, 48, 48), 200, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64))
    cases = ((HogSVM, False), (SimpleNamespace(train_augmentation=True), True))
    for module, blanked in cases:
        dm.trainer = SimpleNamespace(training=True, lightning_module=module)
        x, _ = dm.on_after_batch_transfer(batch, 0)
        assert bool((x == 0).all()) is blanked


def test_accuracy_clearly_above_chance(trained):
    assert trained.test_metrics["test/acc"] > 0.35  # chance: 1/7
    assert trained.test_metrics["test/f1_macro"] > 0.25


def test_predictions_are_the_svc_decision(trained):
    model, x = trained.model, trained.x_test
    probs = model.predict_proba(x)
    decision = model.pipeline.decision_function(x.reshape(len(x), -1).numpy())
    np.testing.assert_array_equal(probs.argmax(1).numpy(), decision.argmax(1))
    np.testing.assert_array_equal(probs.argmax(1).numpy(), model.pipeline.predict(x.reshape(len(x), -1).numpy()))


def test_probabilities_sum_to_one(trained):
    probs = trained.model.predict_proba(trained.x_test[:50])
    assert probs.shape == (50, 7) and probs.dtype == torch.float32
    assert torch.allclose(probs.sum(1), torch.ones(50), atol=1e-5)
    assert (probs >= 0).all()


# ---- checkpoints -------------------------------------------------------------------------------------
def test_checkpoint_round_trip_gives_identical_predictions(trained):
    checkpoint = read_checkpoint(trained.ckpt)  # torch.load(weights_only=True): only tensors, plain types, bytes
    assert checkpoint["fer_model"] == "svm" and "fer_model_class" not in checkpoint
    assert isinstance(checkpoint[SKOPS_KEY], bytes) and LEGACY_PICKLE_KEY not in checkpoint
    loaded = load_model(trained.ckpt)
    assert isinstance(loaded, HogSVM) and loaded.fitted and not loaded.training
    assert loaded.hparams.cell_sizes == trained.model.hparams.cell_sizes
    assert torch.equal(loaded.predict_proba(trained.x_test), trained.model.predict_proba(trained.x_test))


def test_checkpoint_written_before_the_registry_and_skops_still_loads():
    """tests/data/svm_format_2026-11-25.ckpt: written by fer as of 2026-11-25 (model class path, pickled pipeline)."""
    data = ROOT / "tests" / "data"
    checkpoint = read_checkpoint(data / "svm_format_2026-11-25.ckpt")
    assert checkpoint["fer_model_class"] == "fer.models.svm.HogSVM" and LEGACY_PICKLE_KEY in checkpoint
    model = load_model(data / "svm_format_2026-11-25.ckpt")
    expected = np.load(data / "format_2026-11-25_expected.npz")
    probs = model.predict_proba(to_unit_float(torch.from_numpy(expected["images"])))
    np.testing.assert_allclose(probs.numpy(), expected["svm"], atol=1e-6)


def _svm_checkpoint_with(tmp_path: Path, trained, **entries) -> Path:
    checkpoint = read_checkpoint(trained.ckpt)
    for key in (SKOPS_KEY, LEGACY_PICKLE_KEY):
        checkpoint.pop(key, None)
    checkpoint.update(entries)
    path = tmp_path / "svm_tampered.ckpt"
    torch.save(checkpoint, path)
    return path


def _global_then_call(module: str, name: str, arg: str) -> bytes:
    """Pickle bytes that look up module.name and call it with one string: what an attacker writes. Protocol 4's
    STACK_GLOBAL, where a dotted name ("os.system") is resolved attribute by attribute from the module."""
    def text(value: str) -> bytes:
        return b"\x8c" + bytes([len(value.encode())]) + value.encode()  # SHORT_BINUNICODE

    return b"\x80\x04" + text(module) + text(name) + b"\x93" + text(arg) + b"\x85R."


# modules that are numpy / scipy / scikit-learn (what the old unpickler let through) and have `os` as an
# attribute: "os.system" resolved through them as a dotted name ran the command
_ATTACK_MODULES = ["numpy.lib.format", "numpy.testing._private.utils", "scipy._lib._util", "sklearn.datasets._base"]


@pytest.mark.parametrize("module", _ATTACK_MODULES)
def test_legacy_pipeline_pickle_that_calls_os_system_is_refused(module, trained, tmp_path):
    import importlib

    marker = tmp_path / "pwned"
    try:
        assert hasattr(importlib.import_module(module), "os")  # the attack would resolve here
    except ImportError:
        pytest.skip(f"{module} is not in this scikit-learn/numpy/scipy")
    path = _svm_checkpoint_with(tmp_path, trained,
                                **{LEGACY_PICKLE_KEY: _global_then_call(module, "os.system", f"touch {marker}")})
    with pytest.raises(UserError, match=f"svm_tampered.ckpt: refusing its SVM pipeline .*{module}.os.system"):
        load_model(path)
    assert not marker.exists()


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("os", "system"), ("subprocess", "call"),
                                         ("sklearn.utils", "deprecated"), ("numpy", "load")])
def test_legacy_pipeline_pickle_refuses_anything_a_pipeline_never_holds(module, name, trained, tmp_path):
    path = _svm_checkpoint_with(tmp_path, trained, **{LEGACY_PICKLE_KEY: _global_then_call(module, name, "1")})
    with pytest.raises(UserError, match=f"refusing its SVM pipeline .*{module}.{name}.*re-train"):
        load_model(path)


def test_skops_pipeline_with_a_foreign_type_is_refused(trained, tmp_path):
    import skops.io

    from sklearn.pipeline import Pipeline

    foreign = skops.io.dumps(Pipeline([("x", SimpleNamespace(fit=None))]))
    path = _svm_checkpoint_with(tmp_path, trained, **{SKOPS_KEY: foreign})
    with pytest.raises(UserError, match="refusing its SVM pipeline .*types.SimpleNamespace"):
        load_model(path)


# ---- pieces ------------------------------------------------------------------------------------------
def test_unfitted_model_skips_validation_and_refuses_to_predict():
    model = HogSVM()
    assert model.validation_step((torch.rand(2, 1, 48, 48), torch.zeros(2, dtype=torch.int64)), 0) is None
    (parameter,) = model.configure_optimizers().param_groups[0]["params"]  # the fit's one step: it changes nothing
    assert parameter.grad is None and all(parameter is not p for p in model.parameters())
    with pytest.raises(RuntimeError, match="not fitted"):
        model(torch.rand(2, 1, 48, 48))


def test_fit_temperature_recovers_the_scale():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(4000, 7)) * 2
    probs = torch.softmax(torch.as_tensor(scores * 0.7), 1).numpy()
    labels = np.array([rng.choice(7, p=p) for p in probs])
    assert fit_temperature(scores, labels) == pytest.approx(0.7, rel=0.1)


def test_hydra_config_builds_the_model():
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["model=svm"])
    assert "optimizer" not in cfg.model and "scheduler" not in cfg.model
    model = instantiate_model(cfg.model)
    assert isinstance(model, HogSVM)
    # no optimiser: the base's optimizer=None/scheduler=None stay out of the hyper-parameters, which the MLflow
    # logger would otherwise log over train.py's own "optimizer"/"scheduler" params
    assert "optimizer" not in model.hparams_initial and "scheduler" not in model.hparams_initial
    assert model.hparams.random_state == cfg.seed
    assert model.hparams.kernel == cfg.model.kernel and model.hparams.C == cfg.model.C


def test_logged_model_serves_the_fitted_svm(trained, tmp_path):
    """The run's MLflow model (fer.tracking.served_model, the same for every model) around the SVM checkpoint: its
    labels are the SVC's own predictions, its probabilities the calibrated ones of the checkpoint."""
    import mlflow.pyfunc
    from mlflow.tracking import MlflowClient

    from fer.classes import CLASS_NAMES
    from fer.tracking.record import ARTIFACT_MODEL, RunRecord

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("svm-test", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(exp)
    RunRecord(client, run.info.run_id, exp).log_model(trained.ckpt)
    mlflow.set_tracking_uri(client.tracking_uri)  # runs:/ resolves through the process's store (log_model left it)
    try:
        served = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/{ARTIFACT_MODEL}", dst_path=str(tmp_path))
    finally:
        mlflow.set_tracking_uri(None)
    faces = np.ascontiguousarray(trained.dm.cache.images[trained.dm.idx["test"]])
    out = served.predict(faces)
    model = load_model(trained.ckpt)
    np.testing.assert_allclose(out[list(CLASS_NAMES)].to_numpy(), model.predict_proba(trained.x_test).numpy(),
                               atol=1e-5)
    svc_says = model.pipeline.predict(trained.x_test.reshape(len(faces), -1).numpy())
    assert out["label"].tolist() == [CLASS_NAMES[i] for i in svc_says]


@pytest.mark.parametrize("present", [(0, 3, 5), (2, 6)])
def test_tiny_training_sets_still_give_seven_scores(present):
    """Fewer images than PCA components, and classes missing (two classes: sklearn's 1-column decision)."""
    rng = np.random.default_rng(0)
    x = torch.rand(24, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    labels = rng.choice(present, size=24)
    labels[:len(present)] = present
    model = HogSVM(pca_components=200)
    model._train_features, model._train_labels = [model.hog.transform(x.reshape(24, -1).numpy())], [labels]
    model.fit_pipeline()
    assert model.pipeline.named_steps["pca"].n_components == 24
    logits = model(x)
    assert logits.shape == (24, 7)
    assert set(logits.argmax(1).tolist()) <= set(present)
    np.testing.assert_array_equal(logits.argmax(1).numpy(), model.pipeline.predict(x.reshape(24, -1).numpy()))
