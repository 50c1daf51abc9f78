"""A training checkpoint rebuilt from a file export.py wrote (fp32, or the int8 file the package ships), for
fine-tuning when the run's own .ckpt is gone: `python train.py init_from=<the .ckpt written here> ...`.

Why: the bundled model (fer/runtime/models/fer2013_expression.onnx) is the project's best network, but its checkpoint
lived in a training folder that is not kept. The file holds every weight: fp32 ones under their checkpoint names
(Probabilities(model) -> `probabilities.model.<key>`), int8 ones quantized per output channel (dequantized here:
(q - zero point) x scale), and each conv's weight and bias fused with the BatchNorm after it by onnxruntime's
pre-processing (`ConvBnFusion_W_...`, `ConvBnFusion_BN_B_...`). A fused pair is split again so that the network
computes the same in eval mode *and* trains like the original: the conv takes the fused weight, and its BatchNorm
takes the mean and variance of that conv's output measured on training faces as its running statistics, with a
scale and shift that undo them (eval: exactly the fused function; training: batch statistics close to those, so
the normalisation is close to identity, as BatchNorm was for the network it was fused from).

    python scripts/checkpoint_from_onnx.py --onnx fer/runtime/models/fer2013_expression.onnx \
        --data ../shared/fer2013 --out outputs/bundled.ckpt

What it cannot give back: the int8 rounding (7-bit weights; the rebuilt network agrees with the fp32 one it came
from as the int8 file does) and the network's settings where they differ from the model's config defaults (the file
names the model, not its `model.net` keys: a mismatch is one line naming the key that does not fit).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("FER_ROOT", str(ROOT))

from fer.errors import UserError  # noqa: E402

PREFIX = "probabilities.model."  # fer.models.base.Probabilities wraps the model as `model` when export.py writes it
FUSED_W, FUSED_B = "ConvBnFusion_W_", "ConvBnFusion_BN_B_"  # onnxruntime.quantization's pre-processing


def stored_weights(model_proto) -> dict[str, torch.Tensor]:
    """Every float initializer as float32, quantized ones dequantized per output channel, by their name in the
    file without the `_quantized` suffix (the copies the quantizer makes for each test-time view, `..._token_<n>`,
    come along under their own names and are not looked up)."""
    from onnx import numpy_helper

    init = {i.name: numpy_helper.to_array(i) for i in model_proto.graph.initializer}
    out = {}
    for name, value in init.items():
        if name.endswith("_quantized"):
            base = name[:-len("_quantized")]
            # weights keep <base>_scale / _zero_point; int32 biases <base>_quantized_scale / _quantized_zero_point
            scale = init.get(f"{name}_scale", init.get(f"{base}_scale"))
            zero = init.get(f"{name}_zero_point", init.get(f"{base}_zero_point"))
            if scale is None or zero is None:
                raise UserError(f"{base}: a quantized weight without its scale or zero point")
            shape = (-1,) + (1,) * (value.ndim - 1) if scale.size > 1 else ()
            deq = (value.astype(np.float64) - zero.astype(np.float64).reshape(shape)) * scale.reshape(shape)
            out[base] = torch.tensor(deq, dtype=torch.float32)
        elif value.dtype.kind == "f":
            out[name] = torch.tensor(np.asarray(value, np.float32))
    return out


def _fused_pairs(model: torch.nn.Module) -> list[tuple[str, str]]:
    """(conv, batchnorm) module names where a BatchNorm directly follows a conv in registration order."""
    named = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    return [(a, b) for (a, ma), (b, mb) in zip(named, named[1:])
            if isinstance(ma, torch.nn.Conv2d) and isinstance(mb, torch.nn.BatchNorm2d)]


def state_from_file(model, weights: dict[str, torch.Tensor]) -> tuple[dict, list[tuple[str, str, torch.Tensor]]]:
    """The model's state_dict filled from the file, and the fused (conv, batchnorm, fused shift) pairs whose
    BatchNorm is left as identity plus that shift (its statistics still to be measured: rebalance())."""
    state = model.state_dict()
    fused = []
    for conv, bn in _fused_pairs(model):
        w, b = weights.get(f"{FUSED_W}{PREFIX}{conv}.weight"), weights.get(f"{FUSED_B}{PREFIX}{bn}.bias")
        if w is None or b is None:
            continue  # not fused in this file: read by name below
        state[f"{conv}.weight"] = w
        state[f"{bn}.weight"], state[f"{bn}.bias"] = torch.ones_like(b), b
        bn_module = model.get_submodule(bn)
        # eval: (x - 0) / sqrt(var + eps) * 1 + b == x + b
        state[f"{bn}.running_mean"] = torch.zeros_like(b)
        state[f"{bn}.running_var"] = torch.full_like(b, 1.0 - bn_module.eps)
        fused.append((conv, bn, b))
    done = {f"{c}.weight" for c, _, _ in fused} | {f"{bn}.{k}" for _, bn, _ in fused
                                                   for k in ("weight", "bias", "running_mean", "running_var")}
    parameters = {name for name, _ in model.named_parameters()}
    missing = []
    for key, value in state.items():
        if key in done or key.endswith("num_batches_tracked"):
            continue
        stored = weights.get(PREFIX + key)
        if stored is None and key not in parameters:
            print(f"{key}: not used by the exported network, kept from the config")  # e.g. the loss's class weights
        elif stored is None:
            missing.append(key)
        elif stored.shape != value.shape:
            raise UserError(f"{key}: {tuple(stored.shape)} in the file, {tuple(value.shape)} in a {model.model_name} "
                            "built from the config (its model.net settings differ from the defaults)")
        else:
            state[key] = stored
    if missing:
        raise UserError(f"not in the file: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} (is it a "
                        f"{model.model_name} exported by export.py?)")
    return state, fused


@torch.no_grad()
def rebalance(model, fused: list[tuple[str, str, torch.Tensor]], faces: np.ndarray, batch: int = 512) -> None:
    """Each fused pair's BatchNorm given the mean and variance of its conv's output on `faces` as running
    statistics, and the scale and shift that undo them: the same function in eval mode, and close to identity
    in training mode, where BatchNorm uses the batch's statistics."""
    sums: dict[str, list] = {}

    def hook(name):
        def record(_module, _inputs, out):
            o = out.double()
            s = sums.setdefault(name, [0.0, 0.0, 0])
            s[0] += o.sum((0, 2, 3))
            s[1] += (o * o).sum((0, 2, 3))
            s[2] += o.shape[0] * o.shape[2] * o.shape[3]
        return record

    handles = [model.get_submodule(conv).register_forward_hook(hook(conv)) for conv, _, _ in fused]
    model.eval()
    x = torch.as_tensor(faces)
    for s in range(0, len(x), batch):
        model(x[s:s + batch, None].float() / 255.0)
    for h in handles:
        h.remove()
    for conv, bn, shift in fused:
        total, squares, n = sums[conv]
        mean = total / n
        var = (squares / n - mean * mean).clamp_min(0.0)
        module = model.get_submodule(bn)
        module.running_mean.copy_(mean.float())
        module.running_var.copy_(var.float())
        module.weight.copy_(torch.sqrt(var + module.eps).float())
        module.bias.copy_((shift.double() + mean).float())


def checkpoint_from_onnx(onnx_path: Path, faces: np.ndarray, out: Path) -> Path:
    """Write a checkpoint of the model in `onnx_path` that `init_from=` and predict.py load; `faces` (uint8
    [N,48,48] training faces) measure the statistics of fused BatchNorms."""
    import onnx
    from hydra import compose, initialize_config_dir

    from fer.models.base import CALIBRATION_KEY
    from fer.runtime.atomic import atomic_path
    from fer.runtime.metadata import read_info
    from fer.training import instantiate_model

    proto = onnx.load(str(onnx_path))
    info = read_info({p.key: p.value for p in proto.metadata_props}, str(onnx_path))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={info.model}"])
    model = instantiate_model(cfg.model)
    weights = stored_weights(proto)
    state, fused = state_from_file(model, weights)
    model.load_state_dict(state)
    if fused:
        rebalance(model, fused, faces)
    state = model.state_dict()
    state[CALIBRATION_KEY] = weights.get(PREFIX + CALIBRATION_KEY, torch.ones(()))
    checkpoint = {"state_dict": state, "hyper_parameters": dict(model.hparams)}
    if info.val_split:  # which faces were val (FERDataModule.state_dict): export and predict check against it
        checkpoint["FERDataModule"] = {"val_split": info.val_split}
    model.on_save_checkpoint(checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:  # never a half-written checkpoint, as training's own writes
        torch.save(checkpoint, tmp)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--onnx", type=Path, default=ROOT / "fer" / "runtime" / "models" / "fer2013_expression.onnx")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "fer2013",
                    help="FER2013 folders: its train faces measure the BatchNorm statistics")
    ap.add_argument("--faces", type=int, default=4096, help="train faces for the statistics")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    from bench.model_card import load_split
    from fer.data.splits import stratified_split

    faces, labels = load_split(args.data, "train")
    train, _ = stratified_split(labels, 0.1, 0)  # the faces training learns from (conf/data: 10% val, split_seed 0)
    faces = faces[np.random.default_rng(0).permutation(train)[:args.faces]]
    print(f"wrote {checkpoint_from_onnx(args.onnx, faces, args.out)}")


if __name__ == "__main__":
    main()
