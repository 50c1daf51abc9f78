"""LightningDataModule over the memory-mapped cache: index-slice batches, augmentation on the device."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from fer.classes import IMAGE_SIZE, NUM_CLASSES
from fer.data.augment import to_unit_float
from fer.data.batches import BatchStream
from fer.data.cache import ImageCache, open_cache
from fer.runtime.images import DEFAULT_MAX_PIXELS
from fer.data.opened import OpenedData, SplitSettings, open_data
from fer.data.splits import split_digest
from fer.errors import DataError

log = logging.getLogger(__name__)

class FERDataModule(pl.LightningDataModule):
    """Serves (uint8 images, labels) batches from the cache; in `on_after_batch_transfer` turns them into
    float [B,1,48,48] in [0,1] and augments training batches on the device."""

    def __init__(self, source: Any, name: str = "", cache_dir: str = ".cache/fer", root: str | None = None,
                 batch_size: int = 128, eval_batch_size: int = 512, val_fraction: float = 0.1, split_seed: int = 0,
                 shuffle_seed: int = 0, train_split: str = "train", test_split: str | None = "auto",
                 predict_split: str | None = "auto", on_device: bool | str = "auto",
                 on_device_max_bytes: int = 2 * 2**30, augment: nn.Module | None = None, on_bad_image: str = "error",
                 dedup: str = "none", progress: bool = True, max_image_pixels: int = DEFAULT_MAX_PIXELS,
                 augment_copies: int = 1):
        super().__init__()
        if int(augment_copies) < 1:
            raise ValueError(f"data.augment_copies must be >= 1, not {augment_copies}")
        self.source = source
        self.name = name or source.name
        self.cache_dir = cache_dir
        del root  # a setting of the data config (conf/data/*.yaml interpolate it into source.root); the source reads it
        self.batch_size, self.eval_batch_size, self.shuffle_seed = batch_size, eval_batch_size, shuffle_seed
        self.split_settings = SplitSettings(train_split, val_fraction, split_seed, test_split, predict_split, dedup)
        self.on_device, self.on_device_max_bytes = on_device, on_device_max_bytes
        self.augment = augment
        # batch augmentation (Hoffer et al. 2019): each training image augmented this many times in its own step,
        # as usef-kh/fer trains on all ten crops of every image. A launch-bound GPU step does k times the work for
        # little more time; a CPU step takes k times as long
        self.augment_copies = int(augment_copies)
        self.on_bad_image, self.max_image_pixels = on_bad_image, max_image_pixels
        self.progress = progress
        self.data: OpenedData | None = None
        self.idx: dict[str, np.ndarray] = {}
        self._device_copies: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    # ---- splits -------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        # builds the cache once (rank 0 under DDP); other ranks open it in setup
        open_cache(self.source, self.cache_dir, self.on_bad_image, self.progress, self.max_image_pixels)

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        s = self.split_settings
        self.data = open_data(self.source, self.cache_dir, self.name, self.on_bad_image, self.progress,
                              self.max_image_pixels, **vars(s))
        log.info("data %s: %s", self.name, self.cache.summary())
        self.idx = self.data.parts()
        if self.data.dedup_report:
            log.info("data.dedup=train: %s", self.data.dedup_report)

    @property
    def cache(self) -> ImageCache | None:
        return self.data.cache if self.data is not None else None

    @property
    def test_split(self) -> str | None:
        return self.data.test_split if self.data is not None else None

    @property
    def predict_split(self) -> str | None:
        return self.data.predict_split if self.data is not None else None

    @property
    def dedup_report(self) -> dict[str, int]:
        return self.data.dedup_report if self.data is not None else {}

    # ---- checkpoint record ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        # saved in every checkpoint (Lightning stores a datamodule's state_dict): which images were val, so that
        # predict.py can refuse to fit ensemble weights on a "val" split a member was trained on
        if not self.idx:
            return {}
        return {"val_split": {"data": self.name, "n": int(len(self.idx["val"])),
                              "digest": split_digest(self.cache, self.idx["val"])}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass  # the split is drawn again from the config on setup; the record is only read by predict.py

    @property
    def class_counts(self) -> np.ndarray:
        return np.bincount(self.cache.labels[self.idx["train"]], minlength=NUM_CLASSES)

    # ---- batches ------------------------------------------------------------------------------------
    def _device(self) -> torch.device:
        trainer = self.trainer  # None outside a Trainer (LightningDataModule sets it)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _arrays(self, part: str) -> tuple[Any, Any, np.ndarray]:
        """The images/labels to index for a part: the memmap, or (on_device) that part copied to the device once."""
        indices = self.idx[part]
        device = self._device()
        use_device = self.on_device is True or (self.on_device == "auto" and device.type == "cuda")
        if use_device and indices.size * IMAGE_SIZE * IMAGE_SIZE <= self.on_device_max_bytes:
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
        trainer = self.trainer  # None outside a Trainer (LightningDataModule sets it)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        return BatchStream(images, labels, indices, self.batch_size if train else self.eval_batch_size,
                           shuffle=train, drop_last=train and len(indices) // world > self.batch_size,
                           seed=self.shuffle_seed, rank=rank, world_size=world, cache=self.cache)

    def train_dataloader(self) -> BatchStream:
        stream = self._stream("train", train=True)
        log.info("training on rank %d of %d: %d images per epoch in %d batches of %d%s", stream.rank,
                 stream.world_size, min(stream.n_real(), len(stream) * stream.batch_size),
                 len(stream), stream.batch_size,
                 f", each image augmented {self.augment_copies} times" if self.augment_copies > 1 else "")
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
        trainer = self.trainer  # None outside a Trainer (LightningDataModule sets it)
        if self.augment is not None and trainer is not None and trainer.training \
                and trainer.lightning_module.train_augmentation:  # declared by every model (fer.capabilities)
            if self.augment_copies > 1:  # copies drawn apart by the augmentation (and the model's random crops)
                x, labels = x.repeat(self.augment_copies, 1, 1, 1), labels.repeat(self.augment_copies)
            x = self.augment(x)
        return x, labels
