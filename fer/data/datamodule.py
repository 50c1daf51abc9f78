"""LightningDataModule over the memory-mapped cache: index-slice batches, augmentation on the device."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from fer.classes import NUM_CLASSES
from fer.data.augment import to_unit_float
from fer.data.batches import BatchStream
from fer.data.cache import ImageCache, open_cache
from fer.data.errors import DataError

log = logging.getLogger(__name__)

_TEST_SPLIT_NAMES = ("test", "publictest", "privatetest")


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
    """Cache rows of the train and val parts of the labelled `train_split`. The one place the val split is drawn:
    training and predict.py's `ensemble_weights=val` must agree on it."""
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


class FERDataModule(pl.LightningDataModule):
    """Serves (uint8 images, labels) batches from the cache; in `on_after_batch_transfer` turns them into
    float [B,1,48,48] in [0,1] and augments training batches on the device."""

    def __init__(self, source: Any, name: str = "", cache_dir: str = ".cache/fer", root: str | None = None,
                 batch_size: int = 128, eval_batch_size: int = 512, val_fraction: float = 0.1, split_seed: int = 0, shuffle_seed: int = 0,
                 train_split: str = "train", test_split: str | None = "auto", predict_split: str | None = "auto",
                 on_device: bool | str = "auto", on_device_max_bytes: int = 2 * 2**30,
                 augment: nn.Module | None = None, on_bad_image: str = "error", dedup: str = "none",
                 progress: bool = True):
        super().__init__()
        self.source = source
        self.name = name or source.name
        self.cache_dir = cache_dir
        self.root = root  # read by the source; kept for messages
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_fraction, self.split_seed, self.shuffle_seed = val_fraction, split_seed, shuffle_seed
        self.train_split, self.test_split_cfg, self.predict_split_cfg = train_split, test_split, predict_split
        self.on_device, self.on_device_max_bytes = on_device, on_device_max_bytes
        self.augment = augment
        self.on_bad_image = on_bad_image
        if dedup not in ("none", "train"):
            raise DataError(f"data.dedup must be 'none' or 'train', got {dedup!r}")
        self.dedup = dedup
        self.progress = progress
        self.cache: ImageCache | None = None
        self.idx: dict[str, np.ndarray] = {}
        self.dedup_report: dict[str, int] = {}
        self._device_copies: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    # ---- splits -------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        # builds the cache once (rank 0 under DDP); other ranks open it in setup
        open_cache(self.source, self.cache_dir, self.on_bad_image, self.progress)

    def _resolve(self, cfg: str | None, candidates: tuple[str, ...], need_labels: bool) -> str | None:
        assert self.cache is not None
        present = [s for s in self.cache.split_names if len(self.cache.split_indices(s))]
        if cfg is None or cfg == "none":
            return None
        if cfg != "auto":
            if cfg not in present:
                raise DataError(f"split {cfg!r} not in the data (splits: {present})")
            return cfg
        for name in candidates:
            if name in present and (not need_labels or (self.cache.labels[self.cache.split_indices(name)] >= 0).all()):
                return name
        return None

    def setup(self, stage: str | None = None) -> None:
        if self.cache is not None:
            return
        self.cache = open_cache(self.source, self.cache_dir, self.on_bad_image, self.progress)
        log.info("data %s: %s", self.source.name, self.cache.summary())
        train, val = train_val_indices(self.cache, self.train_split, self.val_fraction, self.split_seed,
                                       self.source.name)
        self.idx = {"train": train, "val": val}
        self.test_split = self._resolve(self.test_split_cfg, _TEST_SPLIT_NAMES, need_labels=True)
        if self.test_split:
            self.idx["test"] = self.cache.split_indices(self.test_split)
        self.predict_split = self._resolve(self.predict_split_cfg, ("predict", *_TEST_SPLIT_NAMES), False)
        if self.predict_split:
            self.idx["predict"] = self.cache.split_indices(self.predict_split)
        if self.dedup == "train":
            from fer.audit.dedup import drop_train_duplicates  # the audit owns duplicate detection

            self.idx["train"], self.dedup_report = drop_train_duplicates(self.cache, self.idx)
            log.info("data.dedup=train: %s", self.dedup_report)

    # ---- checkpoint record ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        # saved in every checkpoint (Lightning stores a datamodule's state_dict): which images were val, so that
        # predict.py can refuse to fit ensemble weights on a "val" split a member was trained on
        if not self.idx:
            return {}
        return {"val_split": {"data": self.source.name, "n": int(len(self.idx["val"])),
                              "digest": split_digest(self.cache, self.idx["val"])}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass  # the split is drawn again from the config on setup; the record is only read by predict.py

    @property
    def class_counts(self) -> np.ndarray:
        return np.bincount(self.cache.labels[self.idx["train"]], minlength=NUM_CLASSES)

    # ---- batches ------------------------------------------------------------------------------------
    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _arrays(self, part: str) -> tuple[Any, Any, np.ndarray]:
        """The images/labels to index for a part: the memmap, or (on_device) that part copied to the device once."""
        indices = self.idx[part]
        device = self._device()
        use_device = self.on_device is True or (self.on_device == "auto" and device.type == "cuda")
        if use_device and indices.size * 48 * 48 <= self.on_device_max_bytes:
            if part not in self._device_copies:
                order = np.sort(indices)
                images = torch.from_numpy(np.ascontiguousarray(self.cache.images[order])).to(device)
                labels = torch.from_numpy(self.cache.labels[order]).to(device)
                self._device_copies[part] = (images, labels)
            images, labels = self._device_copies[part]
            return images, labels, np.arange(len(indices))
        return self.cache.images, self.cache.labels, indices

    def _stream(self, part: str, train: bool) -> BatchStream:
        if part not in self.idx or len(self.idx[part]) == 0:
            raise DataError(f"the data has no {part} split (data.{part}_split)")
        images, labels, indices = self._arrays(part)
        trainer = getattr(self, "trainer", None)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        return BatchStream(images, labels, indices, self.batch_size if train else self.eval_batch_size,
                           shuffle=train, drop_last=train and len(indices) // world > self.batch_size,
                           seed=self.shuffle_seed, rank=rank, world_size=world, cache=self.cache)

    def train_dataloader(self) -> BatchStream:
        stream = self._stream("train", train=True)
        log.info("training on rank %d of %d: %d images per epoch in %d batches of %d", stream.rank,
                 stream.world_size, min(stream.n_real(), len(stream) * stream.batch_size),
                 len(stream), stream.batch_size)
        return stream

    def val_dataloader(self) -> BatchStream:
        return self._stream("val", train=False)

    def test_dataloader(self) -> BatchStream:
        return self._stream("test", train=False)

    def predict_dataloader(self) -> BatchStream:
        return self._stream("predict", train=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        x = to_unit_float(images)
        trainer = getattr(self, "trainer", None)
        if self.augment is not None and trainer is not None and trainer.training \
                and getattr(trainer.lightning_module, "train_augmentation", True):
            x = self.augment(x)
        return x, labels
