"""How images are named in prediction CSVs: shared by predict.py and the runtime CLI, so both name them alike."""

from __future__ import annotations

import os
from typing import Sequence


def output_names(names: Sequence[str]) -> list[str]:
    """How each image is named in the CSV: its file name when those are unique (images_test/x.jpg -> x.jpg),
    else its path relative to the deepest folder all of them share."""
    base = [os.path.basename(n) for n in names]
    if len(set(base)) == len(base):
        return base
    absolute = [os.path.abspath(n) for n in names]
    common = os.path.commonpath(absolute) if len(absolute) > 1 else os.path.dirname(absolute[0])
    if os.path.isfile(common) or common in absolute:
        common = os.path.dirname(common)
    return [os.path.relpath(a, common) for a in absolute]
