"""The seven FER2013 expression classes and label parsing shared by every reader."""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SIZE = 48

# Spellings seen in the wild for the same class (folder names, CSV labels).
_ALIASES = {"anger": "angry", "disgusted": "disgust", "fearful": "fear", "happiness": "happy",
            "sadness": "sad", "surprised": "surprise", "calm": "neutral"}


def parse_label(value: object) -> int | None:
    """Map an int 0-6, a digit string or a class name (any case) to a class index; None if unknown."""
    if value is None:
        return None
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return value if 0 <= value < NUM_CLASSES else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and 0 <= value < NUM_CLASSES else None
    text = str(value).strip().lower()
    if not text:
        return None
    if text.lstrip("-").isdigit():
        idx = int(text)
        return idx if 0 <= idx < NUM_CLASSES else None
    try:
        float_val = float(text)
        if float_val.is_integer() and 0 <= float_val < NUM_CLASSES:
            return int(float_val)
        return None
    except ValueError:
        pass
    text = _ALIASES.get(text, text)
    return CLASS_NAMES.index(text) if text in CLASS_NAMES else None
