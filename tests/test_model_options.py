"""Model options for fast GPU training, checked on the CPU: training on random crops with ten-crop evaluation,
torch.compile, and fused optimizers on CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fer.models.base import optimizer_config
from fer.models.crops import random_crops, ten_crops
from fer.models.loading import load_model
from fer.tracking.served_model import load_checkpoint
from fer.training import run_training

from helpers import FAST, compose_train, score_test_split


def test_random_crops_are_crops_at_varied_offsets():
    x = torch.rand(64, 1, 48, 48)
    torch.manual_seed(0)
    y = random_crops(x, 40)
    assert y.shape == (64, 1, 40, 40)
    offsets = set()
    for i in range(64):
        found = [(dy, dx) for dy in range(9) for dx in range(9) if torch.equal(y[i], x[i, :, dy:dy + 40, dx:dx + 40])]
        assert found, i
        offsets.add(found[0])
    assert len(offsets) > 30


def test_ten_crops_are_the_corners_the_centre_and_their_mirrors():
    x = torch.arange(2 * 48 * 48, dtype=torch.float32).view(2, 1, 48, 48)
    crops = ten_crops(x, 40).view(10, 2, 1, 40, 40)
    expected = [x[..., 0:40, 0:40], x[..., 0:40, 8:48], x[..., 8:48, 0:40], x[..., 8:48, 8:48], x[..., 4:44, 4:44]]
    for k, e in enumerate(expected):
        assert torch.equal(crops[k], e) and torch.equal(crops[k + 5], e.flip(-1))


def test_crop_model_trains_on_crops_and_predicts_48px_faces_by_ten_crops(tmp_path):
    cfg = compose_train(tmp_path, ["model=cnn_deep", "model.crop_size=40", "logger=none", *FAST])
    results = run_training(cfg)
    (best,) = (Path(cfg.paths.output_dir) / "checkpoints").glob("epoch_*.ckpt")
    model = load_model(best)
    assert model.hparams.crop_size == 40 and model.net_input_size == 40
    x = torch.rand(3, 1, 48, 48)
    with torch.no_grad():
        logits = model(x)
        by_hand = model.net((ten_crops(x, 40) - 0.5) / 0.25).view(10, 3, 7).mean(0)
    torch.testing.assert_close(logits, by_hand, atol=1e-5, rtol=1e-5)
    probs, labels = score_test_split(cfg, model)
    assert results["test/acc"] == pytest.approx(float((probs.argmax(1) == labels).mean()), abs=1e-6)
    with pytest.raises(ValueError, match="model.crop_size"):
        type(model)(crop_size=64)


@pytest.mark.slow  # inductor compiles the train, val and test graphs on the CPU: ~30 s (CI runs the slow tests)
def test_compiled_model_trains_and_matches_the_plain_one(tmp_path, one_thread):
    cfg = compose_train(tmp_path, ["model=mlp", "model.net.hidden=[32]", "model.compile=true", "logger=none", *FAST])
    results = run_training(cfg)
    assert np.isfinite(results["val/loss"])
    (best,) = (Path(cfg.paths.output_dir) / "checkpoints").glob("epoch_*.ckpt")
    checkpoint = torch.load(best, weights_only=True)
    assert not any("_orig_mod" in k or "compiled" in k for k in checkpoint["state_dict"])  # same keys as ever
    # loading for inference never compiles (predict.py, export): the plain network, whatever training did
    plain = load_model(best)
    assert checkpoint["hyper_parameters"]["compile"] is True and "_compiled_net" not in plain.__dict__
    compiled = type(plain)(**checkpoint["hyper_parameters"])
    compiled.load_state_dict(checkpoint["state_dict"])
    compiled.eval()
    assert "_compiled_net" in compiled.__dict__
    x = torch.rand(8, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), plain(x), atol=1e-5, rtol=1e-5)
    # the logged MLflow model loads the checkpoint the same way: the plain network, no compiled state
    assert "_compiled_net" not in load_checkpoint(best).__dict__


@pytest.mark.parametrize("target", ["torch.optim.SGD", "torch.optim.Adam", "torch.optim.AdamW"])
def test_fused_optimizer_kernels_on_cuda_only(target):
    cfg = {"_target_": target, "lr": 0.1}
    assert optimizer_config(cfg, torch.device("cuda"))["fused"] is True
    assert "fused" not in optimizer_config(cfg, torch.device("cpu"))
    assert optimizer_config({**cfg, "fused": False}, torch.device("cuda"))["fused"] is False
    assert "fused" not in optimizer_config({"_target_": "torch.optim.LBFGS"}, torch.device("cuda"))


def test_epoch_loss_is_the_weighted_mean_over_every_real_image_padding_batches_included():
    # the eval losses are summed on the device and divided once per epoch: the same weighted mean as one
    # cross_entropy over the whole split, and an all-padding DDP batch (labels -1) adds nothing (no nan)
    from fer.models.base import FERClassifier

    model = FERClassifier({"_target_": "fer.models.mlp.MLP", "hidden": [8]}, label_smoothing=0.1)
    model.class_weight.copy_(torch.linspace(0.5, 2.0, 7))
    torch.manual_seed(0)
    batches = [(torch.randn(5, 7), torch.randint(0, 7, (5,))), (torch.randn(3, 7), torch.full((3,), -1)),
               (torch.randn(4, 7), torch.tensor([2, -1, 6, 0]))]
    for logits, y in batches:
        model._add_eval_loss("val/loss", logits, y)
    value, weight = model._epoch_sums["val/loss"].tolist()
    logits, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    expected = torch.nn.functional.cross_entropy(logits, y, weight=model.class_weight, ignore_index=-1,
                                                 label_smoothing=0.1)
    assert value / weight == pytest.approx(float(expected), rel=1e-5)


class _CountingNet(torch.nn.Module):
    """Wraps a net and counts the images it is run on."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net, self.images = net, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += len(x)
        return self.net(x)


@pytest.mark.parametrize("crop", [40, 41, None])
def test_ten_crop_models_skip_the_mirror_view_they_already_average(crop):
    """A ten-crop model with even margins sees a mirrored face as the same ten crops: predict's and the test
    split's mirror view would only double the cost, so it is skipped, with the same probabilities. An odd margin
    (41: centre crop 3 px from the left, 4 from the right) or no crops gives different mirror views: kept."""
    from helpers import classifier
    from fer.inference.engine import predict_array
    from fer.tta import tta_proba

    torch.manual_seed(0)
    model = classifier("cnn_deep", {"channels": (4, 8), "fc": 16}, crop_size=crop).eval()
    assert model.mirror_invariant == (crop == 40)
    images = np.random.default_rng(0).integers(0, 256, (6, 48, 48), dtype=np.uint8)
    x = torch.from_numpy(images).float().div(255).unsqueeze(1)
    with torch.no_grad():
        mirror_gap = (model.predict_proba(x) - model.predict_proba(x.flip(-1))).abs().max().item()
        both_views = tta_proba(model.predict_proba, x, flip=True, shift=0)
    assert (mirror_gap < 1e-5) == (crop == 40)
    model.net = _CountingNet(model.net)
    probs = predict_array(model, images, tta=True)
    views = 1 if crop == 40 else 2
    assert model.net.images == views * len(images) * (10 if crop else 1)
    np.testing.assert_allclose(probs, both_views.numpy(), atol=1e-5)


def test_ensemble_tta_is_the_mixture_of_its_members_tta():
    """Ensemble.tta_proba (each member its own views) equals the TTA mean of the mixture, for a ten-crop member
    beside a plain one, with the shifted views too."""
    from helpers import classifier
    from fer.predict.ensemble import Ensemble
    from fer.tta import tta_proba

    torch.manual_seed(0)
    small = {"channels": (4, 8), "fc": 16}
    members = [classifier("cnn_deep", small, crop_size=40).eval(), classifier("cnn_deep", small).eval()]
    ensemble = Ensemble(members, weights=[0.3, 0.7])
    x = torch.rand(5, 1, 48, 48)
    with torch.no_grad():
        for shift in (0, 2):
            torch.testing.assert_close(ensemble.tta_proba(x, True, shift),
                                       tta_proba(ensemble.predict_proba, x, True, shift), atol=1e-4, rtol=1e-4)


def test_predict_summary_names_the_tta_views_each_model_ran():
    """predict.py's summary says when the mirror view was skipped (each model's tta_proba), and for which
    members of an ensemble: "tta flip" alone would claim a view that never ran."""
    from fer.predict.settings import Scoring
    from fer.predict.summary import describe_tta

    flip, shifts, off = (Scoring("cpu", "fp32", 64, None, tta=t, tta_shifts=s, tta_shift=2, progress=False)
                         for t, s in ((True, False), (True, True), (False, True)))
    assert describe_tta(off, ["cnn_deep"], [True]) == "off"
    assert describe_tta(flip, ["mlp"], [False]) == "flip"
    assert describe_tta(flip, ["cnn_deep"], [True]) == "flip; mirror view skipped: ten crops include it"
    assert describe_tta(shifts, ["cnn_deep", "efficientnet", "cnn"], [True, False, True]) == \
        "flip+shifts; mirror view skipped for cnn_deep, cnn: ten crops include it"


@pytest.mark.parametrize("arch,crop,side", [("resnet18", None, 6), ("resnet18", 40, 5), ("resnet18d", None, 6)])
def test_resnet_stem_keeps_small_faces_large(arch, crop, side):
    """model=resnet: ImageNet's stem would leave a 48x48 face 2x2 in the last stage; the small-image stem (stride 1,
    no max-pool) leaves 6x6 (5x5 for 40x40 crops), for the plain and the deep ("d") stems alike."""
    from helpers import classifier

    model = classifier("resnet", {"arch": arch}, crop_size=crop).eval()
    size = crop or 48
    with torch.no_grad():
        features = model.net.forward_features(torch.rand(2, 1, size, size))
        assert features.shape == (2, 512, side, side)
        assert model(torch.rand(2, 1, 48, 48)).shape == (2, 7)
    with pytest.raises(ValueError, match="not a timm ResNet"):
        classifier("resnet", {"arch": "efficientnet_b0"})


@pytest.mark.parametrize("native, expected", [(False, "32-true"), (True, "bf16-mixed")])
def test_training_precision_follows_the_hardware(native, expected, monkeypatch, tmp_path):
    """trainer.precision defaults to bf16 only where the device has it natively: emulated bf16 trained cnn_deep
    12x slower than fp32 on an AVX2-only CPU."""
    import fer.devices

    monkeypatch.setattr(fer.devices, "cpu_has_native_bf16", lambda: native)
    assert compose_train(tmp_path, ["trainer.accelerator=cpu"]).trainer.precision == expected
    assert compose_train(tmp_path, ["trainer.precision=32-true"]).trainer.precision == "32-true"  # a choice stays
