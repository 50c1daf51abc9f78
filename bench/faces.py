"""Face detectors measured on the same scenes: precision and recall at IoU >= 0.5, ms per 640x480 image, and the
accuracy users get end to end (photo -> detect -> align or crop -> classify, against the face's label) beside the
accuracy on the FER2013 crops themselves, and on each face cut from its true square in the scene (what a perfect
detector and aligner would give: the part of the loss no detector can win back).

The scenes are generated deterministically from FER2013 faces (scenes.py beside this file): 640x480, 2-5 faces of
24-200 px, rotated up to 45 degrees, some partly covered, blurred, lit unevenly, on cluttered backgrounds (crops of
scikit-image's sample images, which ship with it). Nothing of FER2013 is committed.

    python bench/faces.py --data ../shared/fer2013 --source publictest --scenes 300     # the figures
    python bench/faces.py --data ../shared/fer2013 --source train --scenes 300 --sweep  # choose YuNet's threshold
    python bench/faces.py --data ../shared/fer2013 --calibrate                          # FER_LANDMARKS, margins
    python bench/faces.py --data ../shared/fer2013 --scenes 200 --search                # YuNet at angles and scales
    python bench/faces.py --data ../shared/fer2013 --scenes 200 --detectors mtcnn      # MTCNN (bench/mtcnn_detector.py)

--calibrate and --sweep use train faces only: the publictest scenes are measured, never tuned on.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("FER_ROOT", str(ROOT))

from model_card import load_split  # noqa: E402
from scenes import GroundTruth, make_scene, usable_faces  # noqa: E402

from fer.runtime.faces import FaceDetector  # noqa: E402
from fer.runtime.yunet import MODEL_FILE as YUNET_FILE  # noqa: E402
from fer.runtime.yunet import Detection  # noqa: E402

DETECTORS = ("yunet", "yunet_fer", "haar", "lbp")  # the package's; "mtcnn" (bench/mtcnn_detector.py) when asked for


def make_detector(name: str, yunet_file: str | None = None, **options):
    """The package's detector of that name, or MTCNN (bench/mtcnn_detector.py: of the options, align and margin).
    yunet_file: another YuNet .onnx for "yunet" (e.g. one from scripts/finetune_yunet.py); None: the bundled one."""
    if name == "yunet" and yunet_file:
        options["model_file"] = yunet_file
    if name == "mtcnn":
        from mtcnn_detector import MTCNNDetector

        return MTCNNDetector(**{k: v for k, v in options.items() if k in ("align", "margin")})
    return FaceDetector(name, **options)


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter = max(0.0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return inter / (aw * ah + bw * bh - inter)


def crop_region(box, margin: float):
    """The square the pipeline crops for a box (grown by the detector's margin): what is compared with the face's
    own square, so that detectors with tighter or looser boxes are judged alike."""
    x, y, w, h = box
    side = max(w, h) * (1 + 2 * margin)
    return (x + w / 2 - side / 2, y + h / 2 - side / 2, side, side)


def match(found: list[Detection], truth: list[GroundTruth], margin: float, threshold: float = 0.5):
    """Greedy one-to-one matching by IoU (best pairs first): [(detection index, truth index)]."""
    pairs = sorted(((iou(crop_region(d.box, margin), t.square), i, j) for i, d in enumerate(found)
                    for j, t in enumerate(truth)), reverse=True)
    used_d, used_t, out = set(), set(), []
    for v, i, j in pairs:
        if v >= threshold and i not in used_d and j not in used_t:
            used_d.add(i)
            used_t.add(j)
            out.append((i, j))
    return out


def placement(square, angle: float) -> np.ndarray:
    """2x3: the face's square (its own pixels, unturned) -> the scene, turned by `angle` about its centre, as
    bench/scenes.py placed it."""
    x, y, side, _ = square
    m = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
    m[:, 2] += (x, y)
    return m


def truth_crop(gray: np.ndarray, t: GroundTruth, level: bool = True) -> np.ndarray:
    """The face as the scene shows it (light, blur, cover and all), cut from its true square, turned back upright
    when `level`, at 48x48: what a perfect detector and aligner would hand the classifier."""
    m = placement(t.square, t.angle if level else 0.0)
    s = int(round(t.square[2]))
    face = cv2.warpAffine(gray, m, (s, s), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(face, (48, 48), interpolation=cv2.INTER_AREA if s > 48 else cv2.INTER_CUBIC)


def truth_correct(scenes, classify, level: bool) -> np.ndarray:
    """Per true face (in scene order), whether its true-square crop is classified right."""
    crops, labels = [], []
    for img, truth in scenes:
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        crops += [truth_crop(gray, t, level) for t in truth]
        labels += [t.label for t in truth]
    return classify(np.stack(crops)).argmax(axis=1) == np.array(labels)


def split_faces(data: Path, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The source's faces and labels, and which of them are usable in scenes (not blank)."""
    faces, labels = load_split(data, "train" if source == "val" else source)
    if source == "val":  # the train faces that training holds out (conf/data/default.yaml: 10%, split_seed 0)
        from fer.data.splits import stratified_split

        _, val = stratified_split(labels, 0.1, 0)
        faces, labels = faces[val], labels[val]
    keep, blank = usable_faces(faces)
    print(f"{source}: {len(faces)} faces, {blank} blank ones left out of the scenes")
    return faces, labels, keep


def make_scenes(faces: np.ndarray, labels: np.ndarray, keep: np.ndarray, n: int, seed: int,
                without: frozenset[str] = frozenset()) -> list:
    rng = np.random.default_rng(seed)
    return [make_scene(rng, faces[keep], labels[keep], np.flatnonzero(keep), without) for _ in range(n)]


def scenes_for(data: Path, source: str, n: int, seed: int):
    faces, labels, keep = split_faces(data, source)
    return make_scenes(faces, labels, keep, n, seed), faces, labels


def evaluate(detector: FaceDetector, scenes, classify=None, faces=None, labels=None, min_score: float = 0.0,
             truth_ok: np.ndarray | None = None):
    """Recall, precision and ms of `detector` on `scenes`; with `classify`, the accuracies too (truth_ok: per true
    face, whether its true-square crop is classified right, from truth_correct)."""
    tp = fp = n_true = correct = 0
    crop_seconds = 0.0
    times, hits = [], []  # hits: per true face, (side, |angle|, covered, found)
    detector.find(scenes[0][0])  # warm-up: ONNX Runtime's first run prepares its kernels
    for img, truth in scenes:
        t0 = time.perf_counter()
        found = [d for d in detector.find(img) if d.score >= min_score]
        times.append(time.perf_counter() - t0)
        pairs = match(found, truth, detector.margin)
        found_truth = {j for _, j in pairs}
        hits += [(t.square[2], abs(t.angle), t.covered, j in found_truth) for j, t in enumerate(truth)]
        tp += len(pairs)
        fp += len(found) - len(pairs)
        n_true += len(truth)
        if classify is not None and pairs:
            gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            t0 = time.perf_counter()
            crops = np.stack([detector.crop(gray, found[i]) for i, _ in pairs])
            crop_seconds += time.perf_counter() - t0
            preds = classify(crops).argmax(axis=1)
            correct += int(sum(p == truth[j].label for p, (_, j) in zip(preds, pairs)))
    out = dict(recall=tp / n_true, precision=tp / max(1, tp + fp), faces=n_true, found=tp, false=fp,
               ms=1000 * float(np.median(times)), correct=correct, hits=np.array(hits, dtype=float),
               crop_ms=1000 * crop_seconds / max(1, tp))
    if classify is not None:
        idx = np.array([t.index for _, truth in scenes for t in truth])
        out["crop_acc"] = float((classify(faces[idx]).argmax(axis=1) == labels[idx]).mean())
        out["e2e_found"] = correct / max(1, tp)  # accuracy on the faces found
        out["e2e_all"] = correct / n_true  # a missed face counts as wrong: what users get
        found_mask = out["hits"][:, 3] == 1  # the same faces through a perfect detector, and as FER2013 has them
        out["truth_found"] = float(truth_ok[found_mask].mean()) if truth_ok is not None else float("nan")
        out["crop_found"] = float((classify(faces[idx[found_mask]]).argmax(axis=1) == labels[idx[found_mask]]).mean())
    return out


def search_table(scenes, threads: int | None, yunet_file: str | None = None) -> None:
    """YuNet searched at angles (turns) and scales (upscale): how much of what it misses on these scenes search
    alone recovers, at one detector pass per angle."""
    print("| YuNet searched | score threshold | recall | precision | ms / 640x480 |\n|---|---|---|---|---|")
    for how, turns, upscale in [("as is", (), 1.0), ("turned by -30, 0, 30 deg", (-30.0, 30.0), 1.0),
                                ("upscale=2", (), 2.0), ("both", (-30.0, 30.0), 2.0)]:
        det = make_detector("yunet", yunet_file, score_threshold=0.2, upscale=upscale, threads=threads, turns=turns)
        for t in (0.3, 0.45, 0.6, 0.75):
            r = evaluate(det, scenes, min_score=t)
            print(f"| {how} | {t:.2f} | {r['recall']:.3f} | {r['precision']:.3f} | {r['ms']:.1f} |", flush=True)


def recall_by_condition(hits: np.ndarray) -> str:
    """The last column's mean per face size, rotation and cover: recall when it says found (where a detector loses
    faces), accuracy when it says right."""
    sizes, angles = [(24, 40), (40, 70), (70, 120), (120, 201)], [(0, 15), (15, 30), (30, 46)]
    groups = [(f"{lo}-{min(hi, 200)} px", (hits[:, 0] >= lo) & (hits[:, 0] < hi)) for lo, hi in sizes]
    groups += [(f"turned {lo}-{min(hi, 45)} deg", (hits[:, 1] >= lo) & (hits[:, 1] < hi)) for lo, hi in angles]
    groups += [("covered", hits[:, 2] == 1), ("not covered", hits[:, 2] == 0)]
    return (" | ".join(f"{hits[m, 3].mean():.2f}" if m.any() else "-" for _, m in groups),
            " | ".join(name for name, _ in groups))


def faces_and_conditions(scenes) -> tuple[list[GroundTruth], np.ndarray]:
    """The scenes' faces in order, and per face (side, |angle|, covered): the columns recall_by_condition groups by."""
    truth = [t for _, faces_of in scenes for t in faces_of]
    return truth, np.array([(t.square[2], abs(t.angle), t.covered) for t in truth], dtype=float).reshape(-1, 3)


def condition_table(first: str, rows: list[tuple[str, np.ndarray, np.ndarray]]) -> str:
    """A markdown table of per-face flags, in all and by condition: one row per (name, conditions from
    faces_and_conditions, flag per face)."""
    lines = []
    for name, conditions, ok in rows:
        values, names = recall_by_condition(np.column_stack([conditions, ok]))
        lines.append(f"| {name} | {ok.mean():.3f} | {values} |")
    return f"| {first} | all | {names} |\n|---|---|" + "---|" * (names.count("|") + 1) + "\n" + "\n".join(lines)


def gap_by_condition(scenes, classify, faces: np.ndarray, truth_ok: np.ndarray) -> str:
    """Where the faces lose before any detector does, by condition: accuracy on the faces cut from their true squares
    (levelled: a perfect detector), on their FER crops shrunk to the face's side in the scene and brought back to
    48 px (what fewer pixels alone cost), and on the FER crops themselves."""
    truth, conditions = faces_and_conditions(scenes)
    sides = [min(48, int(round(t.square[2]))) for t in truth]
    shrunk = np.stack([cv2.resize(cv2.resize(faces[t.index], (s, s), interpolation=cv2.INTER_AREA), (48, 48),
                                  interpolation=cv2.INTER_CUBIC) for t, s in zip(truth, sides)])
    idx, right = np.array([t.index for t in truth]), np.array([t.label for t in truth])
    return condition_table("faces", [
        ("cut from the scene (a perfect detector)", conditions, truth_ok),
        ("FER crops shrunk to the face's scene size", conditions, classify(shrunk).argmax(axis=1) == right),
        ("FER crops", conditions, classify(faces[idx]).argmax(axis=1) == right)])


def calibrate(data: Path, names=DETECTORS, n: int = 1000, seed: int = 0) -> None:
    """Where YuNet's landmarks sit on FER2013 train faces, and per detector the margin that grows its box into the
    FER2013 square: each face enlarged 3x, upright, alone on a plain background."""
    faces, _ = load_split(data, "train")
    keep, _ = usable_faces(faces)
    rng = np.random.default_rng(seed)
    idx = rng.choice(np.flatnonzero(keep), size=min(n, int(keep.sum())), replace=False)
    k, pad = 3, 96
    for name in names:
        det = make_detector(name, margin=0.0, min_size=20)
        points, margins, found = [], [], 0
        for i in idx:
            big = cv2.resize(faces[i], (48 * k, 48 * k), interpolation=cv2.INTER_CUBIC)
            canvas = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=int(np.median(big)))
            square = (pad, pad, 48 * k, 48 * k)
            hits = [d for d in det.find(canvas) if iou(d.box, square) > 0.3]
            if not hits:
                continue
            d = max(hits, key=lambda d: iou(d.box, square))
            found += 1
            margins.append((48 * k / max(d.box[2:]) - 1) / 2)
            if d.landmarks is not None:
                points.append((d.landmarks - pad) / k)
        print(f"{name}: found {found}/{len(idx)} upright faces; margin to the FER square: median "
              f"{np.median(margins):.3f} (IQR {np.percentile(margins, 25):.3f}..{np.percentile(margins, 75):.3f})")
        if points:
            template = np.median(np.stack(points), axis=0)
            print("  FER_LANDMARKS =", np.array2string(template, precision=1, separator=", "))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "fer2013")
    ap.add_argument("--source", default="publictest", choices=["train", "val", "publictest"],
                    help="whose faces fill the scenes: val (the train faces training held out) to compare models")
    ap.add_argument("--scenes", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="an exported .onnx (default: the bundled model)")
    ap.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=[*DETECTORS, "mtcnn"],
                    help="mtcnn: beside the package's, with facenet-pytorch installed (bench/mtcnn_detector.py)")
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--sweep", action="store_true", help="YuNet's precision and recall per score threshold")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--search", action="store_true", help="YuNet searched at angles and scales: what search recovers")
    ap.add_argument("--yunet-file", default=None, help="another YuNet .onnx (default: the one in the package)")
    args = ap.parse_args()
    cv2.setNumThreads(args.threads or os.cpu_count() or 1)
    if args.calibrate:
        calibrate(args.data, args.detectors, seed=args.seed)
        return
    if args.sweep and args.source != "train":
        sys.exit("--sweep chooses a threshold: it runs on --source train only")
    scenes, faces, labels = scenes_for(args.data, args.source, args.scenes, args.seed)
    if args.search:
        search_table(scenes, args.threads, args.yunet_file)
        return
    if args.sweep:
        det = make_detector("yunet", args.yunet_file, score_threshold=0.3, threads=args.threads)
        print("| score threshold | recall | precision |\n|---|---|---|")
        for t in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
            r = evaluate(det, scenes, min_score=t)
            print(f"| {t:.1f} | {r['recall']:.3f} | {r['precision']:.3f} |")
        return
    from fer.runtime import ExpressionModel

    model = ExpressionModel(args.model, args.threads)
    n_faces = sum(len(truth) for _, truth in scenes)
    print(f"{len(scenes)} scenes, {n_faces} FER2013 {args.source} faces (seed {args.seed}), model {model.path.name}, "
          f"YuNet file {os.path.basename(args.yunet_file or YUNET_FILE)}\n")
    truth_ok = {level: truth_correct(scenes, model.predict_proba, level) for level in (True, False)}
    for level, what in ((True, "levelled"), (False, "as turned")):
        print(f"all faces cut from their true square, {what} (a perfect detector): accuracy "
              f"{truth_ok[level].mean():.3f}")
    print("\nAccuracy by condition, before any detector\n\n"
          + gap_by_condition(scenes, model.predict_proba, faces, truth_ok[True]))
    breakdown = []
    print("\n| detector | crops | recall | precision | ms / 640x480 | ms / face crop | accuracy on found faces | "
          "end to end "
          "(missed = wrong) | accuracy on the FER crops | found faces: true square, levelled | found faces: FER "
          "crops |\n|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.detectors:
        variants = ([("levelled, aligned", True, True, 1.0, ()), ("aligned on its landmarks", True, False, 1.0, ()),
                     ("box + margin", False, False, 1.0, ()), ("levelled, aligned, upscale=2", True, True, 2.0, ()),
                     ("levelled, aligned, turns -30 30", True, True, 1.0, (-30.0, 30.0))]
                    if name == "yunet" else [("levelled, aligned", True, True, 1.0, ()),
                                             ("levelled, aligned, turns -30 30", True, True, 1.0, (-30.0, 30.0))]
                    if name == "yunet_fer" else [("aligned on its landmarks", True, False, 1.0, ()),
                                             ("box + margin", False, False, 1.0, ())]
                    if name == "mtcnn" else [("box + margin", False, False, 1.0, ())])
        for how, align, level, upscale, turns in variants:
            det = make_detector(name, args.yunet_file, align=align, upscale=upscale, threads=args.threads, level=level,
                                turns=turns)
            r = evaluate(det, scenes, model.predict_proba, faces, labels, truth_ok=truth_ok[True])
            print(f"| {name} | {how} | {r['recall']:.3f} | {r['precision']:.3f} | {r['ms']:.1f} | "
                  f"{r['crop_ms']:.1f} | "
                  f"{r['e2e_found']:.3f} | {r['e2e_all']:.3f} | {r['crop_acc']:.3f} | {r['truth_found']:.3f} | "
                  f"{r['crop_found']:.3f} |", flush=True)
            values, names = recall_by_condition(r["hits"])
            breakdown.append(f"| {name} | {how} | {values} |")
    print(f"\nRecall by condition\n\n| detector | crops | {names} |\n|---|---|" + "---|" * (names.count("|") + 1))
    print("\n".join(breakdown))


if __name__ == "__main__":
    main()
