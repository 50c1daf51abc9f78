"""The figures that runs and audits write: confusion matrix, grids of 48x48 images with captions. Files only
(matplotlib Figure objects drawn by the Agg canvas, never pyplot): no display needed, and matplotlib's process-wide
backend is left as the user's program set it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix

from fer.classes import CLASS_NAMES, NUM_CLASSES


def plot_confusion_matrix(labels: np.ndarray, preds: np.ndarray, path: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (each row = the true class, sums to 1), counts in small print."""
    counts = confusion_matrix(labels, preds, labels=range(NUM_CLASSES))
    norm = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(NUM_CLASSES):
        for j in range(NUM_CLASSES):
            ax.text(j, i, f"{norm[i, j]:.2f}\n({counts[i, j]})", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(NUM_CLASSES), CLASS_NAMES, rotation=45, ha="right")
    ax.set_yticks(range(NUM_CLASSES), CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = (labels == preds).mean() if len(labels) else float("nan")
    ax.set_title(f"{title} accuracy {acc:.3f} (n={len(labels)})".strip())
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_image_grid(images: np.ndarray, captions: list[str], path: Path, title: str = "", cols: int = 8) -> Path:
    """Grid of 48x48 images (uint8, or float in [0,1]) with a caption under each, drawn as one mosaic in one axes:
    several times faster than a subplot per image."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
    n, size = len(images), images.shape[1]
    rows = max(1, -(-n // cols))
    gap, cap = 8, 24  # pixels between tiles and under each tile for its caption
    cell_w, cell_h = size + gap, size + cap
    mosaic = np.full((rows * cell_h, cols * cell_w), 255, np.uint8)
    for k in range(n):
        r, c = divmod(k, cols)
        mosaic[r * cell_h:r * cell_h + size, c * cell_w + gap // 2:c * cell_w + gap // 2 + size] = images[k]
    top = 0.35 if title else 0.05
    fig = Figure(figsize=(cols * cell_w / 40, rows * cell_h / 40 + top))
    ax = fig.add_axes((0, 0, 1, 1 - top / (rows * cell_h / 40 + top)))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255, interpolation="nearest", aspect="auto")
    ax.axis("off")
    for k, text in enumerate(captions[:n]):
        r, c = divmod(k, cols)
        ax.text(c * cell_w + cell_w / 2, r * cell_h + size + 1, text, fontsize=6, ha="center", va="top",
                linespacing=1.0)
    if title:
        fig.suptitle(title, fontsize=9, y=1 - 0.08 / (rows * cell_h / 40 + top))
    fig.savefig(path, dpi=100)
    return path


def plot_reliability(before: np.ndarray, after: np.ndarray, labels: np.ndarray, path: Path, title: str = "") -> Path:
    """Reliability diagram: accuracy against confidence per bin, before and after calibration, with each curve's
    ECE; a calibrated model lies on the diagonal."""
    from fer.models.calibration import expected_calibration_error, reliability

    fig = Figure(figsize=(5.5, 6.5))
    ax, hist = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="calibrated")
    for probs, name, color in ((before, "uncalibrated", "tab:red"), (after, "calibrated", "tab:blue")):
        conf, acc, count = reliability(probs, labels)
        used = count > 0
        ax.plot(conf[used], acc[used], "o-", color=color,
                label=f"{name}: ECE {expected_calibration_error(probs, labels):.3f}")
        hist.hist(probs.max(axis=1), bins=15, range=(0, 1), histtype="step", color=color)
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability {title}".strip())
    ax.legend(fontsize=8, loc="upper left")
    hist.set_xlabel("confidence (top class probability)")
    hist.set_ylabel("images")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
