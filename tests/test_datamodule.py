"""DataModule: stratified splits, index-slice batches, device-side augmentation (train only), DDP shards."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fer.data.augment import build_augmentation, to_unit_float
from fer.data.batches import BatchStream
from fer.data.datamodule import FERDataModule
from fer.data.splits import stratified_split
from fer.errors import DataError
from fer.data.sources import ChallengeSource, FolderSource, SyntheticSource



def make_dm(tmp_path: Path, **kw) -> FERDataModule:
    kw.setdefault("source", SyntheticSource(n_train=350, n_test=70, seed=1))
    dm = FERDataModule(cache_dir=str(tmp_path / "cache"), batch_size=32, eval_batch_size=64, progress=False,
                       augment=build_augmentation(), **kw)
    dm.setup("fit")
    return dm


class FakeTrainer(SimpleNamespace):
    def __init__(self, training: bool = True, rank: int = 0, world: int = 1, device: str = "cpu"):
        super().__init__(training=training, global_rank=rank, world_size=world,
                         strategy=SimpleNamespace(root_device=torch.device(device)),
                         lightning_module=SimpleNamespace(train_augmentation=True))  # a model that wants it


def test_stratified_split_keeps_class_proportions():
    labels = np.repeat(np.arange(7), [100, 10, 50, 200, 80, 60, 90])
    tr, va = stratified_split(labels, 0.1, seed=0)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(labels)
    assert np.bincount(labels[va]).tolist() == [10, 1, 5, 20, 8, 6, 9]
    assert np.array_equal(stratified_split(labels, 0.1, seed=0)[1], va)
    assert not np.array_equal(stratified_split(labels, 0.1, seed=1)[1], va)


def test_splits_and_batches(tmp_path):
    dm = make_dm(tmp_path, val_fraction=0.2)
    assert len(dm.idx["train"]) == 280 and len(dm.idx["val"]) == 70 and dm.test_split == "test"
    assert len(np.intersect1d(dm.idx["train"], dm.idx["val"])) == 0
    batches = list(dm.train_dataloader())
    assert len(batches) == len(dm.train_dataloader()) == 280 // 32  # drop_last while training
    x, y = batches[0]
    assert x.dtype == torch.uint8 and x.shape == (32, 48, 48) and y.dtype == torch.int64
    seen = np.concatenate([b[1].numpy() for b in dm.test_dataloader()])
    assert len(seen) == 70  # evaluation keeps every image


def test_epochs_reshuffle_and_are_reproducible(tmp_path):
    dm = make_dm(tmp_path)
    stream = dm.train_dataloader()
    stream.set_epoch(0)
    e0 = stream.shard()
    stream.set_epoch(1)
    e1 = stream.shard()
    stream.set_epoch(0)
    assert not np.array_equal(e0, e1) and np.array_equal(stream.shard(), e0)
    assert sorted(e0) == sorted(dm.idx["train"].tolist())


def test_on_device_copy_gives_the_same_batches(tmp_path):
    mm = make_dm(tmp_path, on_device=False)
    dev = make_dm(tmp_path, on_device=True)
    a = list(mm.train_dataloader())
    b = list(dev.train_dataloader())
    assert isinstance(dev.train_dataloader().images, torch.Tensor)
    assert len(a) == len(b) == len(mm.train_dataloader()) == 315 // 32
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b))
    for part in ("val", "test"):  # evaluation streams too, every image once
        ev_mm, ev_dev = list(getattr(mm, f"{part}_dataloader")()), list(getattr(dev, f"{part}_dataloader")())
        assert len(ev_mm) == len(ev_dev) and sum(len(y) for _, y in ev_dev) == len(mm.idx[part])
        assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(ev_mm, ev_dev))


def test_augmentation_only_in_training(tmp_path):
    dm = make_dm(tmp_path)
    batch = next(iter(dm.train_dataloader()))
    plain = to_unit_float(batch[0])
    dm.trainer = FakeTrainer(training=False)
    assert torch.equal(dm.on_after_batch_transfer(batch, 0)[0], plain)
    dm.trainer = FakeTrainer(training=True)
    x, y = dm.on_after_batch_transfer(batch, 0)
    assert x.shape == (32, 1, 48, 48) and x.dtype == torch.float32 and not torch.equal(x, plain)


def test_augment_copies_augment_each_training_image_apart(tmp_path):
    """data.augment_copies=3: a training batch of 32 images becomes 96 views with their labels, each copy of an
    image augmented on its own; evaluation batches stay one view per image."""
    dm = make_dm(tmp_path, augment_copies=3)
    batch = next(iter(dm.train_dataloader()))
    dm.trainer = FakeTrainer(training=True)
    x, y = dm.on_after_batch_transfer(batch, 0)
    assert x.shape == (96, 1, 48, 48) and torch.equal(y, batch[1].repeat(3))
    copies = x.view(3, 32, -1)
    assert not torch.equal(copies[0], copies[1]) and not torch.equal(copies[1], copies[2])
    dm.trainer = FakeTrainer(training=False)
    x, y = dm.on_after_batch_transfer(batch, 0)
    assert x.shape == (32, 1, 48, 48) and torch.equal(y, batch[1])
    with pytest.raises(ValueError, match="data.augment_copies"):
        make_dm(tmp_path, augment_copies=0)


def test_predict_split_for_unlabelled_images(challenge_dataset, tmp_path):
    dm = make_dm(tmp_path, source=ChallengeSource(str(challenge_dataset)), test_split=None, val_fraction=0.25)
    assert dm.test_split is None and dm.predict_split == "predict" and len(dm.idx["predict"]) == 6
    with pytest.raises(DataError, match="no test split"):
        dm.test_dataloader()


def test_ddp_shards_are_disjoint_equal_and_cover(tmp_path):
    dm = make_dm(tmp_path)
    for world in (2, 3):
        for shuffle in (True, False):
            shards = [BatchStream(dm.cache.images, dm.cache.labels, dm.idx["train"], 32, shuffle=shuffle,
                                  rank=r, world_size=world).shard() for r in range(world)]
            assert len({len(s) for s in shards}) == 1  # same number of steps on every rank
            union = np.concatenate(shards)
            if shuffle:  # disjoint, and all but the < world_size remainder covered
                assert len(np.unique(union)) == len(union) >= len(dm.idx["train"]) - world + 1
            else:  # evaluation: everything covered (padding by wrap-around)
                assert set(union) == set(dm.idx["train"].tolist())


def _ddp_worker(rank: int, world: int, port: int, cache_dir: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    dm = FERDataModule(source=SyntheticSource(n_train=350, n_test=70, seed=1), cache_dir=cache_dir, batch_size=16,
                       progress=False)
    dm.trainer = FakeTrainer(rank=rank, world=world)
    dm.setup("fit")
    stream = dm.train_dataloader()
    stream.set_epoch(3)
    mine = torch.cat([y for _, y in stream]).numel(), torch.from_numpy(stream.shard())
    gathered = [torch.empty_like(mine[1]) for _ in range(world)]
    dist.all_gather(gathered, mine[1])
    if rank == 0:
        torch.save({"shards": gathered, "train": torch.from_numpy(dm.idx["train"]), "n": mine[0]}, out)
    dist.destroy_process_group()


@pytest.mark.slow  # two processes with a gloo group: ~15 s (CI runs the slow tests)
def test_ddp_two_processes_gloo(tmp_path):
    make_dm(tmp_path)  # build the cache once, as prepare_data does on rank 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "shards.pt")
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path / "cache"), out), nprocs=2, join=True)
    res = torch.load(out)
    a, b = (s.numpy() for s in res["shards"])
    assert len(a) == len(b) == len(res["train"]) // 2
    assert not set(a) & set(b) and set(a) | set(b) <= set(res["train"].numpy())
    assert res["n"] == len(a) // 16 * 16


def test_real_fer2013_counts(shared_fer2013, tmp_path):
    from fer.data.cache import open_cache

    cache = open_cache(FolderSource(str(shared_fer2013)), tmp_path / "cache", progress=False)
    counts = {s: np.bincount(cache.labels[cache.split_indices(s)], minlength=7).tolist() for s in cache.split_names}
    # angry, disgust, fear, happy, sad, surprise, neutral
    assert counts == {"train": [3995, 436, 4097, 7215, 4830, 3171, 4965],
                      "publictest": [467, 56, 496, 895, 653, 415, 607]}
    assert sum(counts["train"]) == 28709 and sum(counts["publictest"]) == 3589
    assert cache.info["resized"] == 0 and cache.info["skipped"] == 0


def test_shift_flip_outputs_are_crops_of_the_padded_image_or_their_mirror():
    import torch.nn.functional as F

    from fer.data.augment import RandomShiftFlip

    x = torch.rand(32, 1, 48, 48)
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    torch.manual_seed(0)
    y = RandomShiftFlip(4, True)(x)
    found_shift = found_flip = 0
    for i in range(32):
        crops = [padded[i, :, dy:dy + 48, dx:dx + 48] for dy in range(9) for dx in range(9)]
        plain = any(torch.equal(y[i], c) for c in crops)
        mirrored = any(torch.equal(y[i], c.flip(-1)) for c in crops)
        assert plain or mirrored
        found_flip += mirrored and not plain
        found_shift += not torch.equal(y[i], x[i]) and not torch.equal(y[i], x[i].flip(-1))
    assert found_flip > 5 and found_shift > 20  # both kinds of change happen, per sample
