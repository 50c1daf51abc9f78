"""Training steps in fp32 and in bf16 autocast on this machine's CPU, side by side (alternating, best of
--repeats), for the models given: what `trainer.precision` (auto: bf16 only where fer.devices finds it native)
chooses between.

    python bench/precision.py [--models cnn_deep] [--batch-size 128] [--steps 3] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("FER_ROOT", str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from fer.cli import register_resolvers  # noqa: E402

register_resolvers()
from fer.devices import cpu_has_native_bf16, training_precision  # noqa: E402
from fer.training import instantiate_model  # noqa: E402


def step_seconds(model, dtype, batch: int, steps: int) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.rand(batch, 1, 48, 48), torch.randint(0, 7, (batch,))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):  # one warm-up step
        F.cross_entropy(model(x).float(), y).backward()
    opt.zero_grad()
    t = time.perf_counter()
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return (time.perf_counter() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="cnn_deep")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    print(f"CPU: {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, native bf16: "
          f"{cpu_has_native_bf16()}; trainer.precision=auto gives {training_precision('cpu')}")
    for name in args.models.split(","):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("train", overrides=[f"model={name}"])
        model = instantiate_model(cfg.model).train()
        best = {"fp32": float("inf"), "bf16": float("inf")}
        for _ in range(args.repeats):
            for kind, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
                best[kind] = min(best[kind], step_seconds(model, dtype, args.batch_size, args.steps))
        print(f"{name} batch {args.batch_size}: fp32 {best['fp32']:.2f} s/step, bf16 autocast {best['bf16']:.2f} "
              f"s/step; bf16/fp32 time ratio {best['bf16'] / best['fp32']:.1f}")


if __name__ == "__main__":
    main()
