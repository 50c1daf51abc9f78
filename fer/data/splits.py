"""Which cache rows are train, val, test and predict: the one place splits are drawn and chosen.

Training (FERDataModule), predict.py (its split and `ensemble_weights=val`) and the audit all go through these
functions, so they agree on what "the val split" or "the test split" of a data set is.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from fer.data.cache import ImageCache
from fer.errors import DataError

TEST_SPLITS = ("test", "publictest", "privatetest")  # split names taken as the test split, in this order
PREDICT_SPLITS = ("predict", *TEST_SPLITS)  # unlabelled images first, else the test split


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (into `labels`) of train and val parts, with each class split in the same proportion.
    A class with a single image stays in train."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"data.val_fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_val = int(round(fraction * len(members))) if len(members) > 1 else 0
        val.append(rng.permutation(members)[:n_val])
    val_idx = np.sort(np.concatenate(val)) if val else np.empty(0, np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx, val_idx


def train_val_indices(cache: ImageCache, train_split: str, val_fraction: float, split_seed: int,
                      data_name: str = "the data") -> tuple[np.ndarray, np.ndarray]:
    """Cache rows of the train and val parts of the labelled `train_split`."""
    labels = cache.labels
    labelled = cache.split_indices(train_split)
    if len(labelled) == 0:
        raise DataError(f"no '{train_split}' split in {data_name} (splits: {cache.split_names})")
    if (labels[labelled] < 0).any():
        raise DataError(f"split '{train_split}' has unlabelled images")
    tr, va = stratified_split(labels[labelled], val_fraction, split_seed)
    return labelled[tr], labelled[va]


def split_digest(cache: ImageCache, idx: np.ndarray) -> str:
    """A short fingerprint of which images (by name, relative to the data root) a split holds."""
    names = cache.names
    return hashlib.sha1("\n".join(sorted(names[i] for i in idx)).encode()).hexdigest()[:16]


def present_splits(cache: ImageCache) -> list[str]:
    return [s for s in cache.split_names if len(cache.split_indices(s))]


def choose_split(cache: ImageCache, wanted: str | None, candidates: Sequence[str], need_labels: bool = False,
                 setting: str = "split") -> str | None:
    """The split a setting names. None / "none": no split. "auto": the first of `candidates` that the data has
    (with labels on every image, if `need_labels`), else None. Any other name must be in the data."""
    present = present_splits(cache)
    if wanted is None or wanted == "none":
        return None
    if wanted != "auto":
        if wanted not in present:
            raise DataError(f"{setting}={wanted}: not in the data (splits: {', '.join(present)})")
        return wanted
    for name in candidates:
        if name in present and (not need_labels or (cache.labels[cache.split_indices(name)] >= 0).all()):
            return name
    return None
