"""Training-speed benchmark: a Lightning epoch through the DataModule vs a bare PyTorch loop, per model.

    python bench/train_speed.py [--models mlp,cnn,cnn_deep,efficientnet] [--batches 30] [--precision bf16]

Both sides use the same model class and config (conf/model/<name>.yaml), batch size, precision (bf16 autocast
+ channels_last as configured) and the same default augmentation, on the synthetic data set. The bare loop holds
the training split in memory as one uint8 tensor and slices it by randperm; Lightning goes through
FERDataModule's memmap stream and on_after_batch_transfer. Runs alternate (L, bare, L, bare) and the best of
each is kept, since the machine is noisy. Prints `lightning/bare ratio: <number>` per model.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("FER_ROOT", str(ROOT))

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from fer.data.augment import build_augmentation, to_unit_float  # noqa: E402
from fer.data.datamodule import FERDataModule  # noqa: E402
from fer.data.sources import SyntheticSource  # noqa: E402
from fer.training import instantiate_model  # noqa: E402


def model_cfg(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=[f"model={name}", *overrides]).model


class Timer(pl.Callback):
    def __init__(self, warmup: int):
        self.warmup, self.start, self.n = warmup, None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx >= self.warmup:
            self.n += len(batch[1])
            self.end = time.perf_counter()


def lightning_rate(cfg, dm: FERDataModule, batches: int, warmup: int, precision: str) -> float:
    model = instantiate_model(cfg)
    timer = Timer(warmup)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=batches + warmup,
                         limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, precision=precision,
                         callbacks=[timer])
    trainer.fit(model, datamodule=dm)
    return timer.n / (timer.end - timer.start)


def bare_rate(cfg, images: torch.Tensor, labels: torch.Tensor, batch_size: int, batches: int, warmup: int,
              precision: str) -> float:
    model = instantiate_model(cfg)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    augment = build_augmentation()
    perm = torch.randperm(len(images))
    use_bf16 = precision.startswith("bf16")
    start = None
    for i in range(batches + warmup):
        if i == warmup:
            start = time.perf_counter()
        idx = perm[i * batch_size:(i + 1) * batch_size]
        x, y = augment(to_unit_float(images[idx])), labels[idx]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mlp,cnn,cnn_deep,efficientnet")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--precision", default="bf16-mixed")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"batch {args.batch_size}, precision {args.precision}")
    n_train = args.batch_size * (args.batches + args.warmup) + 7
    with tempfile.TemporaryDirectory() as tmp:
        dm = FERDataModule(source=SyntheticSource(n_train=n_train, n_test=70), cache_dir=tmp, progress=False,
                           batch_size=args.batch_size, val_fraction=0.0, augment=build_augmentation())
        dm.setup("fit")
        images = torch.from_numpy(dm.cache.images[dm.idx["train"]].copy())
        labels = torch.from_numpy(dm.cache.labels[dm.idx["train"]].copy())
        for name in args.models.split(","):
            cfg = model_cfg(name, ["model.scheduler=null"])  # no validation here, so no plateau schedule
            light, bare = 0.0, 0.0
            for _ in range(args.repeats):
                light = max(light, lightning_rate(cfg, dm, args.batches, args.warmup, args.precision))
                bare = max(bare, bare_rate(cfg, images, labels, args.batch_size, args.batches, args.warmup,
                                           args.precision))
            print(f"{name}: lightning {light:,.0f} img/s, bare loop {bare:,.0f} img/s")
            print(f"{name} lightning/bare ratio: {light / bare:.2f}")


if __name__ == "__main__":
    main()
