"""Batches by index slices of a uint8 array (memmap or device tensor): no per-image Python, no Dataset items.

Training: a fresh permutation per epoch (seed + epoch), identical on every rank, of which each rank takes
a disjoint, equal-length shard (DDP needs the same number of steps on every rank).
Evaluation: the split in order; under DDP each rank takes a contiguous part, padded by wrapping so every
rank has the same number of batches (like torch's DistributedSampler). The padded copies carry the label
IGNORE (-1), which the models' metrics and losses ignore: every image of the split counts exactly once.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch

from fer.data.cache import ImageCache

IGNORE = -1  # label of the wrap-around padding under DDP evaluation (and of unlabelled images)


class BatchStream:
    """Iterable of (images uint8 [B,48,48], labels int64 [B]) batches over `indices` of `images`."""

    def __init__(self, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, indices: np.ndarray,
                 batch_size: int, shuffle: bool, drop_last: bool = False, seed: int = 0, rank: int = 0,
                 world_size: int = 1, cache: ImageCache | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.images, self.labels = images, labels
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.cache = cache  # when the images are its memmap: reads go through cache.gather (bounded RSS)
        self.epoch = 0
        self.sampler = self  # Lightning calls dataloader.sampler.set_epoch(epoch) before each epoch
        self.batch_sampler = None  # Lightning inspects it like a DataLoader's

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shard(self) -> np.ndarray:
        """This rank's indices for the current epoch, in batch order."""
        n = len(self.indices)
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = self.indices[torch.randperm(n, generator=gen).numpy()]
            per_rank = n // self.world_size
            return order[self.rank * per_rank:(self.rank + 1) * per_rank]
        per_rank = math.ceil(n / self.world_size) if n else 0
        padded = np.resize(self.indices, per_rank * self.world_size) if n else self.indices
        return padded[self.rank * per_rank:(self.rank + 1) * per_rank]

    def n_real(self) -> int:
        """How many leading entries of this rank's shard are real (the rest is evaluation padding)."""
        if self.shuffle:
            return len(self.indices) // self.world_size
        per_rank = math.ceil(len(self.indices) / self.world_size) if len(self.indices) else 0
        return max(0, min(per_rank, len(self.indices) - self.rank * per_rank))

    def __len__(self) -> int:
        n = len(self.shard()) if not self.shuffle else len(self.indices) // self.world_size
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = self.shard()
        stop = len(idx) - len(idx) % self.batch_size if self.drop_last else len(idx)
        on_tensor = isinstance(self.images, torch.Tensor)
        gather = self.cache.gather if self.cache is not None and self.images is self.cache.images else None
        real = self.n_real()
        if self.shuffle:  # sorted within each batch: sequential mmap reads; order inside a batch does not matter
            idx = idx.copy()
            for start in range(0, stop, self.batch_size):
                idx[start:start + self.batch_size].sort()
        # data on the device: the epoch's rows go there in one copy, not one small copy (and wait) per batch
        idx_on_device = torch.from_numpy(idx).to(self.images.device) if on_tensor else None
        for start in range(0, stop, self.batch_size):
            batch = idx[start:start + self.batch_size]
            if on_tensor:
                sel = idx_on_device[start:start + self.batch_size]
                images, labels = self.images.index_select(0, sel), self.labels.index_select(0, sel)
            else:
                images = torch.from_numpy(gather(batch) if gather is not None else self.images[batch])
                labels = torch.from_numpy(self.labels[batch])
            if start + len(batch) > real:  # evaluation padding (DDP): a copy whose padded labels are IGNORE
                labels = labels.clone()
                labels[max(real - start, 0):] = IGNORE
            yield images, labels
