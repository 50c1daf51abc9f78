"""Evaluation reports written for every tested run: confusion matrix, per-class table, misclassified grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_fscore_support

from fer.classes import CLASS_NAMES, NUM_CLASSES
from fer.tracking.plots import plot_confusion_matrix, plot_image_grid


def per_class_report(labels: np.ndarray, preds: np.ndarray) -> pd.DataFrame:
    p, r, f, support = precision_recall_fscore_support(labels, preds, labels=range(NUM_CLASSES), zero_division=0)
    return pd.DataFrame({"class": CLASS_NAMES, "precision": p, "recall": r, "f1": f, "support": support})


def write_test_reports(outputs: dict, out_dir: Path) -> dict[str, Path]:
    """From the test outputs (probs, labels, wrong_*: fer.training.test_outputs), write the report files; returns
    name -> path."""
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
