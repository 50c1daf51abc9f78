"""Load any fer checkpoint (any model family) for inference, with clear errors for bad files.

A checkpoint names its model by registered name (fer.models.registry). Checkpoints written before the registry
(fer 0.1, up to 2026-11-25) name a class path instead, "fer.models.<name>.<Class>"; those are accepted when
<name> is a registered model whose class is <Class>. Nothing else is imported on a checkpoint's say-so.

Checkpoints written before the `net:` node (up to 2026-12-07) hold the network's keys among the model's own
(channels, fc, ... beside optimizer); they are read with those keys moved into `net`, the same weights (the
networks keep their layer names).
"""

from __future__ import annotations

import inspect
import zipfile
from pathlib import Path
from typing import Any, Callable

import pytorch_lightning as pl
import torch

from fer.errors import UserError
from fer.models.base import CHECKPOINT_MODEL_KEY, FERClassifier
from fer.models.registry import get_model_class, list_models, registered_target, target_of

_LEGACY_KEY = "fer_model_class"


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not a PyTorch checkpoint (expected a .ckpt written by train.py)")
    try:
        # weights_only: checkpoints hold only tensors and plain types, so loading one cannot run code
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise UserError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc


def registered_model(checkpoint: dict, path: str | Path = "") -> tuple[str, Callable]:
    """(the registered name, what is registered under it) of the model a checkpoint names."""
    if "state_dict" not in checkpoint or not (checkpoint.get(CHECKPOINT_MODEL_KEY) or checkpoint.get(_LEGACY_KEY)):
        raise UserError(f"{path}: not a fer model checkpoint (no model name recorded); use a .ckpt from train.py")
    name = checkpoint.get(CHECKPOINT_MODEL_KEY)
    if name is not None:
        registered = get_model_class(name)
        if registered is None:
            raise UserError(f"{path}: model {str(name)[:80]!r} is not a registered model of this fer "
                            f"(registered: {', '.join(list_models())})")
        return name, registered
    legacy = str(checkpoint[_LEGACY_KEY])
    try:
        return registered_target(legacy)
    except ValueError:
        raise UserError(f"{path}: model class {legacy[:80]} is not a model of this fer "
                        f"(registered: {', '.join(list_models())})") from None


def module_class(registered: Callable) -> type[FERClassifier]:
    """The LightningModule of a registered model: itself where it is one (the SVM), else the one every network is
    composed into."""
    return registered if isinstance(registered, type) and issubclass(registered, pl.LightningModule) \
        else FERClassifier


def configured_model_name(model_cfg) -> str:
    """The registered name of the model a `model:` config builds (its network's, or its own for the SVM)."""
    net = model_cfg.get("net")
    return registered_target(net["_target_"] if net else model_cfg["_target_"])[0]


def with_net_node(hparams: dict[str, Any], network: Callable) -> dict[str, Any]:
    """The hyper-parameters of a checkpoint from before the `net:` node, with the network's keys moved into it."""
    keys = set(inspect.signature(network).parameters) - {"image_size"}
    net = {"_target_": target_of(network)}
    net.update({k: v for k, v in hparams.items() if k in keys})
    return {"net": net, **{k: v for k, v in hparams.items() if k not in keys}}


def saved_model(checkpoint: dict, path: str | Path = "") -> tuple[str, type[FERClassifier], dict[str, Any]]:
    """(the model's registered name, its class, its constructor arguments) as its checkpoint describes it, for
    inference."""
    name, registered = registered_model(checkpoint, path)
    hparams = checkpoint.get("hyper_parameters", {})
    if not isinstance(hparams, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise UserError(f"{path}: damaged checkpoint (hyper_parameters and state_dict must be mappings; got "
                        f"{type(hparams).__name__} and {type(checkpoint.get('state_dict')).__name__})")
    cls = module_class(registered)
    if cls is not registered and "net" not in hparams:
        hparams = with_net_node(hparams, registered)
    return name, cls, cls.inference_kwargs(hparams)


# No model of this project comes near it (resnet34, the largest offered, has 21M parameters); a checkpoint
# whose config asks for more (2 KB of config can ask for gigabytes) is refused before anything is allocated.
MAX_PARAMETERS = 200_000_000


def _build(checkpoint: dict, path: str | Path) -> FERClassifier:
    """The model its checkpoint's config describes: the config's types checked, its size counted on the meta
    device (no memory) and bounded, then built. One line naming the file for anything wrong."""
    name, cls, kwargs = saved_model(checkpoint, path)
    try:
        with torch.device("meta"):
            model = cls(**kwargs)
        size = sum(p.numel() for p in model.parameters())
    except (TypeError, ValueError, KeyError, RuntimeError, UserError) as exc:
        raise UserError(f"{path}: its config does not build a {name} model "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if model.model_name != name:
        raise UserError(f"{path}: damaged checkpoint (it names model {name}, its config builds {model.model_name})")
    if size > MAX_PARAMETERS:
        raise UserError(f"{path}: its config asks for a {name} of {size:,} parameters, more than any "
                        f"model of fer ({MAX_PARAMETERS:,}); refused before building it")
    return cls(**kwargs)


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> FERClassifier:
    """The model in eval mode, rebuilt from its own saved hyper-parameters."""
    checkpoint = read_checkpoint(path)
    model = _build(checkpoint, path)
    try:
        model.on_load_checkpoint(checkpoint)
    except UserError as exc:  # e.g. a model-specific part that is refused: say which file
        raise UserError(f"{path}: {exc}") from exc
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not fit its {model.model_name} model ({str(exc).splitlines()[0]})") \
            from exc
    model = model.to(map_location).eval()
    # which images were its val split (FERDataModule.state_dict; absent in checkpoints from before it was recorded)
    model.val_split_record = checkpoint.get("FERDataModule", {}).get("val_split")
    return model


def start_from_weights(model: FERClassifier, path: str | Path) -> None:
    """Fine-tuning: the weights of a checkpoint of the same model and network copied into a freshly built one (its
    optimiser, schedule and epochs start afresh). One line naming the file when the checkpoint is another model or
    another network."""
    checkpoint = read_checkpoint(path)
    name, _ = registered_model(checkpoint, path)
    if name != model.model_name:
        raise UserError(f"init_from={path}: a {name} checkpoint; this run trains {model.model_name}")
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise UserError(f"init_from={path}: its weights do not fit this run's {model.model_name} network (the "
                        f"checkpoint's model settings differ: {str(exc).splitlines()[0]})") from exc
