"""scripts/checkpoint_from_onnx.py, which rebuilds a training checkpoint from an exported file (the bundled model's
checkpoint is not kept): from the fp32 file the checkpoint's own network; from the int8 file (dequantized weights,
each conv's BatchNorm split off again) the same function within int8 rounding, whose BatchNorms also normalise close
to identity in training mode, so a fine-tune (`init_from=`) starts where the file is."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from fer.errors import UserError
from fer.models.loading import load_model
from scripts.checkpoint_from_onnx import checkpoint_from_onnx

from helpers import CONF, untrained_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A cnn_deep checkpoint whose BatchNorms are far from identity (as a trained one's are: fusing them then
    changes the conv weights), exported as fp32 and int8 the way the bundled model was."""
    from fer.export.app import run_export

    work = tmp_path_factory.mktemp("from_onnx")
    ckpt = untrained_checkpoint(work / "cnn_deep.ckpt", "cnn_deep", [f"paths.cache_dir={work / 'cache'}"],
                                temperature=1.3)
    checkpoint = torch.load(ckpt, weights_only=False)
    g = torch.Generator().manual_seed(0)
    for key, value in checkpoint["state_dict"].items():
        if key.endswith(("running_mean", "bias")) and value.ndim == 1 and value.numel() > 7:
            value.copy_(torch.randn(value.shape, generator=g) * 0.3)
        elif key.endswith("running_var") or (key.endswith("weight") and value.ndim == 1):
            value.copy_(torch.rand(value.shape, generator=g) * 2 + 0.3)
    torch.save(checkpoint, ckpt)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("export", overrides=[f"ckpt={ckpt}", f"output={work / 'model.onnx'}", "quantize=int8",
                                           "views=flip_shifts", f"paths.cache_dir={work / 'cache'}", "progress=false",
                                           f"tracking_uri=sqlite:///{work / 'none.db'}", "data.source.n_train=280",
                                           "data.source.n_test=70", "check_images=64", "calibration_images=64"])
    run_export(cfg)
    return work, ckpt


@pytest.fixture(scope="module")
def faces():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (256, 48, 48), dtype=np.uint8)


def _logits(model, faces: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.as_tensor(faces)[:, None].float() / 255)


def test_the_fp32_file_gives_back_the_checkpoints_network(exported, faces, tmp_path):
    work, ckpt = exported
    rebuilt = load_model(checkpoint_from_onnx(work / "model.onnx", faces, tmp_path / "fp32.ckpt"))
    original = load_model(ckpt)
    torch.testing.assert_close(_logits(rebuilt, faces), _logits(original, faces), atol=1e-4, rtol=1e-4)
    assert float(rebuilt.calibration_t) == pytest.approx(1.3)
    assert rebuilt.val_split_record == original.val_split_record is not None


def test_the_int8_file_gives_the_same_function_and_batchnorms_that_train_from_there(exported, faces, tmp_path):
    work, ckpt = exported
    rebuilt = load_model(checkpoint_from_onnx(work / "model.int8.onnx", faces, tmp_path / "int8.ckpt"))
    original = _logits(load_model(ckpt), faces)
    spread = original.std()
    assert (_logits(rebuilt, faces) - original).abs().max() < 0.05 * spread  # 7-bit weights per channel
    assert float(rebuilt.calibration_t) == pytest.approx(1.3)
    # training mode (dropout left off): each BatchNorm normalises with the batch's own statistics, which are those
    # it was given, so the network computes what it does in eval mode
    for module in rebuilt.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.train()
    assert (_logits(rebuilt, faces) - original).abs().max() < 0.05 * spread


def test_a_file_of_another_network_is_one_line(exported, faces, tmp_path):
    import onnx

    work, _ = exported
    proto = onnx.load(str(work / "model.onnx"))
    for p in proto.metadata_props:
        if p.key == "fer.model":
            p.value = "cnn"
    onnx.save(proto, str(tmp_path / "other.onnx"))
    with pytest.raises(UserError, match=r"in the file, .* in a cnn built from the config"):
        checkpoint_from_onnx(tmp_path / "other.onnx", faces, tmp_path / "never.ckpt")
