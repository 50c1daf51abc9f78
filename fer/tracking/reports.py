"""Evaluation reports written for every tested run: confusion matrix, per-class table, misclassified grid."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support  # noqa: E402

from fer.classes import CLASS_NAMES, NUM_CLASSES  # noqa: E402


def per_class_report(labels: np.ndarray, preds: np.ndarray) -> pd.DataFrame:
    p, r, f, support = precision_recall_fscore_support(labels, preds, labels=range(NUM_CLASSES), zero_division=0)
    return pd.DataFrame({"class": CLASS_NAMES, "precision": p, "recall": r, "f1": f, "support": support})


def plot_confusion_matrix(labels: np.ndarray, preds: np.ndarray, path: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (each row = the true class, sums to 1), counts in small print."""
    counts = confusion_matrix(labels, preds, labels=range(NUM_CLASSES))
    norm = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
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
    plt.close(fig)
    return path


def plot_image_grid(images: np.ndarray, captions: list[str], path: Path, title: str = "", cols: int = 8) -> Path:
    """Grid of 48x48 images (uint8 or float in [0,1]) with a caption under each."""
    n = len(images)
    rows = max(1, int(np.ceil(n / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.55), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(images[k], cmap="gray", vmin=0, vmax=255 if images.dtype == np.uint8 else 1)
            ax.set_title(captions[k], fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_test_reports(outputs: dict, out_dir: Path) -> dict[str, Path]:
    """From a model's test_outputs (probs, labels, wrong_*), write the report files; returns name -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    labels, probs = outputs["labels"], outputs["probs"]
    preds = probs.argmax(1)
    files = {"confusion_matrix": plot_confusion_matrix(labels, preds, out_dir / "confusion_matrix.png", "test")}
    report = per_class_report(labels, preds)
    report.to_csv(out_dir / "per_class_report.csv", index=False, float_format="%.4f")
    files["per_class_report"] = out_dir / "per_class_report.csv"
    if len(outputs.get("wrong_labels", [])):
        captions = [f"true {CLASS_NAMES[t]}\npred {CLASS_NAMES[p]}"
                    for t, p in zip(outputs["wrong_labels"], outputs["wrong_preds"])]
        files["misclassified"] = plot_image_grid(outputs["wrong_images"], captions, out_dir / "misclassified.png",
                                                 "misclassified test images (up to 9 per true class)")
    return files
