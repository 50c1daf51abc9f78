"""Models are found by registered name: every conf/model/ file is a registered model, checkpoints store the name,
checkpoints of the format before the registry still load, and no checkpoint can make fer import a module."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from fer.errors import UserError
from fer.models.loading import load_model
from fer.models.registry import get_model_class, list_models, register_model

from helpers import MODEL_NAMES, ROOT

DATA = ROOT / "tests" / "data"


def test_every_model_config_is_a_registered_model_and_back():
    assert list_models() == MODEL_NAMES
    for name in MODEL_NAMES:
        cls = get_model_class(name)
        assert cls.model_name == name and cls.__module__ == f"fer.models.{name}"


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_every_model_answers_what_flows_may_ask(model, tmp_path):
    """fer.capabilities: each registered model declares every answer (the base class's defaults, or its own), with
    the declared types; flows read them and never probe. A new model is covered here with no edit."""
    import typing

    from fer.capabilities import Trainable
    from fer.training import instantiate_model
    from helpers import SMALL, compose_train

    built = instantiate_model(compose_train(tmp_path, [f"model={model}", *SMALL.get(model, [])]).model)
    assert isinstance(built, Trainable)
    hints = typing.get_type_hints(Trainable)
    for name, kind in hints.items():
        value = getattr(built, name)
        assert isinstance(value, typing.get_args(kind) or kind) or (value is None and type(None) in typing.get_args(
            kind)), (name, value)
    if not built.onnx_exportable:
        assert built.onnx_refusal, "a model that cannot be exported says why"
    x = torch.rand(2, 1, 48, 48)
    if model != "svm":  # the unfitted SVM has no predictions to give
        with torch.no_grad():
            assert built.eval().tta_proba(x, True, 2).shape == (2, 7)


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_every_model_takes_a_training_step(model, tmp_path):
    """The training step of each registered model, without a Trainer (one end-to-end training per model is in
    tests/test_train.py, -m slow): a finite loss whose gradient reaches every trainable parameter, and one optimiser
    step of the model's own configuration changes the weights. A model with nothing to train by gradient (the SVM,
    fitted in its own hook: tests/test_svm.py) must take its step its own way."""
    import hydra

    from fer.models.base import FERClassifier, optimizer_config
    from fer.training import instantiate_model
    from helpers import SMALL, compose_train

    torch.manual_seed(0)
    built = instantiate_model(compose_train(tmp_path, [f"model={model}", *SMALL.get(model, [])]).model).train()
    trainable = [p for p in built.parameters() if p.requires_grad]
    if not trainable:
        assert type(built).training_step is not FERClassifier.training_step, "no weights to learn, no step of its own"
        return
    x, y = torch.rand(8, 1, 48, 48), torch.arange(8) % 7
    loss = built.training_step((x, y), 0)
    assert torch.isfinite(loss)
    loss.backward()
    unreached = [n for n, p in built.named_parameters() if p.requires_grad and p.grad is None]
    assert not unreached, f"no gradient reaches {unreached[:5]}"
    before = [p.detach().clone() for p in trainable]
    optimizer = hydra.utils.instantiate(optimizer_config(built.hparams.optimizer, built.device),
                                        params=built.parameters())  # as configure_optimizers builds it
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, trainable))


def test_the_exported_model_the_onnx_member_and_the_ensemble_answer_as_predictors(tmp_path):
    from fer.capabilities import Predictor
    from fer.classes import CLASS_NAMES, IMAGE_SIZE
    from fer.export.onnx_file import export_onnx
    from helpers import classifier
    from fer.predict.ensemble import Ensemble, OnnxMember
    from fer.runtime import ExpressionModel
    from fer.runtime.metadata import ModelInfo

    mlp = classifier("mlp", {"hidden": [16]}).eval()
    path = export_onnx(mlp, tmp_path / "m.onnx", ModelInfo("mlp", CLASS_NAMES, IMAGE_SIZE, views="flip"))
    exported, member = ExpressionModel(path), OnnxMember(path)
    for predictor in (exported, member, Ensemble([mlp, member])):
        assert isinstance(predictor, Predictor)
    assert exported.mirror_invariant and member.mirror_invariant  # the flip view is in the graph
    assert not Ensemble([mlp, member]).mirror_invariant  # the plain mlp is not
    faces = np.random.default_rng(0).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    np.testing.assert_allclose(exported.tta_proba(faces, True, 2), exported.predict_proba(faces), atol=1e-6)


def test_names_are_registered_once_and_well_formed():
    with pytest.raises(ValueError, match="registered twice"):
        register_model("mlp")(type("Other", (), {}))
    with pytest.raises(ValueError, match="lower-case"):
        register_model("Bad-Name")


@pytest.mark.parametrize("model", ["mlp", "svm"])
def test_checkpoints_of_the_2026_11_25_format_still_load(model):
    """Files written by fer as of 2026-11-25 (before the registry): the model named by class path."""
    checkpoint = torch.load(DATA / f"{model}_format_2026-11-25.ckpt", weights_only=True)
    assert "fer_model" not in checkpoint and checkpoint["fer_model_class"].startswith(f"fer.models.{model}.")
    loaded = load_model(DATA / f"{model}_format_2026-11-25.ckpt")
    assert loaded.model_name == model
    expected = np.load(DATA / "format_2026-11-25_expected.npz")
    x = torch.from_numpy(expected["images"]).float().div(255).unsqueeze(1)
    with torch.no_grad():
        np.testing.assert_allclose(loaded.predict_proba(x).numpy(), expected[model], atol=1e-6)


def test_checkpoints_from_before_the_net_node_score_the_same():
    """A cnn checkpoint of 2026-12-07 (crops of 40, temperature 1.4), before the `net:` node: the network's keys
    (channels, fc, dropouts) among the model's own. Read with them moved into `net`, it scores as it did."""
    checkpoint = torch.load(DATA / "cnn_format_2026-12-07.ckpt", weights_only=True)
    assert "net" not in checkpoint["hyper_parameters"] and checkpoint["hyper_parameters"]["channels"] == [4, 8]
    loaded = load_model(DATA / "cnn_format_2026-12-07.ckpt")
    assert loaded.model_name == "cnn" and loaded.hparams.net["channels"] == [4, 8] and loaded.hparams.crop_size == 40
    x = torch.from_numpy(np.load(DATA / "format_2026-11-25_expected.npz")["images"]).float().div(255).unsqueeze(1)
    np.testing.assert_allclose(loaded.predict_proba(x).numpy(),
                               np.load(DATA / "cnn_format_2026-12-07_expected.npz")["cnn"], atol=1e-6)


LAYOUTS = json.loads((DATA / "state_dict_layout_2026-12-07.json").read_text())


@pytest.mark.parametrize("config", LAYOUTS)
def test_networks_keep_the_layer_names_and_shapes_checkpoints_hold(config, tmp_path):
    """Every network, built from its `net:` node, has the state dict (names and shapes) its model had on
    2026-12-07, before the node (recorded then, on the meta device): checkpoints of then still load."""
    from fer.training import instantiate_model
    from helpers import compose_train

    name, *overrides = config.split()
    with torch.device("meta"):
        built = instantiate_model(compose_train(tmp_path, [f"model={name}", *overrides]).model)
    assert {k: list(v.shape) for k, v in built.state_dict().items()} == LAYOUTS[config]


def test_a_checkpoint_whose_config_builds_another_model_is_refused(tmp_path):
    checkpoint = torch.load(DATA / "cnn_format_2026-12-07.ckpt", weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    for key in ("channels", "fc", "conv_dropout", "fc_dropout"):  # the cnn's keys, now its network's
        hparams.pop(key)
    hparams["net"] = {"_target_": "fer.models.mlp.MLP", "hidden": [4]}
    torch.save(checkpoint, tmp_path / "swapped.ckpt")
    with pytest.raises(UserError, match=r"swapped.ckpt: damaged checkpoint \(it names model cnn, its config builds "
                                        r"mlp\)"):
        load_model(tmp_path / "swapped.ckpt")


@pytest.fixture
def seventh_model(tmp_path, monkeypatch):
    """A new model as docs/DEVELOPMENT.md says to add one: a module fer/models/tiny.py with a registered network
    and a conf/model/tiny.yaml (here both in tmp_path, on fer.models' and Hydra's search paths)."""
    import fer.models
    import fer.models.registry as registry

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny.py").write_text(
        "from torch import nn\n"
        "from fer.models.registry import register_model\n\n\n"
        "@register_model('tiny')\n"
        "class Tiny(nn.Sequential):\n"
        "    def __init__(self, width: int = 4, image_size: int = 48):\n"
        "        super().__init__(nn.Flatten(), nn.Linear(image_size * image_size, width), nn.ReLU(), "
        "nn.Linear(width, 7))\n")
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "tiny.yaml").write_text(
        "defaults:\n  - _base\nnet:\n  _target_: fer.models.tiny.Tiny\n  width: 8\nchannels_last: false\n")
    monkeypatch.setattr(fer.models, "__path__", [*fer.models.__path__, str(tmp_path / "models")])
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    yield f"hydra.searchpath=[file://{tmp_path / 'conf'}]"
    sys.modules.pop("fer.models.tiny", None)


def test_a_seventh_model_is_one_module_and_one_yaml(seventh_model, tmp_path):
    """Nothing else is edited: the new network trains a step, is saved by its registered name, loads back and
    predicts, and is listed among the models."""
    from fer.models.registry import list_models
    from fer.training import instantiate_model
    from helpers import compose_train, untrained_checkpoint

    model = instantiate_model(compose_train(tmp_path, ["model=tiny", seventh_model]).model)
    assert model.model_name == "tiny" and "tiny" in list_models()
    model.training_step((torch.rand(4, 1, 48, 48), torch.arange(4)), 0).backward()
    assert model.net[1].weight.grad is not None
    loaded = load_model(untrained_checkpoint(tmp_path / "tiny.ckpt", "tiny", [seventh_model]))
    assert loaded.model_name == "tiny" and loaded.hparams.net["width"] == 8
    assert loaded.predict_proba(torch.rand(3, 1, 48, 48)).shape == (3, 7)


def test_svm_checkpoints_with_their_own_score_scale_score_the_same():
    """An SVM checkpoint of 2026-12-06, before the SVM's own score scale (k, key "temperature") was folded into the
    calibration every model shares: softmax(k * scores / T) then, softmax(scores / T') now, the same numbers."""
    path = DATA / "svm_format_2026-12-06.ckpt"
    state = torch.load(path, weights_only=True)["state_dict"]
    assert float(state["temperature"]) == 2.0 and float(state["calibration_t"]) == pytest.approx(1.3)
    loaded = load_model(path)
    assert "temperature" not in loaded.state_dict()
    images = np.load(DATA / "format_2026-11-25_expected.npz")["images"]
    x = torch.from_numpy(images).float().div(255).unsqueeze(1)
    with torch.no_grad():
        np.testing.assert_allclose(loaded.predict_proba(x).numpy(),
                                   np.load(DATA / "svm_format_2026-12-06_expected.npz")["svm"], atol=1e-6)


@pytest.fixture
def probe_module(tmp_path, monkeypatch):
    """A module `probe` on the Python path that leaves a file behind when it is imported."""
    marker = tmp_path / "probe_was_imported"
    (tmp_path / "probe.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Fly: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    sys.modules.pop("probe", None)


@pytest.mark.parametrize("entry", [{"fer_model": "probe"}, {"fer_model_class": "probe.Fly"},
                                   {"fer_model": "os.path"}, {"fer_model": "../probe"},
                                   {"fer_model_class": "fer.models.probe.Fly"}, {"fer_model": "base"},
                                   {"fer_model_class": "fer.models.base.FERClassifier"}, {"fer_model": ["mlp"]}])
def test_unregistered_names_are_refused_in_one_line_without_importing_anything(entry, probe_module, tmp_path):
    checkpoint = torch.load(DATA / "mlp_format_2026-11-25.ckpt", weights_only=True)
    checkpoint.pop("fer_model_class")
    path = tmp_path / "foreign.ckpt"
    torch.save({**checkpoint, **entry}, path)
    with pytest.raises(UserError, match=r"foreign.ckpt: model .* not a (registered )?model of this fer "
                                        rf"\(registered: {', '.join(MODEL_NAMES)}\)") as exc:
        load_model(path)
    assert "\n" not in str(exc.value)
    assert not probe_module.exists() and "probe" not in sys.modules
