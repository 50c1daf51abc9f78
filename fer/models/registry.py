"""Models by registered name, as timm does it: `@register_model("cnn_deep")` on the class, checkpoints store
the name, and loading a checkpoint looks the name up here. A checkpoint can therefore only pick one of the
models registered in fer.models; it never names a module to import.

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

T = TypeVar("T", bound=type)

_REGISTRY: dict[str, type] = {}
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def register_model(name: str) -> Callable[[T], T]:
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
