"""Where a training step's time goes: the two sides of bench/train_speed.py (Lightning through FERDataModule, and
the bare loop; same model, data, augmentation, optimizer, precision) under the torch profiler for --steps steps,
after --warmup steps, and on CUDA every host synchronisation with the line of code that asked for it
(torch.cuda.set_sync_debug_mode).

    python bench/profile_step.py --device cuda --batch-size 128 [--steps 30] [--out DIR]

Prints per side: wall ms per step, host (CPU) ms per step spent in torch ops, GPU ms per step in kernels, the
synchronising call sites, and the top ops by host time; --out also writes each side's full profiler table.
On a GPU a step is launch-bound when host ms per step is close to wall ms and well above GPU ms.
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile
import traceback
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

# the bench's own pieces (it also puts the project on sys.path): the two sides are built as train_speed builds them
from train_speed import compose_cfg, instantiate_model, optimizer_config, silence_library_noise, to_unit_float

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "fer2013"


class SyncSites:
    """Counts synchronising CUDA calls by the innermost line of code outside torch (and warnings) that made them."""

    def __init__(self):
        self.sites: collections.Counter = collections.Counter()
        self._old = None

    def __enter__(self):
        self._old = warnings.showwarning
        warnings.showwarning = self._record
        warnings.simplefilter("always")
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc):
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode("default")
        warnings.showwarning = self._old

    def _record(self, message, category, filename, lineno, file=None, line=None):
        if "called a synchronizing" not in str(message):  # torch's words for a synchronising call
            return
        frames = [f for f in traceback.extract_stack()[:-1]
                  if "/torch/" not in f.filename and "warnings" not in f.filename]
        f = frames[-1] if frames else None
        self.sites[f"{f.filename.split('site-packages/')[-1]}:{f.lineno} {f.name}" if f else "?"] += 1


class Window(pl.Callback):
    """Starts the profiler and the sync counter after `warmup` training steps, stops them `steps` later."""

    def __init__(self, warmup: int, steps: int, prof, sync: SyncSites):
        self.warmup, self.steps, self.prof, self.sync = warmup, steps, prof, sync

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            _sync(pl_module.device)
            self.prof.__enter__()
            self.sync.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == self.warmup + self.steps - 1:
            self.sync.__exit__()
            _sync(pl_module.device)
            self.prof.__exit__(None, None, None)
            trainer.should_stop = True


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _profiler(device: torch.device):
    return profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else []))


def lightning_side(cfg, device, warmup, steps):
    import hydra.utils

    prof, sync = _profiler(device), SyncSites()
    trainer = pl.Trainer(accelerator=device.type, devices=1, max_epochs=1, limit_train_batches=warmup + steps,
                         limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, precision=cfg.trainer.precision,
                         callbacks=[Window(warmup, steps, prof, sync), pl.callbacks.TQDMProgressBar(refresh_rate=10)])
    trainer.fit(instantiate_model(cfg.model), datamodule=hydra.utils.instantiate(cfg.data))
    return prof, sync


def bare_side(cfg, device, warmup, steps):
    import hydra.utils

    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    idx = dm.idx["train"]
    images = torch.from_numpy(dm.cache.images[idx].copy()).to(device)
    labels = torch.from_numpy(dm.cache.labels[idx].copy()).to(device)
    model = instantiate_model(cfg.model).to(device).train()
    opt = hydra.utils.instantiate(optimizer_config(cfg.model.optimizer, device), params=model.parameters())
    augment = hydra.utils.instantiate(cfg.data.augment).to(device)
    bs = cfg.data.batch_size
    perm = torch.randperm(len(images), device=device)
    prof, sync = _profiler(device), SyncSites()
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            prof.__enter__()
            sync.__enter__()
        j = perm[(i * bs) % (len(images) - bs):][:bs]
        x, y = augment(to_unit_float(images[j])), labels[j]
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync.__exit__()
    _sync(device)
    prof.__exit__(None, None, None)
    return prof, sync


def report(name, prof, sync, steps, out: Path | None):
    events = prof.key_averages()
    host = sum(e.self_cpu_time_total for e in events) / 1e3 / steps
    # kernels only: a CPU op's device time is the time of the kernels it launched, which are events themselves
    gpu = sum(e.self_device_time_total for e in events if e.device_type == torch.autograd.DeviceType.CUDA) / 1e3 / steps
    wall = (max(e.time_range.end for e in prof.events()) - min(e.time_range.start for e in prof.events())) / 1e3
    print(f"{name}: wall {wall / steps:.2f} ms/step, host in torch ops {host:.2f} ms/step, GPU kernels {gpu:.2f} "
          f"ms/step, {sum(sync.sites.values())} synchronising calls in {steps} steps")
    for site, n in sync.sites.most_common(8):
        print(f"  sync x{n}: {site}")
    table = events.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=48)
    print(table)
    if out is not None:
        (out / f"profile_{name}.txt").write_text(events.table(sort_by="self_cpu_time_total", row_limit=60))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--model", default="cnn_deep")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--data", default="auto", choices=["auto", "synthetic", "fer2013"])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    silence_library_noise()
    device = torch.device(args.device)
    root = Path(os.environ.get("FER_DATA") or SHARED)
    use_fer = args.data == "fer2013" or (args.data == "auto" and root.is_dir())
    with tempfile.TemporaryDirectory() as tmp:
        data = ["data=fer2013", f"data.root={root}", "data.val_fraction=0.1"] if use_fer else \
            [f"data.source.n_train={(args.warmup + args.steps + 2) * args.batch_size}", "data.val_fraction=0.0"]
        cfg = compose_cfg(args.model, [*data, f"data.batch_size={args.batch_size}", f"paths.cache_dir={tmp}",
                                       "data.progress=false", "model.scheduler=null"])
        print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, model "
              f"{args.model}, batch {args.batch_size}, {args.steps} steps after {args.warmup}")
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
        report("lightning", *lightning_side(cfg, device, args.warmup, args.steps), args.steps, args.out)
        report("bare", *bare_side(cfg, device, args.warmup, args.steps), args.steps, args.out)


if __name__ == "__main__":
    main()
