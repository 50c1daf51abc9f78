"""How far the crops of YuNet's detectors are from each face's true square on the generated scenes: the turn, scale
and centre of the similarity transform each crop is cut by (fer.runtime.faces.FaceDetector.crop_landmarks, aligned
as align_face aligns them), against the transform that cuts the face's own square upright (what bench/faces.py's
perfect detector hands the classifier). Beside it, accuracy on the same faces. The errors are far less noisy than
accuracy, so levelling and alignment can be judged on them first (docs/BENCHMARKS.md, "Levelling with yunet_fer").

    python bench/alignment.py --data ../shared/fer2013 --source val --scenes 1000 --seed 2
    python bench/alignment.py --source val --scenes 300 --detectors yunet_fer --yunet-file other.onnx

Choices are made on val scenes (the train faces training held out), never on publictest ones.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from faces import ROOT, match, placement, scenes_for, truth_correct  # noqa: E402

from fer.runtime.faces import FER_LANDMARKS, FaceDetector  # noqa: E402

TURN_BANDS = ((0, 15), (15, 30), (30, 45.01))  # |degrees| the face is turned by in the scene


def truth_matrix(square: tuple[float, float, float, float], angle: float) -> np.ndarray:
    """3x3: scene pixels -> the 48x48 crop of the face's own square, turned upright (bench/faces.py truth_crop)."""
    return np.vstack([cv2.invertAffineTransform(placement(square, angle)) * (48.0 / square[2]), [0.0, 0.0, 1.0]])


def crop_error(landmarks: np.ndarray, square, angle: float) -> tuple[float, float, float]:
    """(turn in degrees, log of the scale, shift of the centre in crop pixels) of the crop aligned on `landmarks`
    against the true square's crop; zeros for a crop cut exactly from it. NaNs where no transform fits."""
    fit, _ = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), FER_LANDMARKS, method=cv2.LMEDS)
    if fit is None:
        return float("nan"), float("nan"), float("nan")
    error = np.vstack([fit, [0.0, 0.0, 1.0]]) @ np.linalg.inv(truth_matrix(square, angle))  # true crop -> this crop
    centre = error[:2, :2] @ [24.0, 24.0] + error[:2, 2] - 24.0
    return (float(np.degrees(np.arctan2(error[1, 0], error[0, 0]))), float(np.log(np.hypot(error[0, 0], error[1, 0]))),
            float(np.hypot(*centre)))


def measure(detector: FaceDetector, scenes, classify, truth_ok: np.ndarray) -> dict[str, np.ndarray]:
    """Per face found (matched at IoU >= 0.5): its crop's errors [k, 3], the face's turn in the scene, whether its
    crop is classified right, and whether its true square's is (truth_ok: per true face, in scene order)."""
    errors, angles, right, truth_right = [], [], [], []
    nan = (float("nan"),) * 3
    first = 0  # index of the scene's first face in truth_ok
    for img, truth in scenes:
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        found = detector.find(img)
        pairs = match(found, truth, detector.margin)
        if pairs:
            # the crops users get (crop() levels again: twice the time, and no copy of its logic here)
            crops = np.stack([detector.crop(gray, found[i]) for i, _ in pairs])
            right += list(classify(crops).argmax(axis=1) == [truth[j].label for _, j in pairs])
            for i, j in pairs:
                landmarks = detector.crop_landmarks(gray, found[i])
                errors.append(nan if landmarks is None else crop_error(landmarks, truth[j].square, truth[j].angle))
                angles.append(truth[j].angle)
                truth_right.append(truth_ok[first + j])
        first += len(truth)
    return dict(errors=np.array(errors, float).reshape(-1, 3), angles=np.array(angles, float),
                right=np.array(right, bool), truth_right=np.array(truth_right, bool))


def row(name: str, m: dict[str, np.ndarray]) -> str:
    turn, scale, shift = np.abs(m["errors"]).T
    bands = [turn[(np.abs(m["angles"]) >= lo) & (np.abs(m["angles"]) < hi)] for lo, hi in TURN_BANDS]
    cells = [f"{len(m['right'])}", f"{m['right'].mean():.3f}", f"{m['truth_right'].mean():.3f}",
             f"{np.nanmean(turn):.2f} ({np.nanmedian(turn):.2f})", *[f"{np.nanmean(b):.2f}" for b in bands],
             f"{np.nanmean(scale):.3f}", f"{np.nanmean(shift):.2f}"]
    return f"| {name} | " + " | ".join(cells) + " |"


HEADER = ("| detector | faces found | accuracy on them | their true squares | turn error, deg: mean (median) | "
          + " | ".join(f"turned {lo:.0f}-{hi:.0f} deg" for lo, hi in TURN_BANDS)
          + " | scale error (abs log) | centre error (px of 48) |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "fer2013")
    ap.add_argument("--source", choices=["train", "val", "publictest"], default="val")
    ap.add_argument("--scenes", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="an exported .onnx (default: the bundled model)")
    ap.add_argument("--detectors", nargs="+", choices=["yunet", "yunet_fer"], default=["yunet_fer", "yunet"])
    ap.add_argument("--yunet-file", default=None, help="another YuNet .onnx for every detector named")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    os.environ.setdefault("FER_ROOT", str(ROOT))
    from fer.runtime.model import ExpressionModel

    scenes, _, _ = scenes_for(args.data, args.source, args.scenes, args.seed)
    model = ExpressionModel(args.model, args.threads)
    truth_ok = truth_correct(scenes, model.predict_proba, level=True)
    print(f"{len(scenes)} scenes, {len(truth_ok)} FER2013 {args.source} faces (seed {args.seed}), model "
          f"{model.path.name}\n\n{HEADER}\n|" + "---|" * (HEADER.count("|") - 1))
    for name in args.detectors:
        for level in (True, False):
            detector = FaceDetector(name, level=level, threads=args.threads, model_file=args.yunet_file)
            label = f"{name}, {'levelled' if level else 'aligned on its landmarks'}"
            print(row(label, measure(detector, scenes, model.predict_proba, truth_ok)), flush=True)


if __name__ == "__main__":
    main()
