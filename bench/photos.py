"""Face detectors on real photos: recall and precision at IoU >= 0.5 against boxes drawn by hand, for the photos as
they are and made harder the way bench/scenes.py makes its faces hard (turned by up to 45 degrees, the lower third
of each face covered, shrunk to half size), and ms per photo; YuNet also with the photo searched turned by -30 and
+30 degrees (FaceDetector(turns=...), face_turns=).

The photos: any folders of photos annotated in dlib's imglab XML (`<image file=...><box top= left= width= height=
[ignore='1']/></image>`; boxes marked ignore count neither as found nor as false). docs/BENCHMARKS.md uses the 43
faces of dlib's examples/faces (training.xml and testing.xml: 9 photos from PASCAL VOC 2011, Flickr images under
their owners' terms, annotated by dlib's author; nothing of them is committed):

    git clone --depth 1 https://github.com/davisking/dlib /tmp/dlib
    python bench/photos.py /tmp/dlib/examples/faces/training.xml /tmp/dlib/examples/faces/testing.xml

Each detector draws its box its own way (YuNet's is taller than dlib's square, from brow to chin), so each box is
first mapped to the annotation's convention: a square of the median size and centre offset, relative to the box,
measured on the photos *of the other files* as they are (two files: each is scored with the mapping fitted on the
other), then matched one to one at IoU >= 0.5.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from faces import DETECTORS, iou, make_detector  # noqa: E402

from fer.runtime.faces import FaceDetector  # noqa: E402
from fer.runtime.turns import turn_onto_canvas  # noqa: E402

ANGLES = (-45, -30, -15, 0, 15, 30, 45)
CONDITIONS = {"as is": dict(cover=False, shrink=1.0), "lower third covered": dict(cover=True, shrink=1.0),
              "half size": dict(cover=False, shrink=0.5), "made grey": dict(cover=False, shrink=1.0, grey=True)}


@dataclass(frozen=True)
class Photo:
    path: Path
    faces: tuple[tuple[float, float, float, float], ...]  # (x, y, w, h) of each face drawn by hand
    ignored: tuple[tuple[float, float, float, float], ...] = ()


def read_imglab(xml: Path) -> list[Photo]:
    """The photos of a dlib imglab file, each with its boxes (paths relative to the file)."""
    photos = []
    for image in ET.parse(xml).getroot().iter("image"):
        boxes: dict[bool, list] = {True: [], False: []}
        for b in image.iter("box"):
            boxes[b.get("ignore") == "1"].append(tuple(float(b.get(k)) for k in ("left", "top", "width", "height")))
        path = xml.parent / image.get("file")
        if not path.is_file():
            raise SystemExit(f"{xml}: no photo {path}")
        photos.append(Photo(path, tuple(boxes[False]), tuple(boxes[True])))
    return photos


def harder(img: np.ndarray, photo: Photo, angle: float, cover: bool, shrink: float, grey: bool = False):
    """The photo with each face's lower third covered by a bar (a hand, a cup), shrunk, made grey (a black-and-white
    photo, an infrared camera), then turned by `angle` degrees on a canvas that holds all of it; with the boxes
    carried along (same size, moved with their centres)."""
    img = img.copy()
    if grey:
        img = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if cover:
        colour = tuple(int(v) for v in np.median(img.reshape(-1, 3), axis=0))  # a flat patch in the photo's tone
        for x, y, w, h in photo.faces:
            cv2.rectangle(img, (int(x - 0.1 * w), int(y + h * 2 / 3)), (int(x + 1.1 * w), int(y + h * 1.05)), colour,
                          -1)
    m, size = turn_onto_canvas(img.shape[1], img.shape[0], angle, shrink)
    fill = tuple(int(v) for v in img.reshape(-1, 3).mean(axis=0))
    out = cv2.warpAffine(img, m, size, flags=cv2.INTER_AREA if shrink < 1 else cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=fill)

    def moved(boxes):
        res = []
        for x, y, bw, bh in boxes:
            cx, cy = m @ np.array([x + bw / 2, y + bh / 2, 1.0])
            res.append((cx - bw * shrink / 2, cy - bh * shrink / 2, bw * shrink, bh * shrink))
        return res
    return out, moved(photo.faces), moved(photo.ignored)


def to_convention(box, mapping) -> tuple[float, float, float, float]:
    """A detector's box -> the annotation's square: (side / width, centre shift / width in x and y)."""
    x, y, w, h = box
    side, dx, dy = mapping
    cx, cy = x + w / 2 + dx * w, y + h / 2 + dy * w
    return (cx - side * w / 2, cy - side * w / 2, side * w, side * w)


def fit_convention(detector: FaceDetector, photos: list[Photo]) -> tuple[float, float, float]:
    """The median mapping from the detector's boxes to the drawn ones, on faces it finds at IoU >= 0.3."""
    rows = []
    for p in photos:
        found = detector.find(cv2.imread(str(p.path)))
        for x, y, w, h in p.faces:
            best = max(found, key=lambda d: iou(d.box, (x, y, w, h)), default=None)
            if best is None or iou(best.box, (x, y, w, h)) < 0.3:
                continue
            bx, by, bw, bh = best.box
            rows.append((w / bw, (x + w / 2 - bx - bw / 2) / bw, (y + h / 2 - by - bh / 2) / bw))
    if not rows:
        return (1.0, 0.0, 0.0)
    return tuple(float(v) for v in np.median(np.array(rows), axis=0))


def score(found, faces, ignored, mapping, threshold: float = 0.5) -> tuple[int, int, list[bool]]:
    """(true positives, false positives, per face whether it was found): greedy one-to-one matching by IoU;
    a detection on an ignored box counts neither way."""
    boxes = [to_convention(d.box, mapping) for d in found]
    pairs = sorted(((iou(b, f), i, j) for i, b in enumerate(boxes) for j, f in enumerate(faces)), reverse=True)
    used_d, hit = set(), [False] * len(faces)
    for v, i, j in pairs:
        if v >= threshold and i not in used_d and not hit[j]:
            used_d.add(i)
            hit[j] = True
    spare = [b for i, b in enumerate(boxes) if i not in used_d]
    false = sum(1 for b in spare if all(iou(b, g) < threshold for g in ignored))
    return sum(hit), false, hit


def evaluate(detector: FaceDetector, folds: list[list[Photo]]):
    """Per (condition, angle): found, false, faces; and the median ms per photo as it is."""
    counts: dict[tuple[str, int], np.ndarray] = {}
    times = []
    for k, photos in enumerate(folds):
        others = [p for j, fold in enumerate(folds) if j != k for p in fold] or photos
        mapping = fit_convention(detector, others)
        for p in photos:
            img = cv2.imread(str(p.path))
            detector.find(img)  # warm-up: ONNX Runtime plans each new input size on its first run, untimed here
            for cond, opts in CONDITIONS.items():
                for angle in ANGLES:
                    scene, faces, ignored = harder(img, p, angle, **opts)
                    t0 = time.perf_counter()
                    found = detector.find(scene)
                    if cond == "as is" and angle == 0:
                        times.append(time.perf_counter() - t0)
                    tp, fp, _ = score(found, faces, ignored, mapping)
                    counts[cond, angle] = counts.get((cond, angle), np.zeros(3, int)) + (tp, fp, len(faces))
    return counts, 1000 * float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("xml", nargs="+", type=Path, help="dlib imglab files (two or more: cross-fitted conventions)")
    ap.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=[*DETECTORS, "mtcnn"],
                    help="mtcnn: beside the package's, with facenet-pytorch installed (bench/mtcnn_detector.py)")
    ap.add_argument("--turns", type=float, nargs="*", default=[-30.0, 30.0], metavar="DEG",
                    help="a row for YuNet also searching the photos turned by these angles (none: no such row)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--yunet-file", default=None, help="another YuNet .onnx (default: the one in the package)")
    args = ap.parse_args()
    cv2.setNumThreads(args.threads or os.cpu_count() or 1)
    folds = [read_imglab(x) for x in args.xml]
    n = sum(len(p.faces) for f in folds for p in f)
    print(f"{sum(map(len, folds))} photos, {n} faces drawn by hand ({', '.join(map(str, args.xml))})\n")
    rows = {name: make_detector(name, args.yunet_file, threads=args.threads) for name in args.detectors}
    for name in [d for d in args.detectors if d in ("yunet", "yunet_fer")] if args.turns else []:
        turned = f"{name}, turns {' '.join(f'{a:g}' for a in args.turns)}"
        rows[turned] = make_detector(name, args.yunet_file, threads=args.threads, turns=args.turns)
    results = {name: evaluate(detector, folds) for name, detector in rows.items()}
    head = " | ".join(f"{a:+d} deg" if a else "upright" for a in ANGLES)
    for cond in CONDITIONS:
        print(f"\n{cond}: recall (precision) by turn\n\n| detector | ms / photo | {head} | all turns |\n"
              f"|---|---|{'---|' * (len(ANGLES) + 1)}")
        for name, (counts, ms) in results.items():
            cells = [counts[cond, a] for a in ANGLES] + [sum(counts[cond, a] for a in ANGLES)]
            text = " | ".join(f"{tp / n_:.2f} ({tp / (tp + fp):.2f})" if tp + fp else f"{tp / n_:.2f} (none found)"
                              for tp, fp, n_ in cells)
            print(f"| {name} | {ms:.1f} | {text} |", flush=True)


if __name__ == "__main__":
    main()
