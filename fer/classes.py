"""The seven FER2013 expression classes and label parsing shared by every reader."""

from __future__ import annotations

import re

CLASS_NAMES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SIZE = 48

# Spellings seen in the wild for the same class (folder names, CSV labels).
_ALIASES = {"anger": "angry", "disgusted": "disgust", "fearful": "fear", "scared": "fear", "happiness": "happy",
            "sadness": "sad", "surprised": "surprise", "calm": "neutral"}


_DECIMAL = re.compile(r"([0-9]+)(?:\.0*)?", re.ASCII)  # ASCII digits only: "٣" and "３" are str.isdigit() too


def parse_label(value: object) -> int | None:
    """Map an int 0-6, its decimal digits ("3", or "3.0" as a spreadsheet writes a number) or a class name (any
    case) to a class index; None otherwise. Other spellings of a number ("+3", "-0", "3e0", Arabic-Indic or
    full-width digits) are refused rather than guessed: a labels file holding them was not written as meant."""
    if value is None:
        return None
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return value if 0 <= value < NUM_CLASSES else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and 0 <= value < NUM_CLASSES else None
    text = str(value).strip().lower()
    if not text:
        return None
    number = _DECIMAL.fullmatch(text)
    if number:
        idx = int(number.group(1))
        return idx if idx < NUM_CLASSES else None
    text = _ALIASES.get(text, text)
    return CLASS_NAMES.index(text) if text in CLASS_NAMES else None
