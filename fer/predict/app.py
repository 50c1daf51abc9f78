"""What `python predict.py` does: resolve checkpoints, read the images (through the cache), predict (optionally
with TTA / an ensemble), write the CSV atomically and print a short summary."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fer.classes import CLASS_NAMES, NUM_CLASSES
from fer.cli import UserError, check_recipe_for
from fer.data.errors import DataError
from fer.predict.resolve import resolve_all
from fer.predict.submission import (
    DEFAULT_COLUMNS,
    PROB_COLUMNS,
    challenge_columns,
    check_label_format,
    format_label,
    output_names,
    prediction_table,
    write_csv_atomic,
)

log = logging.getLogger(__name__)

_TEST_SPLITS = ("test", "publictest", "privatetest")
FACE_COLUMNS = ("image", "face", "x", "y", "w", "h", "label")


@dataclass
class PredictResult:
    output: Path
    names: list[str]  # CSV order (images, or photos with a face index for face_detect)
    probs: np.ndarray  # [rows with a prediction, 7] in CSV order
    counts: dict[str, int]
    seconds: dict[str, float]
    images_per_s: float
    split: str | None = None
    accuracy: float | None = None
    f1_macro: float | None = None
    skipped: int = 0
    skipped_file: str | None = None
    resized: int = 0
    color: int = 0
    rows: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [str(value)] if str(value).strip() else []
    try:
        return [str(v) for v in value]
    except TypeError:
        return [str(value)]


def choose_split(cache, wanted: str | None) -> str:
    """`split=auto`: the unlabelled "predict" split if there is one, else the first test split."""
    present = [s for s in cache.split_names if len(cache.split_indices(s))]
    if wanted and wanted != "auto":
        if wanted not in present:
            raise UserError(f"split={wanted}: not in the data (splits: {', '.join(present)})")
        return wanted
    for name in ("predict", *_TEST_SPLITS):
        if name in present:
            return name
    raise UserError(f"nothing to predict: the data has no predict or test split (splits: {', '.join(present)}); "
                    "name one with split=..., or give images with input=PATH")


def _metrics(labels: np.ndarray, preds: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import f1_score

    accuracy = float((labels == preds).mean())
    return accuracy, float(f1_score(labels, preds, average="macro", zero_division=0))


def _counts(preds: np.ndarray) -> dict[str, int]:
    n = np.bincount(preds, minlength=NUM_CLASSES) if len(preds) else np.zeros(NUM_CLASSES, dtype=int)
    return {CLASS_NAMES[i]: int(n[i]) for i in range(NUM_CLASSES)}


def run_predict(cfg, started: float | None = None) -> PredictResult:
    """cfg: the composed conf/predict.yaml. started: perf_counter() at process start (for the start-up time)."""
    from omegaconf import OmegaConf

    t_start = time.perf_counter()
    seconds: dict[str, float] = {"start-up": t_start - started} if started else {}
    check_recipe_for(cfg, "predict")
    if OmegaConf.is_missing(cfg, "ckpt") or not _as_list(cfg.ckpt):
        raise UserError("which model? ckpt=PATH.ckpt, a train.py run folder, an MLflow run id, runs:/<id>, best, "
                        "or a list [a,b] for an ensemble")
    check_label_format(cfg.label_format)
    if cfg.tta_shift < 0:
        raise UserError(f"tta_shift must be >= 0 pixels, got {cfg.tta_shift}")
    weights_choice = parse_ensemble_weights(cfg.get("ensemble_weights"), len(_as_list(cfg.ckpt)))
    inputs = _as_list(cfg.get("input"))
    if cfg.face_detect and not inputs:
        raise UserError("face_detect=true needs photos: input=photo.jpg, input=FOLDER or input=[a.jpg,b.jpg]")

    # everything that can be wrong with the call is checked before torch and Lightning are imported (seconds):
    # checkpoints exist and are zip files, the images are listed (and cached), faces found
    t = time.perf_counter()
    resolved = resolve_all(_as_list(cfg.ckpt), cfg.tracking_uri, cfg.experiment_name,
                           Path(cfg.paths.cache_dir) / "checkpoints")
    for r in resolved:
        log.info("checkpoint: %s", r.describe())
    seconds["resolve"] = time.perf_counter() - t
    t = time.perf_counter()
    if cfg.face_detect:
        data = _scan_faces(cfg, inputs)
        seconds["faces"] = time.perf_counter() - t
    else:
        data = _read_images(cfg, inputs)
        seconds["data"] = time.perf_counter() - t

    t = time.perf_counter()
    import fer.models.loading  # noqa: F401 - torch + Lightning: most of the start-up, timed on its own
    from fer.predict.engine import predict_array, select_device, select_precision
    from fer.predict.ensemble import load_ensemble

    seconds["imports"] = time.perf_counter() - t
    if cfg.get("num_threads"):
        import torch

        torch.set_num_threads(int(cfg.num_threads))
    device = select_device(cfg.device)
    dtype = select_precision(cfg.precision, device)
    t = time.perf_counter()
    model = load_ensemble([r.path for r in resolved], device)
    seconds["model load"] = time.perf_counter() - t
    weights_info = None
    if isinstance(weights_choice, list):
        model.set_weights(weights_choice)
        weights_info = {"how": "given"}
    elif weights_choice == "val" and len(model) == 1:
        log.info("ensemble_weights=val: one checkpoint, nothing to weigh")
    elif weights_choice == "val":
        t = time.perf_counter()
        # the data source's cache is open already unless the images came from input= or photos
        cache = data.cache if not (cfg.face_detect or inputs) else None
        weights_info = _fit_weights_on_val(cfg, model, resolved, device, dtype, cache)
        seconds["weights on val"] = time.perf_counter() - t

    t = time.perf_counter()
    images, idx = (data.crops, None) if cfg.face_detect else (data.cache.images, data.idx)
    probs = predict_array(model, images, idx, cfg.batch_size, device, dtype, cfg.tta,
                          cfg.tta_shift if cfg.tta_shifts else 0, cfg.progress and not cfg.face_detect)
    seconds["predict"] = time.perf_counter() - t

    t = time.perf_counter()
    result = _write_faces(cfg, data, probs, seconds) if cfg.face_detect else _write_images(cfg, data, probs, seconds)
    seconds["csv"] = time.perf_counter() - t
    result.seconds["total"] = time.perf_counter() - t_start + seconds.get("start-up", 0.0)
    result.extra.update(device=str(device), precision="bf16" if dtype is not None else "fp32",
                        models=[r.describe() for r in resolved], model_names=model.names)
    if weights_info:
        result.extra["ensemble_weights"] = dict(weights_info, members=[r.spec for r in resolved],
                                                weights=list(model.weights))
    _print_summary(cfg, result)
    return result


def parse_ensemble_weights(value: Any, n_checkpoints: int) -> str | list[float]:
    """ensemble_weights: equal (default) | val | a list of numbers, one per checkpoint. Checked before any loading."""
    if value is None or (isinstance(value, str) and value in ("equal", "val")):
        return value or "equal"
    values = _as_list(value)
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        numbers = []
    if isinstance(value, str) or len(numbers) != n_checkpoints or min(numbers) < 0 or sum(numbers) <= 0:
        example = ",".join(["1"] * n_checkpoints)
        raise UserError(f"ensemble_weights={value}: expected equal, val (fitted on the val split), or "
                        f"{n_checkpoints} non-negative numbers, one per checkpoint, e.g. [{example}]")
    return numbers


def _data_source(cfg):
    import hydra.utils

    try:
        return hydra.utils.instantiate(cfg.data.source)
    except Exception as exc:  # noqa: BLE001 - Hydra wraps config mistakes in its own errors
        raise UserError(f"data={cfg.data.get('name')}: cannot build the data source ({exc})") from exc


def _fit_weights_on_val(cfg, model, resolved, device, dtype, cache=None) -> dict[str, Any]:
    """ensemble_weights=val: score each member on the val split that training held out (drawn from `data` exactly
    as train.py draws it) with the same TTA, and fit the mixture weights there. The test split stays unseen."""
    from fer.data.cache import open_cache
    from fer.data.datamodule import split_digest, train_val_indices
    from fer.predict.engine import predict_array
    from fer.predict.ensemble import fit_weights

    d = cfg.data
    if cache is None:
        cache = open_cache(_data_source(cfg), cfg.paths.cache_dir, cfg.on_bad_image, cfg.progress)
    _, val = train_val_indices(cache, d.train_split, d.val_fraction, d.split_seed, d.get("name", "the data"))
    if len(val) == 0:
        raise UserError(f"ensemble_weights=val: data={d.get('name')} has an empty val split "
                        f"(data.val_fraction={d.val_fraction})")
    split = f"data={d.get('name')} val_fraction={d.val_fraction} split_seed={d.split_seed}"
    digest, unrecorded = split_digest(cache, val), []
    for r, member in zip(resolved, model.models):
        record = getattr(member, "val_split_record", None)
        if record is None:
            unrecorded.append(r.spec)
        elif record.get("digest") != digest:
            # weights fitted on images a member was trained on would favour that member for no good reason
            raise UserError(f"ensemble_weights=val: {r.spec} was trained with another val split ({record.get('n')} "
                            f"images of {record.get('data')}) than {split} gives ({len(val)} images); give the data "
                            "settings it was trained with, or use ensemble_weights=equal")
    if unrecorded:
        log.warning("ensemble_weights=val: %s record no val split (checkpoints written before fer recorded it); "
                    "assuming they held out the one of %s", ", ".join(unrecorded), split)
    probs = np.stack([predict_array(member, cache.images, val, cfg.batch_size, device, dtype, cfg.tta,
                                    cfg.tta_shift if cfg.tta_shifts else 0, cfg.progress)
                      for member in model.models])
    labels = cache.labels[val]
    weights = fit_weights(probs, labels)
    model.set_weights(weights)

    def acc(p: np.ndarray) -> float:
        return float((p.argmax(1) == labels).mean())

    return {"how": "val", "n_val": int(len(val)), "member_acc": [acc(p) for p in probs],
            "equal_acc": acc(probs.mean(0)), "fitted_acc": acc(np.tensordot(model.weights, probs, axes=1))}


@dataclass
class _Images:
    source: Any
    cache: Any  # fer.data.cache.ImageCache
    split: str
    idx: np.ndarray  # rows of the cache to predict
    names: list[str]  # their names in the CSV
    columns: tuple[str, ...]


def _read_images(cfg, inputs: list[str]) -> _Images:
    """The images to predict, through the cache: input= files/folders, or the data source's split."""
    from fer.data.cache import open_cache
    from fer.data.sources import ImageListSource

    if inputs:
        source = ImageListSource(paths=inputs)
        columns = DEFAULT_COLUMNS
    else:
        source = _data_source(cfg)
        columns = challenge_columns(source) or DEFAULT_COLUMNS
    if cfg.get("columns"):
        columns = tuple(_as_list(cfg.columns))
        if len(columns) != 2:
            raise UserError(f"columns={list(columns)}: give two names, e.g. columns=[id,label]")
    cache = open_cache(source, cfg.paths.cache_dir, cfg.on_bad_image, cfg.progress)
    split = choose_split(cache, None if inputs else cfg.split)
    idx = cache.split_indices(split)
    names_all = cache.names
    return _Images(source, cache, split, idx, output_names([names_all[i] for i in idx]), tuple(columns))


def _write_images(cfg, data: _Images, probs: np.ndarray, seconds: dict[str, float]) -> PredictResult:
    names, idx, cache = data.names, data.idx, data.cache
    header, rows = prediction_table(names, probs, data.columns, cfg.label_format, cfg.probabilities)
    if len(rows) != len(idx):  # never a submission that silently lost images
        raise RuntimeError(f"{len(rows)} CSV rows for {len(idx)} predicted images")
    written = write_csv_atomic(cfg.output, header, rows)
    if written != len(idx):
        raise RuntimeError(f"wrote {written} CSV rows for {len(idx)} predicted images")

    order = np.argsort(np.asarray(names, dtype=object), kind="stable")
    preds = probs.argmax(1) if len(probs) else np.empty(0, dtype=np.int64)
    result = PredictResult(output=Path(cfg.output), names=[names[i] for i in order], probs=probs[order],
                           counts=_counts(preds), seconds=seconds,
                           images_per_s=len(idx) / max(seconds["predict"], 1e-9), split=data.split, rows=written,
                           skipped=int(cache.info.get("skipped", 0)), resized=int(cache.info.get("resized", 0)),
                           color=int(cache.info.get("color", 0)))
    if result.skipped:
        result.skipped_file = str(cache.path / "skipped.csv")
    result.extra.update(source=data.source.name, cache_images=len(cache), columns=list(header))
    labels = cache.labels[idx]
    if len(labels) and (labels >= 0).all():
        result.accuracy, result.f1_macro = _metrics(labels, preds)
    return result


def _scan_faces(cfg, inputs: list[str]):
    from fer.data.sources import ImageListSource
    from fer.predict.faces import FaceDetector, scan_photos

    photos = ImageListSource(paths=inputs).manifest().names  # files and folders listed as for predict
    detector = FaceDetector(cfg.face_detector, cfg.face_min_size, cfg.face_min_neighbors, cfg.face_scale_factor,
                            cfg.face_max_side)
    scan = scan_photos(photos, detector, cfg.face_margin, cfg.on_bad_image, cfg.progress)
    if not scan.photos:
        raise DataError(f"none of the {len(photos)} photo(s) could be read; see the messages above")
    return scan


def _write_faces(cfg, scan, probs: np.ndarray, seconds: dict[str, float]) -> PredictResult:
    from fer.predict.faces import annotate_photo

    shown = output_names(scan.photos)
    starts = np.cumsum([0] + [len(b) for b in scan.boxes])
    header = list(FACE_COLUMNS) + (list(PROB_COLUMNS) if cfg.probabilities else []) + ["note"]
    rows, row_names, row_probs = [], [], []
    for p in sorted(range(len(scan.photos)), key=lambda k: shown[k]):
        boxes = scan.boxes[p]
        if not boxes:
            rows.append([shown[p], -1, "", "", "", "", ""] + [""] * (len(PROB_COLUMNS) * cfg.probabilities)
                        + ["no face detected"])
            continue
        for f, box in enumerate(boxes):
            pr = probs[starts[p] + f]
            row = [shown[p], f, *box, format_label(int(pr.argmax()), cfg.label_format)]
            row += [f"{v:.6f}" for v in pr] if cfg.probabilities else []
            rows.append(row + [""])
            row_names.append(f"{shown[p]}#{f}")
            row_probs.append(pr)
    no_face = sum(1 for b in scan.boxes if not b)
    if len(rows) != scan.n_faces + no_face:
        raise RuntimeError(f"{len(rows)} CSV rows for {scan.n_faces} faces and {no_face} photos without one")
    written = write_csv_atomic(cfg.output, header, rows)
    skipped_file = None
    if len(scan.skipped):
        out = Path(cfg.output).expanduser()
        skipped_file = out.with_name(f"{out.stem}_skipped.csv")
        scan.skipped.write(skipped_file)
    annotated = []
    if cfg.get("annotate"):
        folder = Path(cfg.annotate).expanduser()
        for p, photo in enumerate(scan.photos):
            annotated.append(str(annotate_photo(photo, scan.boxes[p], probs[starts[p]:starts[p + 1]],
                                                folder / shown[p])))

    stacked = np.stack(row_probs) if row_probs else np.empty((0, NUM_CLASSES), dtype=np.float32)
    result = PredictResult(output=Path(cfg.output), names=row_names, probs=stacked,
                           counts=_counts(stacked.argmax(1) if len(stacked) else np.empty(0, dtype=np.int64)),
                           seconds=seconds, images_per_s=scan.n_faces / max(seconds["predict"], 1e-9),
                           rows=written, skipped=len(scan.skipped),
                           skipped_file=str(skipped_file) if skipped_file else None)
    result.extra.update(photos=len(scan.photos), faces=scan.n_faces, no_face=no_face, detector=scan.detector,
                        annotated=annotated, columns=header)
    return result


def _print_summary(cfg, r: PredictResult) -> None:
    e = r.extra
    tta = "off" if not cfg.tta else ("flip+shifts" if cfg.tta_shifts else "flip")
    models = " + ".join(e["model_names"])
    if cfg.face_detect:
        what = f"{e['faces']} face(s) in {e['photos']} photo(s) ({e['no_face']} without a face; {e['detector']})"
    else:
        what = f"{r.rows} image(s) ({e['source']}, split {r.split})"
    lines = [f"predicted {what} with {models} on {e['device']} ({e['precision']}, tta {tta})"]
    total = max(sum(r.counts.values()), 1)
    lines.append("  " + ", ".join(f"{k} {v} ({100 * v / total:.1f}%)" for k, v in r.counts.items()))
    parts = ", ".join(f"{k} {v:.2f}s" for k, v in r.seconds.items() if k != "total")
    lines.append(f"  time {r.seconds['total']:.2f}s ({parts}); {r.images_per_s:.0f} images/s in the model")
    w = e.get("ensemble_weights")
    if w:
        mix = ", ".join(f"{name} {weight:.2f}" for name, weight in zip(w["members"], w["weights"]))
        if w["how"] == "val":
            accs = "/".join(f"{a:.4f}" for a in w["member_acc"])
            lines.append(f"  ensemble weights fitted on the val split ({w['n_val']} images): {mix}; val accuracy: "
                         f"members {accs}, equal weights {w['equal_acc']:.4f}, fitted {w['fitted_acc']:.4f}")
        else:
            lines.append(f"  ensemble weights (given): {mix}")
    if r.accuracy is not None:
        lines.append(f"  accuracy {r.accuracy:.4f}, macro-F1 {r.f1_macro:.4f} (split {r.split} has labels)")
    if r.skipped:
        lines.append(f"  skipped {r.skipped} unreadable image(s), listed in {r.skipped_file}")
    if r.resized or r.color:
        lines.append(f"  converted on reading: {r.resized} resized to 48x48, {r.color} colour -> grayscale "
                     f"(counts over the {e.get('cache_images', '')} images of the cache entry)"
                     + ("; photos rather than face crops? face_detect=true finds and crops the faces first"
                        if r.resized and e.get("source") == "images" else ""))
    if e.get("annotated"):
        lines.append(f"  annotated photos in {Path(cfg.annotate).expanduser()}")
    lines.append(f"wrote {r.output} ({r.rows} rows; columns {','.join(e['columns'][:2])}"
                 f"{',...' if len(e['columns']) > 2 else ''})")
    print("\n".join(lines), flush=True)
    for line in lines:
        log.debug("%s", line)
