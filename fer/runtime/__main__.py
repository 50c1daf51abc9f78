"""python -m fer.runtime MODEL.onnx INPUT... [--output predictions.csv] [--overwrite] [--tta] [--faces]
                     [--every N | --fps F]

Classify images, folders of images, the faces in photos (--faces), or a video / camera:N, with an exported model,
without torch: one CSV row per image (or face). predict.py ckpt=MODEL.onnx does the same with all of predict.py's
options; this is the small, fast path (start-up: well under a second).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

from fer.data.manifest import IMAGE_EXTENSIONS
from fer.data.names import output_names
from fer.errors import DataError, UserError


def _files(inputs: list[str]) -> list[Path]:
    files: list[Path] = []
    for spec in inputs:
        p = Path(spec).expanduser()
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"input not found: {p}")
    return files


def _write(path: Path, header: list[str], rows: list[list], overwrite: bool) -> None:
    _write_check(path, overwrite)  # checked before any model is loaded, and again here
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            csv.writer(fh).writerows([header, *rows])
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_check(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise UserError(f"--output {path} exists; give another path, or --overwrite to replace it")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fer.runtime", description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="an ONNX file written by export.py")
    ap.add_argument("inputs", nargs="+", help="image files, folders, one video file, or camera:N")
    ap.add_argument("--output", default="predictions.csv")
    ap.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    ap.add_argument("--tta", action="store_true", help="average with the mirror and four 2-px shifts")
    ap.add_argument("--faces", action="store_true", help="find the faces in the photos first (one row per face)")
    ap.add_argument("--every", type=int, default=1, help="video: every Nth frame")
    ap.add_argument("--fps", type=float, default=None, help="video: this many frames per second")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    try:
        _write_check(Path(args.output), args.overwrite)
        from fer.runtime import ExpressionModel
        from fer.runtime.video import classify_video, is_video

        model = ExpressionModel(args.model, args.threads)
        names = list(model.class_names)
        if len(args.inputs) == 1 and is_video(args.inputs[0]):
            rows = [[r.frame, f"{r.time:.3f}", r.face_id, *r.box, r.label, *(f"{v:.6f}" for v in r.probabilities)]
                    for r in classify_video(lambda crops: model.predict_proba(crops, tta=args.tta), args.inputs[0],
                                            args.every, args.fps)]
            header = ["frame", "time", "face_id", "x", "y", "w", "h", "label", *names]
        elif args.faces:
            rows, header = [], ["image", "face", "x", "y", "w", "h", "label", *names]
            files = _files(args.inputs)
            for f, shown in zip(files, output_names([str(f) for f in files])):
                for k, face in enumerate(model.find_faces(f, tta=args.tta)):
                    rows.append([shown, k, *face.box, face.label, *(f"{face.probabilities[c]:.6f}" for c in names)])
        else:
            files = _files(args.inputs)
            preds = model.classify_files(files, tta=args.tta)
            # names as predict.py writes them: file names, or relative paths where two folders share a file name
            rows = [[shown, p.label, *(f"{p.probabilities[c]:.6f}" for c in names)]
                    for shown, p in zip(output_names([str(f) for f in files]), preds)]
            header = ["image", "label", *names]
        _write(Path(args.output), header, rows, args.overwrite)
    except (DataError, UserError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({len(rows)} rows) with {model.info.model} ({model.info.quantized} quantisation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
