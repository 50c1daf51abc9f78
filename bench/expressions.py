"""What users get on real photos with expression labels, end to end: photo -> detector -> levelled, aligned crop ->
bundled model, against the photo's label, per detector. One face per photo is assumed (the largest one found is
classified); a photo where none is found counts as wrong in the end-to-end figure.

Two kinds of labelled photos are read (nothing of them is committed; docs/BENCHMARKS.md names the sets measured):
- a folder of class folders (`<dir>/<class>/<photo>`; class names as fer.classes.parse_label reads them, any case:
  "Disgusted", "Surprised", "Scared"...). Folders that name no class are reported and left out.
- GENKI-4K's layout (`files/file0001.jpg...` and `labels.txt`, whose first column is 1 for a smile, 0 for none):
  scored as happy against not happy (the model's top class is happy, or not), with the area under the ROC curve of
  its P(happy).

    python bench/expressions.py --folders /path/to/test_images --genki /path/to/genki4k [--limit 1000]

A file that cannot be read is named and counted, never dropped silently.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer.classes import CLASS_NAMES, parse_label  # noqa: E402
from fer.errors import DataError  # noqa: E402
from fer.runtime.faces import FaceDetector  # noqa: E402

HAPPY = CLASS_NAMES.index("happy")


@dataclass(frozen=True)
class LabelledPhoto:
    path: Path
    label: int  # a class index; for GENKI-4K 1 (smile) or 0 (none)


def read_class_folders(root: Path) -> tuple[list[LabelledPhoto], list[str]]:
    """Photos under class folders, and notes on what was left out (folders that name no class)."""
    photos, notes = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))
        label = parse_label(folder.name)
        if label is None:
            notes.append(f"{folder.name}/: no expression class, {len(files)} file(s) left out")
            continue
        photos += [LabelledPhoto(f, label) for f in files]
    if not photos:
        raise SystemExit(f"{root}: no class folders with photos in it (e.g. {root}/happy/photo.jpg)")
    return photos, notes


def read_genki(root: Path) -> list[LabelledPhoto]:
    """GENKI-4K: line n of labels.txt labels files/file<n, 4 digits>.jpg (1 smile, 0 none)."""
    lines = (root / "labels.txt").read_text().split("\n")
    rows = [line.split() for line in lines if line.strip()]
    bad = [i + 1 for i, r in enumerate(rows) if r[0] not in ("0", "1")]
    if bad:
        raise SystemExit(f"{root / 'labels.txt'}: line(s) {bad[:5]} do not start with 0 or 1")
    return [LabelledPhoto(root / "files" / f"file{i + 1:04d}.jpg", int(r[0])) for i, r in enumerate(rows)]


def largest_face(model, detector: FaceDetector, path: Path) -> np.ndarray | None:
    """P(class) [7] of the largest face found in the photo, or None when none is."""
    faces = model.find_faces(path, detector)
    if not faces:
        return None
    return np.array([max(faces, key=lambda f: f.box[2] * f.box[3]).probabilities[c] for c in CLASS_NAMES])


def run(model, detector: FaceDetector, photos: list[LabelledPhoto]):
    """Per photo P(class) or None (no face), the files that could not be read, and the median ms per photo."""
    probs, unreadable, times = [], [], []
    for p in photos:
        t0 = time.perf_counter()
        try:
            probs.append(largest_face(model, detector, p.path))
        except DataError as exc:
            unreadable.append(str(exc))
            probs.append(None)
            continue
        times.append(time.perf_counter() - t0)
    return probs, unreadable, 1000 * float(np.median(times)) if times else float("nan")


def score_classes(photos: list[LabelledPhoto], probs: list) -> dict:
    found = [i for i, p in enumerate(probs) if p is not None]
    right = [int(np.argmax(probs[i])) == photos[i].label for i in found]
    labels = np.array([p.label for p in photos])
    per_class = {CLASS_NAMES[c]: (sum(r for i, r in zip(found, right) if labels[i] == c), int((labels == c).sum()))
                 for c in np.unique(labels)}
    return dict(found=len(found) / len(photos), acc_found=float(np.mean(right)) if right else float("nan"),
                end_to_end=sum(right) / len(photos), per_class=per_class)


def score_smiles(photos: list[LabelledPhoto], probs: list) -> dict:
    found = [i for i, p in enumerate(probs) if p is not None]
    smile = np.array([photos[i].label == 1 for i in found])
    happy = np.array([probs[i][HAPPY] for i in found])
    right = (np.array([int(np.argmax(probs[i])) == HAPPY for i in found]) == smile) if found else np.array([])
    return dict(found=len(found) / len(photos), acc_found=float(right.mean()) if found else float("nan"),
                end_to_end=float(right.sum()) / len(photos),
                auc=float(roc_auc_score(smile, happy)) if 0 < smile.sum() < len(smile) else float("nan"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folders", type=Path, help="a folder of class folders of photos")
    ap.add_argument("--genki", type=Path, help="GENKI-4K's folder (files/ and labels.txt)")
    ap.add_argument("--limit", type=int, default=None, help="the first N GENKI-4K photos only")
    ap.add_argument("--model", default=None, help="an exported .onnx (default: the bundled model)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--yunet-file", default=None, help="another YuNet .onnx (default: the one in the package)")
    args = ap.parse_args()
    if not (args.folders or args.genki):
        ap.error("give --folders, --genki or both")
    cv2.setNumThreads(args.threads or os.cpu_count() or 1)
    from fer.runtime import ExpressionModel

    model = ExpressionModel(args.model, args.threads)
    detectors = {"yunet_fer (default)": FaceDetector("yunet_fer", threads=args.threads),
                 "yunet": FaceDetector("yunet", threads=args.threads, model_file=args.yunet_file),
                 "yunet, turns -30 30": FaceDetector("yunet", threads=args.threads, turns=(-30.0, 30.0),
                                                     model_file=args.yunet_file),
                 "haar": FaceDetector("haar")}
    sets = []
    if args.folders:
        photos, notes = read_class_folders(args.folders)
        counts = np.bincount([p.label for p in photos], minlength=len(CLASS_NAMES))
        print(f"{args.folders}: {len(photos)} photos ({', '.join(f'{c} {n}' for c, n in zip(CLASS_NAMES, counts))})"
              + "".join(f"\n  {n}" for n in notes))
        sets.append(("classes", photos, score_classes))
    if args.genki:
        photos = read_genki(args.genki)[:args.limit]
        print(f"{args.genki}: {len(photos)} photos, {sum(p.label for p in photos)} smiling")
        sets.append(("smiles", photos, score_smiles))
    for kind, photos, score in sets:
        extra = "accuracy by class" if kind == "classes" else "AUC of P(happy) for a smile, found faces"
        print(f"\n{kind}: model {model.path.name}\n\n| detector | ms / photo | a face found | accuracy where found | "
              f"end to end (none found = wrong) | {extra} |\n|---|---|---|---|---|---|")
        for name, detector in detectors.items():
            probs, unreadable, ms = run(model, detector, photos)
            r = score(photos, probs)
            tail = (", ".join(f"{c} {k}/{n}" for c, (k, n) in r["per_class"].items()) if kind == "classes"
                    else f"{r['auc']:.3f}")
            print(f"| {name} | {ms:.0f} | {r['found']:.3f} | {r['acc_found']:.3f} | {r['end_to_end']:.3f} | {tail} |",
                  flush=True)
            if unreadable:
                print(f"  {len(unreadable)} file(s) could not be read (counted as no face): "
                      + "; ".join(unreadable[:5]))


if __name__ == "__main__":
    main()
