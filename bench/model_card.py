"""The figures of docs/MODEL_CARD.md, measured on the bundled model (or any exported one) as users call it:
publictest accuracy and macro-F1 through the runtime's default call, per-class precision / recall / F1, the
confusion matrix (docs/img/model_card_confusion.png), calibration before and after the temperature (ECE and NLL,
from the source checkpoint with T=1 and with its T, same test-time views; docs/img/model_card_reliability.png),
speed on this machine (images/s of fp32 and int8 in one process, side by side; the first prediction from a cold
start in a fresh interpreter), how often the smaller files agree with fp32, and which form to ship: the smallest
whose accuracy is within 0.3 points of fp32's (int8 first, then fp16 weights; the figures after that line are the
shipped form's).

    python bench/model_card.py --fp32 model.onnx [--int8 model.int8.onnx] [--fp16 model.fp16.onnx]
                               [--ckpt the source .ckpt] [--data ../shared/fer2013] [--split publictest]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("FER_ROOT", str(ROOT))

from fer.classes import CLASS_NAMES  # noqa: E402


def load_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The split's faces (uint8 [N,48,48]) and labels, through the project's own cache."""
    from fer.data.opened import open_data
    from fer.data.sources import FolderSource

    data = open_data(FolderSource(str(root)), str(ROOT / ".cache" / "fer"), progress=False)
    idx = data.cache.split_indices(split)
    return np.asarray(data.cache.images)[idx], data.cache.labels[idx]


def per_class(labels: np.ndarray, preds: np.ndarray) -> list[str]:
    rows = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for c, name in enumerate(CLASS_NAMES):
        tp = int(((preds == c) & (labels == c)).sum())
        p = tp / max(1, int((preds == c).sum()))
        r = tp / max(1, int((labels == c).sum()))
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        rows.append(f"| {name} | {p:.3f} | {r:.3f} | {f1:.3f} | {int((labels == c).sum())} |")
    return rows


def confusion(labels: np.ndarray, preds: np.ndarray) -> list[str]:
    m = np.zeros((7, 7), int)
    np.add.at(m, (labels, preds), 1)
    rows = ["| true \\ predicted | " + " | ".join(CLASS_NAMES) + " |", "|---" * 8 + "|"]
    rows += [f"| {CLASS_NAMES[i]} | " + " | ".join(str(v) for v in m[i]) + " |" for i in range(7)]
    return rows


def macro_f1(labels: np.ndarray, preds: np.ndarray) -> float:
    from fer.predict.outputs import _metrics

    return _metrics(labels, preds)[1]


def speed(paths: dict[str, Path], faces: np.ndarray, rounds: int = 3) -> list[str]:
    """images/s of each file on the same faces, alternating the files, best of `rounds`."""
    from fer.runtime import ExpressionModel

    models = {k: ExpressionModel(p) for k, p in paths.items()}
    best = {k: 0.0 for k in models}
    for _ in range(rounds):
        for k, m in models.items():
            t = time.perf_counter()
            m.predict_proba(faces)
            best[k] = max(best[k], len(faces) / (time.perf_counter() - t))
    lines = [f"{k}: {v:,.0f} faces/s ({len(faces)} faces, batch 256, best of {rounds})" for k, v in best.items()]
    if len(best) == 2:
        a, b = list(best.values())
        lines.append(f"int8/fp32 speed ratio: {b / a:.2f}")
    return lines


def cold_start(path: Path) -> str:
    code = ("import time; t = time.perf_counter()\nimport numpy as np\nfrom fer.runtime import ExpressionModel\n"
            f"m = ExpressionModel({str(path)!r}); m.predict(np.zeros((1, 48, 48), np.uint8))\n"
            "print(time.perf_counter() - t)")
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                                 check=True).stdout) for _ in range(3)]
    return f"{path.name}: first prediction {min(runs):.2f} s from a cold start (imports + load + 1 face; best of 3)"


def calibration(ckpt: Path, faces: np.ndarray, labels: np.ndarray, views: str) -> list[str]:
    """ECE / NLL with T=1 and with the checkpoint's T, the file's test-time views, fp32 on the CPU."""
    from fer.export.check import torch_probabilities
    from fer.models.calibration import expected_calibration_error
    from fer.models.loading import load_model
    from fer.tracking.plots import plot_reliability

    model = load_model(ckpt)
    t = float(model.calibration_t)
    after = torch_probabilities(model, faces, views=views)
    model.calibration_t.fill_(1.0)
    before = torch_probabilities(model, faces, views=views)
    plot_reliability(before, after, labels, ROOT / "docs" / "img" / "model_card_reliability.png",
                     f"publictest, T={t:.3f} (fitted on val)")

    def nll(p):
        return float(-np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, None)).mean())

    return [f"temperature {t:.3f} (fitted on the val split)",
            "| | ECE | NLL |", "|---|---|---|",
            f"| T = 1 (uncalibrated) | {expected_calibration_error(before, labels):.3f} | {nll(before):.3f} |",
            f"| T = {t:.3f} (shipped) | {expected_calibration_error(after, labels):.3f} | {nll(after):.3f} |"]


SHIP_TOLERANCE = 0.003
MAX_SHIPPED_BYTES = 16 * 10**6


def form_to_ship(accuracy: dict[str, float], size: dict[str, int]) -> str:
    """The smallest file whose accuracy is within SHIP_TOLERANCE of fp32's (fp32 itself if no smaller one is)."""
    keeps = [kind for kind in accuracy if accuracy[kind] >= accuracy["fp32"] - SHIP_TOLERANCE]
    return min(keeps, key=lambda kind: size[kind])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fp32", type=Path, required=True)
    ap.add_argument("--int8", type=Path, default=None)
    ap.add_argument("--fp16", type=Path, default=None)
    ap.add_argument("--ckpt", type=Path, default=None, help="the source checkpoint, for calibration before/after")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "fer2013")
    ap.add_argument("--split", default="publictest")
    args = ap.parse_args()
    from fer.runtime import ExpressionModel
    from fer.tracking.plots import plot_confusion_matrix

    faces, labels = load_split(args.data, args.split)
    files = {kind: path for kind, path in (("fp32", args.fp32), ("int8", args.int8), ("fp16", args.fp16)) if path}
    preds, accuracy = {}, {}
    for kind, path in files.items():
        model = ExpressionModel(path)
        preds[kind] = model.predict_proba(faces).argmax(1)
        accuracy[kind] = float((preds[kind] == labels).mean())
        print(f"{kind} {path.name} ({path.stat().st_size / 2**20:.1f} MB): {args.split} accuracy {accuracy[kind]:.4f}, "
              f"macro-F1 {macro_f1(labels, preds[kind]):.4f} (views: {model.info.views})")
        if kind != "fp32":
            print(f"  {kind} agrees with fp32 on {(preds[kind] == preds['fp32']).mean():.2%} of {len(labels)} faces")
    shipped = form_to_ship(accuracy, {kind: path.stat().st_size for kind, path in files.items()})
    print(f"form to ship (the smallest within {100 * SHIP_TOLERANCE:.1f} points of fp32's accuracy): {shipped}"
          + ("" if files[shipped].stat().st_size <= MAX_SHIPPED_BYTES else " - over the 16 MB a file in git may take"))
    print(f"\nper class ({shipped}, {args.split}):")
    print("\n".join(per_class(labels, preds[shipped])))
    print(f"\nconfusion matrix ({shipped}, {args.split}; rows: true class):")
    print("\n".join(confusion(labels, preds[shipped])))
    plot_confusion_matrix(labels, preds[shipped], ROOT / "docs" / "img" / "model_card_confusion.png",
                          f"bundled model, {args.split}")
    if args.ckpt:
        print(f"\ncalibration ({args.split}, checkpoint fp32):")
        print("\n".join(calibration(args.ckpt, faces, labels, ExpressionModel(args.fp32).info.views)))
    print(f"\nspeed ({os.cpu_count()} cores):")
    print("\n".join(speed(files, faces[:2048])))
    for path in files.values():
        print(cold_start(path))


if __name__ == "__main__":
    main()
