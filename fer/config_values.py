"""Values of the scripts' settings as the flows read them (ground floor: every flow parses the same way)."""

from __future__ import annotations

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
