"""The data audit's time and peak memory on a worst case for near-duplicate search, 50,000 copies of one image
(hard links to one JPEG in the fer2013 folder layout), and on FER2013 itself.

    python bench/audit_memory.py [--copies 50000] [--data ../shared/fer2013]

Each audit runs in its own process (python -m fer.audit, as users run it) after a first run that builds the image
cache; its peak RSS is the child's ru_maxrss.
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

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def identical_copies(root: Path, copies: int) -> Path:
    rng = np.random.default_rng(0)
    one = cv2.resize(rng.integers(0, 256, (6, 6)).astype(np.uint8), (48, 48), interpolation=cv2.INTER_CUBIC)
    source = root / "one.jpg"
    root.mkdir(parents=True)
    if not cv2.imwrite(str(source), one):
        raise SystemExit(f"cannot write {source}")
    for split, n in (("train", copies), ("publictest", 10)):
        folder = root / split / "happy"
        folder.mkdir(parents=True)
        for i in range(n):
            os.link(source, folder / f"{i:06d}.jpg")
    source.unlink()
    return root


def audit(data: Path, cache: Path, out: Path) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, the audit's first summary line) of one `python -m fer.audit` process."""
    cmd = [sys.executable, "-m", "fer.audit", "data=fer2013", f"data.root={data}", f"paths.cache_dir={cache}",
           f"audit.out_dir={out}", "data.progress=false"]
    code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024); "
            "print(p.stdout); sys.exit(p.returncode)")
    proc = subprocess.run([sys.executable, "-c", code, *cmd], cwd=ROOT, capture_output=True, text=True, check=True)
    lines = proc.stdout.splitlines()
    seconds, rss = map(float, lines[0].split())
    summary = "; ".join(line.strip() for line in lines if line.strip().startswith(("exact dup", "near dup")))
    return seconds, rss, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", type=int, default=50_000)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "fer2013")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sets = [(f"{args.copies:,} copies of one image", identical_copies(tmp / "copies", args.copies))]
        if args.data.is_dir():
            sets.append((f"FER2013 ({args.data})", args.data))
        print("| images | audit time | peak RSS | exact and near duplicates |\n|---|---|---|---|")
        for name, data in sets:
            audit(data, tmp / "cache", tmp / "warm")  # builds the cache: not what is measured
            seconds, rss, summary = audit(data, tmp / "cache", tmp / "report")
            print(f"| {name} | {seconds:.1f} s | {rss:,.0f} MB | {summary} |", flush=True)


if __name__ == "__main__":
    main()
