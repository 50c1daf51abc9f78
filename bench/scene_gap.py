"""What each degradation of the generated scenes costs the classifier, before any detector: the accuracy of a perfect
detector (each face cut from its true square, levelled) on the same scenes with one degradation left out at a time
(bench/scenes.py DEGRADATIONS: the same faces, places and sizes, every random number still drawn), by face size,
turn and cover. Where the end-to-end target (within 3 points of the FER crops) is lost, and what training for it
would have to win back.

    python bench/scene_gap.py --data ../shared/fer2013 --source val --scenes 300
    python bench/scene_gap.py --source val --scenes 1000 --seed 1 --model new.onnx --against old.onnx   # paired
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from faces import (ROOT, condition_table, faces_and_conditions, make_scenes, split_faces,  # noqa: E402
                   truth_correct)
from scenes import DEGRADATIONS  # noqa: E402


def ablation_table(data: Path, source: str, n: int, seed: int, classify) -> str:
    """One row per set of degradations left out (none, each alone, all): a perfect detector's accuracy, in all and
    by condition (a face's condition as it is in that variant: without turn, every face is upright), with the FER
    crops of the same faces last, by their conditions as generated."""
    variants = [("as generated", ()), *[(f"without {d}", (d,)) for d in DEGRADATIONS],
                ("without any of them", DEGRADATIONS)]
    faces, labels, keep = split_faces(data, source)
    rows = []
    for name, without in variants:
        scenes = make_scenes(faces, labels, keep, n, seed, frozenset(without))
        truth, conditions = faces_and_conditions(scenes)
        rows.append((name, conditions, truth_correct(scenes, classify, level=True)))
    idx = np.array([t.index for t in truth])  # the same faces in every variant
    generated = rows[0][1]  # the faces' conditions as generated
    rows.append(("their FER crops", generated, classify(faces[idx]).argmax(axis=1) == labels[idx]))
    return condition_table("scenes", rows)


SIZES = ((24, 40), (40, 70), (70, 120), (120, 201))


def paired_table(data: Path, source: str, n: int, seed: int, classify, against) -> str:
    """Two models on the same faces of the scenes as generated: a perfect detector's accuracy and the FER crops',
    each model's and their difference with its paired standard error (the same faces, so the difference is far
    less noisy than either accuracy), then the perfect detector by face size."""
    faces, labels, keep = split_faces(data, source)
    scenes = make_scenes(faces, labels, keep, n, seed)
    truth, _ = faces_and_conditions(scenes)
    idx = np.array([t.index for t in truth])
    sides = np.array([t.square[2] for t in truth])
    right = {}
    for name, model in (("model", classify), ("against", against)):
        right[name] = (truth_correct(scenes, model, level=True), model(faces[idx]).argmax(axis=1) == labels[idx])
    rows = [f"{len(truth)} faces ({len(np.unique(idx))} distinct)\n",
            "| faces | --model | --against | difference | paired standard error |", "|---|---|---|---|---|"]
    groups = [("cut from the scene (a perfect detector)", 0, slice(None)), ("FER crops", 1, slice(None))]
    groups += [(f"cut from the scene, {lo}-{hi - 1 if hi == 201 else hi} px", 0, (sides >= lo) & (sides < hi))
               for lo, hi in SIZES]
    for name, k, which in groups:
        diff = right["model"][k][which].astype(float) - right["against"][k][which]
        se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        rows.append(f"| {name} | {right['model'][k][which].mean():.3f} | {right['against'][k][which].mean():.3f} | "
                    f"{diff.mean():+.3f} | {se:.3f} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "fer2013")
    ap.add_argument("--source", default="val", choices=["train", "val", "publictest"])
    ap.add_argument("--scenes", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="an exported .onnx (default: the bundled model)")
    ap.add_argument("--against", default=None,
                    help="another .onnx: the two models paired on the scenes as generated, instead of the ablation")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    cv2.setNumThreads(args.threads or os.cpu_count() or 1)
    from fer.runtime import ExpressionModel

    model = ExpressionModel(args.model, args.threads)
    if args.against:
        other = ExpressionModel(args.against, args.threads)
        print(f"{args.scenes} scenes of FER2013 {args.source} faces (seed {args.seed}): --model {model.path.name} "
              f"against {other.path.name}")
        print(paired_table(args.data, args.source, args.scenes, args.seed, model.predict_proba, other.predict_proba))
        return
    print(f"{args.scenes} scenes of FER2013 {args.source} faces (seed {args.seed}), model {model.path.name}; "
          "a perfect detector's accuracy (faces cut from their true squares, levelled)\n")
    print(ablation_table(args.data, args.source, args.scenes, args.seed, model.predict_proba))


if __name__ == "__main__":
    main()
