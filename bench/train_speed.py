"""Training-speed benchmark: a Lightning epoch through FERDataModule vs a bare PyTorch loop, same model, same
augmentation, same optimizer, same precision.

    python bench/train_speed.py [--models mlp,cnn,cnn_deep,efficientnet]             # CPU, synthetic data
    python bench/train_speed.py --device cuda --batch-size 512 [--models cnn_deep] [--compile]

Lightning side: train.py's own pieces (the model and data config composed by Hydra, FERDataModule with its default
on-device uint8 copy and augmentation in on_after_batch_transfer, a Trainer with the progress bar on and no
validation, logging or checkpoints). Bare side: the uint8 training images as one tensor on the device, a randperm
per epoch, slices, the same augmentation module, autocast, cross-entropy, backward, step. Data: FER2013 train
(../shared/fer2013, 10% held out as val, as train.py does) when present and --data is auto or fer2013, else the
synthetic faces. Runs alternate (Lightning, bare, ...) and the best of --repeats is kept: the machine is noisy.
Prints per model: each side's images/s and seconds per epoch, and `<model> lightning/bare ratio (<device>, batch
<N>): <ratio>` (ratio = bare seconds / Lightning seconds: 1.0 means Lightning costs nothing).
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
import torch.nn.functional as F  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from fer.cli import register_resolvers, silence_library_noise  # noqa: E402

register_resolvers()
from fer.data.augment import to_unit_float  # noqa: E402
from fer.models.base import optimizer_config  # noqa: E402
from fer.training import instantiate_model  # noqa: E402

SHARED_FER2013 = Path(os.environ.get("FER_DATA") or ROOT.parent / "shared" / "fer2013")  # FER_DATA: the device kit


def compose_cfg(model: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="train", overrides=[f"model={model}", *overrides])


class EpochTimer(pl.Callback):
    """Seconds and images of each training epoch after the warm-up epochs (GPU work finished at both ends)."""

    def __init__(self, warmup_epochs: int):
        self.warmup, self.start, self.images, self.epochs = warmup_epochs, 0.0, 0, []

    def on_train_epoch_start(self, trainer, pl_module):
        _sync(pl_module.device)
        self.start, self.images = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.images += len(batch[1])

    def on_train_epoch_end(self, trainer, pl_module):
        _sync(pl_module.device)
        if trainer.current_epoch >= self.warmup:
            self.epochs.append((time.perf_counter() - self.start, self.images))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def lightning_epoch(cfg, data_cfg, device: str, batches: int | None, epochs: int, warmup: int) -> tuple[float, int]:
    """(seconds, images) of the fastest measured Lightning epoch."""
    import hydra.utils

    model = instantiate_model(cfg.model)
    dm = hydra.utils.instantiate(data_cfg)
    timer = EpochTimer(warmup)
    trainer = pl.Trainer(accelerator=device, devices=1, max_epochs=warmup + epochs, limit_train_batches=batches,
                         limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=True, enable_model_summary=False, precision=cfg.trainer.precision,
                         callbacks=[timer, pl.callbacks.TQDMProgressBar(refresh_rate=10)])
    trainer.fit(model, datamodule=dm)
    return min(timer.epochs)


def bare_epoch(cfg, data_cfg, images: torch.Tensor, labels: torch.Tensor, batches: int | None, epochs: int,
               warmup: int) -> tuple[float, int]:
    """(seconds, images) of the fastest measured epoch of a plain loop doing the same work."""
    import hydra.utils

    device = images.device
    model = instantiate_model(cfg.model).to(device).train()
    opt = hydra.utils.instantiate(optimizer_config(cfg.model.optimizer, device), params=model.parameters())
    augment = hydra.utils.instantiate(data_cfg.augment).to(device)
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    bs = data_cfg.batch_size
    steps = len(images) // bs if batches is None else min(batches, len(images) // bs)
    times = []
    for epoch in range(warmup + epochs):
        _sync(device)
        start = time.perf_counter()
        perm = torch.randperm(len(images), device=device)
        for i in range(steps):
            idx = perm[i * bs:(i + 1) * bs]
            x, y = augment(to_unit_float(images[idx])), labels[idx]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(device)
        if epoch >= warmup:
            times.append((time.perf_counter() - start, steps * bs))
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--models", default=None, help="default: cnn_deep on cuda, mlp,cnn,cnn_deep,efficientnet on cpu")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--batches", type=int, default=None, help="batches per epoch (default: 30 on cpu, all on cuda)")
    ap.add_argument("--epochs", type=int, default=None, help="measured epochs (default: 2 on cpu, 3 on cuda)")
    ap.add_argument("--warmup-epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--data", default="auto", choices=["auto", "synthetic", "fer2013"])
    ap.add_argument("--precision", default="bf16-mixed")
    ap.add_argument("--compile", action="store_true", help="model.compile=true on both sides")
    ap.add_argument("--override", action="append", default=[], help="more config overrides (repeatable)")
    args = ap.parse_args()
    silence_library_noise()
    cuda = args.device == "cuda"
    models = (args.models or ("cnn_deep" if cuda else "mlp,cnn,cnn_deep,efficientnet")).split(",")
    batches = args.batches if args.batches is not None else (None if cuda else 30)
    epochs = args.epochs or (3 if cuda else 2)
    use_fer = args.data == "fer2013" or (args.data == "auto" and SHARED_FER2013.is_dir())
    device = torch.device("cuda" if cuda else "cpu")
    name = torch.cuda.get_device_name(device) if cuda else f"{os.cpu_count()} CPU cores"
    print(f"device: {name}, torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch_size}, "
          f"precision {args.precision}, data {'FER2013 train' if use_fer else 'synthetic'}"
          f"{', compiled' if args.compile else ''}{''.join(f', {o}' for o in args.override)}")
    with tempfile.TemporaryDirectory() as tmp:
        data = ["data=fer2013", f"data.root={SHARED_FER2013}"] if use_fer else \
            [f"data.source.n_train={(batches or 200) * args.batch_size * (epochs + args.warmup_epochs) + 7}"]
        for model_name in models:
            overrides = [*data, f"data.batch_size={args.batch_size}", f"paths.cache_dir={tmp}", "data.progress=false",
                         "data.val_fraction=0.1" if use_fer else "data.val_fraction=0.0",
                         "model.scheduler=null", f"trainer.precision={args.precision}",
                         *(["model.compile=true"] if args.compile else []), *args.override]
            cfg = compose_cfg(model_name, overrides)
            import hydra.utils

            dm = hydra.utils.instantiate(cfg.data)
            dm.setup("fit")
            idx = dm.idx["train"]
            images = torch.from_numpy(dm.cache.images[idx].copy()).to(device)
            labels = torch.from_numpy(dm.cache.labels[idx].copy()).to(device)
            light = bare = None
            for _ in range(args.repeats):
                lt = lightning_epoch(cfg, cfg.data, args.device, batches, epochs, args.warmup_epochs)
                bt = bare_epoch(cfg, cfg.data, images, labels, batches, epochs, args.warmup_epochs)
                light = lt if light is None or lt[0] / lt[1] < light[0] / light[1] else light
                bare = bt if bare is None or bt[0] / bt[1] < bare[0] / bare[1] else bare
            per_epoch = len(idx) // args.batch_size * args.batch_size  # a full epoch, drop_last
            l_rate, b_rate = light[1] / light[0], bare[1] / bare[0]
            print(f"{model_name}: lightning {l_rate:,.0f} img/s = {per_epoch / l_rate:.2f} s/epoch, bare loop "
                  f"{b_rate:,.0f} img/s = {per_epoch / b_rate:.2f} s/epoch ({per_epoch:,} images per epoch)")
            print(f"{model_name} lightning/bare ratio ({args.device}, batch {args.batch_size}): {l_rate / b_rate:.2f}")


if __name__ == "__main__":
    main()
