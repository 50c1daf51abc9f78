"""Models by registered name, as timm does it: `@register_model("cnn_deep")` on what builds the model, checkpoints
store the name, and loading a checkpoint looks the name up here. A checkpoint can therefore only pick one of the
models registered in fer.models; it never names a module to import.

What is registered is either a network (an nn.Module class or a function building one, from its config's keys and
`image_size`: the neural models, composed into fer.models.base.FERClassifier by the config's `net:` node) or a whole
LightningModule (the SVM: a fitted pipeline, not a network).

Model "<name>" lives in fer/models/<name>.py (the same name as its conf/model/<name>.yaml): a name that is not
registered yet is looked up by importing that module of this package, so loading one model does not import every
model's dependencies (timm, scikit-learn).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from typing import Callable, TypeVar

T = TypeVar("T", bound=Callable)

_REGISTRY: dict[str, Callable] = {}
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_TARGET = re.compile(r"fer\.models\.([a-z][a-z0-9_]*)\.([A-Za-z_]\w*)")


def register_model(name: str) -> Callable[[T], T]:
    """Registers a model's network (class or function) or LightningModule under `name` (its module's name)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"model name {name!r}: use lower-case letters, digits and _")

    def add(cls: T) -> T:
        if _REGISTRY.get(name, cls) is not cls:
            raise ValueError(f"model name {name!r} is registered twice ({_REGISTRY[name].__qualname__}, "
                             f"{cls.__qualname__})")
        _REGISTRY[name] = cls
        cls.model_name = name
        return cls

    return add


def get_model_class(name: str) -> type | None:
    """The class registered as `name`, or None when no model of fer has that name."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return None
    if name not in _REGISTRY and importlib.util.find_spec(f"{__package__}.{name}") is not None:
        importlib.import_module(f"{__package__}.{name}")
    return _REGISTRY.get(name)


def list_models() -> list[str]:
    """Every registered model name (imports each module of fer.models once)."""
    import fer.models as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
    return sorted(_REGISTRY)


def target_of(registered: Callable) -> str:
    """The config `_target_` of a registered model (the path registered_target reads back)."""
    return f"{registered.__module__}.{registered.__qualname__}"


def registered_target(target: str) -> tuple[str, Callable]:
    """(name, what is registered) for a config's `_target_` path "fer.models.<name>.<Qualname>": only a registered
    model's own path is accepted, so neither a config read back from a checkpoint nor a typo imports anything else.
    ValueError (one line) otherwise."""
    match = _TARGET.fullmatch(str(target))
    registered = get_model_class(match.group(1)) if match else None
    if registered is None or registered.__qualname__ != match.group(2):
        raise ValueError(f"{str(target)[:80]} is not a model of this fer (registered: {', '.join(list_models())})")
    return match.group(1), registered
