"""Loader benchmark: the DataModule's augmented training stream vs torchvision ImageFolder + DataLoader.

    python bench/loader.py [--root ../shared/fer2013] [--skip-rss]

Prints cache build (cold: no cache entry, image files evicted from the page cache with posix_fadvise) and
open (warm) times, images/s of both loaders with the same crop+flip, images/s with the full default
augmentation, and peak RSS while streaming a 1,000,000-image memmap (in a fresh subprocess).
Last line: `loader/imagefolder ratio: <number>`.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fer.data.augment import build_augmentation  # noqa: E402
from fer.data.cache import open_cache  # noqa: E402
from fer.data.datamodule import FERDataModule  # noqa: E402
from fer.data.manifest import Manifest  # noqa: E402
from fer.data.sources import FolderSource  # noqa: E402

CNN_DEEP_TRAIN_IMG_S = 430  # bare-loop cnn_deep training throughput here, bf16 + channels_last (issue #3)


def evict_from_page_cache(folder: Path) -> int:
    n = 0
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            n += 1
    return n


def stream_rate(dm: FERDataModule, augment, batches: int, repeats: int = 3) -> float:
    """images/s of the training stream as a model sees it: index-slice batch -> float -> augmentation."""
    from fer.data.augment import to_unit_float

    stream = dm.train_dataloader()
    best = 0.0
    for r in range(repeats):
        stream.set_epoch(r)
        n, start = 0, time.perf_counter()
        for i, (x, y) in enumerate(stream):
            if i == batches:
                break
            out = augment(to_unit_float(x))
            n += len(out)
        best = max(best, n / (time.perf_counter() - start))
    return best


def imagefolder_rate(train_dir: Path, batch_size: int, batches: int) -> float:
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.Grayscale(), transforms.RandomCrop(48, padding=4, padding_mode="reflect"),
                             transforms.RandomHorizontalFlip(), transforms.ToTensor()])
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(str(train_dir), transform=tf), batch_size=batch_size,
                                         shuffle=True, num_workers=2, drop_last=True, persistent_workers=False)
    n, start = 0, None
    for i, (x, _) in enumerate(loader):
        if i == 0:  # do not count worker start-up
            start = time.perf_counter()
            continue
        n += len(x)
        if i == batches:
            break
    return n / (time.perf_counter() - start)


class TiledSynthetic:
    """A million-image source: synthetic faces tiled, to check memory while streaming more than fits comfortably."""

    name = "tiled_synthetic"
    root = None

    def __init__(self, n: int):
        self.n = n

    def manifest(self) -> Manifest:
        from fer.data.synthetic import render_faces, synthetic_labels

        base_labels = synthetic_labels(7000, 0)
        base = render_faces(base_labels, 0)
        labels = np.resize(base_labels, self.n)

        def fill(out, bad, progress):
            for start in range(0, self.n, len(base)):
                stop = min(start + len(base), self.n)
                out[start:stop] = base[: stop - start]
            from fer.data.manifest import FillReport

            return FillReport(ok=np.ones(self.n, dtype=bool))

        return Manifest(names=[f"tile/{i}" for i in range(self.n)], splits=["train"] * self.n, labels=labels,
                        identity={"kind": "tiled", "n": self.n}, fill=fill)


def rss_child(cache_dir: str, n: int) -> None:
    """Run in a fresh process (the cache was built by another one, so pages dirtied while writing it are not
    counted): stream one augmented epoch over n images, print peak RSS."""
    dm = FERDataModule(source=TiledSynthetic(n), cache_dir=cache_dir, batch_size=512, val_fraction=0.0,
                       progress=False, augment=build_augmentation())
    dm.setup("fit")
    from fer.data.augment import to_unit_float

    start, seen = time.perf_counter(), 0
    for x, y in dm.train_dataloader():
        seen += len(dm.augment(to_unit_float(x)))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(f"rss_stream_images {seen} seconds {time.perf_counter() - start:.1f} peak_rss_gib {peak:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=str(ROOT.parent / "shared" / "fer2013"))
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--batches", type=int, default=150)
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--rss-images", type=int, default=1_000_000)
    ap.add_argument("--rss-child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--rss-build", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_build:
        open_cache(TiledSynthetic(int(args.rss_build[1])), args.rss_build[0], progress=False)
        return
    if args.rss_child:
        rss_child(args.rss_child[0], int(args.rss_child[1]))
        return
    torch.set_num_threads(os.cpu_count() or 1)
    data = Path(args.root)
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        n_files = evict_from_page_cache(data / "train")
        start = time.perf_counter()
        cache = open_cache(FolderSource(str(data), splits=["train"]), Path(tmp) / "c", progress=False)
        cold = time.perf_counter() - start
        import fer.data.cache as cache_module
        from fer.data.cache_guard import file_checksum

        cache.close()
        cache_module._VERIFIED.clear()  # as a new process: the first open of an entry checks its checksums
        start = time.perf_counter()
        cache = open_cache(FolderSource(str(data), splits=["train"]), Path(tmp) / "c", progress=False)
        warm = time.perf_counter() - start
        start = time.perf_counter()
        file_checksum(cache.path / "images.u8")
        checksum = time.perf_counter() - start
        print(f"cache build (cold, {n_files} files evicted from page cache): {cold:.2f} s for {len(cache)} images "
              f"(target <= 5 s)")
        print(f"cache open (warm, with the checksum check): {warm:.3f} s (target <= 1 s); SHA-256 of images.u8 "
              f"({cache.images.nbytes / 2**20:.0f} MB) alone: {checksum:.3f} s")

        crop_flip = build_augmentation(shift=4, flip=True, degrees=0, scale=None, brightness=0, contrast=0,
                                       erasing_p=0)
        dm = FERDataModule(source=FolderSource(str(data), splits=["train"]), cache_dir=str(Path(tmp) / "c"),
                           batch_size=args.batch_size, progress=False, val_fraction=0.0)
        dm.setup("fit")
        ours = stream_rate(dm, crop_flip, args.batches)
        full = stream_rate(dm, build_augmentation(), args.batches)
        full_kornia = stream_rate(dm, build_augmentation(implementation="kornia"), args.batches)
    theirs = imagefolder_rate(data / "train", args.batch_size, min(args.batches, 60))
    print(f"datamodule stream, crop+flip: {ours:,.0f} img/s")
    print(f"imagefolder + DataLoader(num_workers=2), crop+flip: {theirs:,.0f} img/s")
    print(f"datamodule stream, full default augmentation: {full:,.0f} img/s = "
          f"{full / CNN_DEEP_TRAIN_IMG_S:.0f}x cnn_deep training ({CNN_DEEP_TRAIN_IMG_S} img/s; target >= 20x)")
    print(f"  the same with data.augment.implementation=kornia: {full_kornia:,.0f} img/s "
          f"(fused/kornia {full / full_kornia:.2f})")
    if not args.skip_rss:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, __file__, "--rss-build", tmp, str(args.rss_images)], check=True)
            out = subprocess.run([sys.executable, __file__, "--rss-child", tmp, str(args.rss_images)],
                                 capture_output=True, text=True, check=True).stdout.strip().split()
            fields = dict(zip(out[::2], out[1::2]))
            print(f"peak RSS streaming a {int(fields['rss_stream_images']):,}-image memmap (1 augmented epoch, "
                  f"{fields['seconds']} s): {float(fields['peak_rss_gib']):.2f} GiB (target < 2 GiB)")
    print(f"loader/imagefolder ratio: {ours / theirs:.1f}")


if __name__ == "__main__":
    main()
