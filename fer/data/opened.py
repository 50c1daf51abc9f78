"""The one road from a data config to pixels: source -> cache -> the parts (train, val, test, predict).

train.py (through FERDataModule), predict.py and the audit each call `open_data_config(cfg.data)` (or
`open_data` with a source object), so they read the same cache with the same settings and draw the same splits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping

import numpy as np

from fer.data.cache import ImageCache, open_cache
from fer.runtime.images import DEFAULT_MAX_PIXELS
from fer.data.source_base import DataSource
from fer.data.splits import PREDICT_SPLITS, TEST_SPLITS, choose_split, train_val_indices
from fer.errors import DataError, UserError

DEDUP_MODES = ("none", "train")


@dataclass
class SplitSettings:
    """How the parts are drawn from the cache (the data config's keys of the same names)."""

    train_split: str = "train"
    val_fraction: float = 0.1
    split_seed: int = 0
    test_split: str | None = "auto"  # auto: the first labelled one of TEST_SPLITS; None: no testing
    predict_split: str | None = "auto"  # auto: "predict" (unlabelled images) if present, else the test split
    dedup: str = "none"  # train: drop training images with an (near-)duplicate in a held-out part

    def __post_init__(self) -> None:
        if self.dedup not in DEDUP_MODES:
            raise DataError(f"data.dedup must be one of {', '.join(DEDUP_MODES)}, got {self.dedup!r}")


@dataclass
class OpenedData:
    name: str
    source: DataSource
    cache: ImageCache
    settings: SplitSettings = field(default_factory=SplitSettings)
    dedup_report: dict[str, int] = field(default_factory=dict)

    @cached_property
    def train_val(self) -> tuple[np.ndarray, np.ndarray]:
        s = self.settings
        return train_val_indices(self.cache, s.train_split, s.val_fraction, s.split_seed, self.name)

    @cached_property
    def test_split(self) -> str | None:
        return choose_split(self.cache, self.settings.test_split, TEST_SPLITS, need_labels=True,
                            setting="data.test_split")

    @cached_property
    def predict_split(self) -> str | None:
        return choose_split(self.cache, self.settings.predict_split, PREDICT_SPLITS, setting="data.predict_split")

    def parts(self) -> dict[str, np.ndarray]:
        """Cache rows of train and val (and test / predict when the data has them), as training uses them."""
        train, val = self.train_val
        parts = {"train": train, "val": val}
        if self.test_split:
            parts["test"] = self.cache.split_indices(self.test_split)
        if self.predict_split:
            parts["predict"] = self.cache.split_indices(self.predict_split)
        if self.settings.dedup == "train":
            from fer.data.duplicates import drop_train_duplicates

            parts["train"], self.dedup_report = drop_train_duplicates(self.cache, parts)
        return parts


def open_data(source: DataSource, cache_dir: str, name: str | None = None, on_bad_image: str = "error",
              progress: bool = True, max_image_pixels: int = DEFAULT_MAX_PIXELS, **split_settings: Any) -> OpenedData:
    """Open (building it if needed) the cache of `source` (a reader from fer.data.sources)."""
    cache = open_cache(source, cache_dir, on_bad_image, progress, max_image_pixels)
    return OpenedData(name or source.name, source, cache, SplitSettings(**split_settings))


_SPLIT_KEYS = ("train_split", "val_fraction", "split_seed", "test_split", "predict_split", "dedup")


def open_data_config(data_cfg: Mapping[str, Any], **overrides: Any) -> OpenedData:
    """`cfg.data` (conf/data/<name>.yaml) -> OpenedData; `overrides` replace its keys (e.g. on_bad_image)."""
    settings = {k: data_cfg[k] for k in ("cache_dir", "on_bad_image", "progress", "max_image_pixels", *_SPLIT_KEYS)
                if k in data_cfg}
    settings.update(overrides)
    return open_data(build_source(data_cfg), name=data_cfg.get("name"), **settings)


def build_source(data_cfg: Mapping[str, Any]) -> DataSource:
    """The data config's reader (`source: {_target_: ...}`), with a one-line error for a broken config."""
    import hydra.utils

    try:
        source = hydra.utils.instantiate(data_cfg["source"])
    except Exception as exc:  # noqa: BLE001 - Hydra wraps config mistakes in its own errors
        raise UserError(f"data={data_cfg.get('name')}: cannot build the data source ({exc})") from exc
    if not isinstance(source, DataSource):
        raise UserError(f"data={data_cfg.get('name')}: source._target_ made a {type(source).__name__}, not a data "
                        "source (a subclass of fer.data.source_base.DataSource)")
    return source
