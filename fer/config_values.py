"""Values of the scripts' settings as the flows read them (ground floor: every flow parses the same way)."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any


def as_list(value: Any) -> list[str]:
    """A config value that may be one path / name or a list of them."""
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [str(value)] if str(value).strip() else []
    try:
        return [str(v) for v in value]
    except TypeError:
        return [str(value)]


def is_number_type(annotation: Any) -> bool:
    """int or float, alone or in a union with None or torch.Tensor (a learning rate): a setting to check as a
    number. bool is no number here, and a union that also takes text or lists is not either."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None) and not _is_tensor(a)]
        return bool(members) and all(is_number_type(a) for a in members)
    return annotation in (int, float)


def _is_tensor(annotation: Any) -> bool:
    return isinstance(annotation, type) and f"{annotation.__module__}.{annotation.__qualname__}" == "torch.Tensor"


def number_parameters(build: Any) -> set[str]:
    """The parameters a class (its constructor) or function declares as numbers (is_number_type); none where its
    annotations cannot be read."""
    try:
        hints = typing.get_type_hints(build.__init__ if isinstance(build, type) else build)
    except Exception:  # noqa: BLE001 - unresolvable annotations (a library's forward references): nothing known
        return set()
    return {name for name, hint in hints.items() if name != "return" and is_number_type(hint)}
