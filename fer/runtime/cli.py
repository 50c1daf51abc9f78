"""fer-classify (or python -m fer.runtime): expressions in images, photos, folders, a video or a camera, with the
bundled model or an exported one, without torch. One CSV row per face crop, or per face found in a photo.

    fer-classify photo.jpg                      # the faces in a photo (boxes, labels, probabilities)
    fer-classify crops/ --output crops.csv      # a folder of face crops, one row each
    fer-classify clip.mp4 --fps 5               # one row per face per sampled frame (or camera:0)
    fer-classify --model my.onnx images/        # a model of your own (python export.py ckpt=...)

--mode auto (default): an image up to 2x the model's input side (96 px) is a face crop, classified as it is; a
larger one is a photo, searched for faces, and a photo without one gets a row saying so. --mode crops classifies
every image whole; --mode faces searches every image. The CSV is predict.py's (fer.runtime.table): the same options
give the same file.
"""

from __future__ import annotations

import argparse
import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from fer.classes import IMAGE_SIZE
from fer.errors import DataError, UserError
from fer.runtime.faces import DETECTORS, FaceDetector
from fer.runtime.table import IMAGE_COLUMNS, LABEL_FORMATS

MODES = ("auto", "crops", "faces")
WHOLE = "face crop, classified whole"


@dataclass
class Scan:
    """Per readable image: its face boxes (a crop: one box, the whole image) and all 48x48 crops in order."""

    files: list[Path] = field(default_factory=list)
    boxes: list[list[tuple[int, int, int, int]]] = field(default_factory=list)
    whole: list[bool] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _scan(model, detector: Callable[[], FaceDetector], files: list[Path], mode: str, skip_bad: bool) -> Scan:
    from fer.runtime.images import read_image

    scan = Scan()
    for path in files:
        try:
            img = read_image(path)
        except DataError as exc:
            if not skip_bad:
                raise DataError(f"{exc} (--skip-bad skips such files, counted and listed)") from exc
            scan.skipped.append((str(path), str(exc)))
            continue
        whole = mode == "crops" or (mode == "auto" and model.is_face_crop(img))
        if whole:
            boxes, crops = [(0, 0, img.shape[1], img.shape[0])], [model.faces_array([img])[0]]  # any bit depth, as decoded
        else:
            boxes, found = detector().faces(img)
            crops = list(found)
        scan.files.append(path)
        scan.boxes.append(boxes)
        scan.whole.append(whole)
        scan.crops += crops
    return scan


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="fer-classify", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("inputs", nargs="+", help="image files, folders (recursively), one video file, or camera:N")
    ap.add_argument("--model", default=None, help="an .onnx file written by export.py (default: the bundled model)")
    ap.add_argument("--output", default="predictions.csv")
    ap.add_argument("--overwrite", action="store_true", help="replace --output even if fer did not write it")
    ap.add_argument("--mode", choices=MODES, default="auto", help="face crops, photos, or decide by size (auto)")
    ap.add_argument("--labels", choices=LABEL_FORMATS, default="name", help="label column: class name or 0-6")
    ap.add_argument("--no-probabilities", dest="probabilities", action="store_false",
                    help="leave out the prob_<class> columns")
    ap.add_argument("--tta", action="store_true", help="average with the mirror and four 2-px shifts")
    ap.add_argument("--skip-bad", action="store_true", help="skip unreadable files (counted and listed) instead "
                                                             "of stopping at the first")
    ap.add_argument("--detector", choices=[d for d in DETECTORS if d != "auto"], default="yunet_fer",
                    help="face detector for photos and video: yunet_fer (default: YuNet that also finds FER2013-style "
                         "grey faces), yunet (as published; both crop levelled and aligned on the landmarks), or the "
                         "Haar / LBP cascade (upright frontal faces only)")
    ap.add_argument("--upscale", type=float, default=1.0,
                    help="search photos at this many times their size (1-4): finds smaller faces, costs time")
    ap.add_argument("--turns", type=float, nargs="+", default=[], metavar="DEG",
                    help="also search photos turned by these angles, e.g. --turns -30 30: finds faces tilted by 45 "
                         "degrees, about four times the detection time")
    ap.add_argument("--every", type=int, default=1, help="video: every Nth frame")
    ap.add_argument("--fps", type=float, default=None, help="video: this many frames per second")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    # before the model became optional, it was the first argument: python -m fer.runtime model.onnx photo.jpg
    if args.model is None and len(args.inputs) > 1 and args.inputs[0].lower().endswith(".onnx"):
        args.model = args.inputs.pop(0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        return _classify(args)
    except (DataError, UserError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _classify(args: argparse.Namespace) -> int:
    from fer.runtime.images import list_inputs
    from fer.runtime.output_guard import OutputGuard, default_ledger
    from fer.runtime.table import face_table, output_names, prediction_table, video_table, write_csv_atomic
    from fer.runtime.video import classify_video, is_video

    output = Path(args.output).expanduser()
    guard = OutputGuard(default_ledger(), args.overwrite)
    guard.check(output)  # before the model is loaded: a refused output costs nothing
    from fer.runtime import ExpressionModel

    model = ExpressionModel(args.model, args.threads)
    # opened on first use: a folder of face crops never pays for the detector's session (~60 ms)
    detector = functools.cache(lambda: FaceDetector(args.detector, upscale=args.upscale, threads=args.threads,
                                                    turns=args.turns))
    summary = ""
    if len(args.inputs) == 1 and is_video(args.inputs[0]):
        rows = list(classify_video(lambda crops: model.predict_proba(crops, tta=args.tta), args.inputs[0],
                                   args.every, args.fps, detector()))
        header, table = video_table(rows, args.labels, args.probabilities)
        summary = f"{len(rows)} faces in the sampled frames"
    else:
        scan = _scan(model, detector, list_inputs(args.inputs), args.mode, args.skip_bad)
        if not scan.files:
            raise DataError(f"none of the {len(scan.skipped)} input file(s) could be read")
        crops = np.stack(scan.crops) if scan.crops else np.empty((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        probs = model.predict_proba(crops, tta=args.tta)
        names = output_names([str(f) for f in scan.files])
        if all(scan.whole):  # face crops only: one row per image
            header, table = prediction_table(names, probs, IMAGE_COLUMNS, args.labels, args.probabilities)
            summary = f"{len(names)} face crops"
        else:
            header, table = face_table(names, scan.boxes, probs, args.labels, args.probabilities,
                                       [WHOLE if w else "" for w in scan.whole])
            no_face = sum(1 for b in scan.boxes if not b)
            summary = (f"{len(scan.crops)} face(s) in {len(names)} images" +
                       (f"; no face found in {no_face} (rows with face -1)" if no_face else ""))
        if scan.skipped:
            print(f"skipped {len(scan.skipped)} unreadable file(s):", file=sys.stderr)
            for name, reason in scan.skipped:
                print(f"  {reason}", file=sys.stderr)
            summary += f"; {len(scan.skipped)} unreadable file(s) skipped"
    write_csv_atomic(output, header, table, guard)
    print(f"wrote {output} ({len(table)} rows): {summary}; model {model.path.name} ({model.info.model}"
          f"{'' if model.info.quantized == 'none' else ', ' + model.info.quantized})")
    return 0
