"""Disk size of the two installs a user can choose, measured side by side on this machine: the torch-free runtime
(`pip install <checkout>`: the wheel with the bundled model, and numpy, onnxruntime, opencv-python-headless) in a
fresh venv, against the training install of the quick start (`pip install -r requirements.txt`, the checkout's
.venv, or --train-venv).

    python bench/install_size.py [--train-venv .venv] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_wheel(out_dir: Path) -> Path:
    """The wheel of the package as it is in this checkout, built from a clean copy of what it packs: setuptools
    builds in the source folder and never empties its build/ folder, so a module deleted since an earlier build
    would otherwise ship again."""
    src = out_dir / "src"
    shutil.copytree(ROOT / "fer", src / "fer", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out_dir / "dist"), str(src)],
                   check=True, timeout=600)
    (wheel,) = (out_dir / "dist").glob("fer_toolkit-*.whl")
    return wheel


def size_mb(path: Path) -> float:
    return int(subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
               .stdout.split()[0]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-venv", type=Path, default=ROOT / ".venv")
    ap.add_argument("--keep", type=Path, default=None, help="build the runtime venv here and keep it")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="fer-install-"))
    venv = work / "runtime-venv"
    wheel = build_wheel(work)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], check=True)
    packages = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
                              capture_output=True, text=True, check=True).stdout.split()
    runtime, train = size_mb(venv), size_mb(args.train_venv)
    print(f"wheel {wheel.name}: {wheel.stat().st_size / 2**20:.1f} MB")
    print(f"runtime venv (pip install <checkout>): {runtime:,.0f} MB, {len(packages)} packages: {' '.join(packages)}")
    print(f"training venv ({args.train_venv}): {train:,.0f} MB")
    print(f"runtime / training size ratio: {runtime / train:.3f}")


if __name__ == "__main__":
    main()
