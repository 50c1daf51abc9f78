"""What `python predict.py` does: resolve checkpoints, read the images (through the cache), predict (optionally
with TTA / an ensemble), write the CSV atomically and print a short summary."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from fer.cli import check_recipe_for, require_numbers
from fer.errors import UserError
from fer.config_values import as_list
from fer.predict.inputs import read_images, scan_faces, video_input
from fer.predict.outputs import PredictResult, write_faces, write_images, write_video
from fer.predict.settings import PredictSettings, Scoring
from fer.inference.resolve import resolve_all
from fer.runtime.table import check_label_format
from fer.predict.summary import print_summary

log = logging.getLogger(__name__)


def _check_call(cfg) -> tuple[PredictSettings, str | list[float], list[str]]:
    """Everything about the call itself, before anything is read: (the settings, ensemble weights choice, input=
    paths)."""
    from omegaconf import OmegaConf

    from fer.predict.ensemble import parse_ensemble_weights

    check_recipe_for(cfg, "predict")
    require_numbers(cfg, PredictSettings.number_keys())  # a typo would fail with a traceback, or compare as text
    if OmegaConf.is_missing(cfg, "ckpt") or not as_list(cfg.ckpt):
        raise UserError("which model? ckpt=PATH.ckpt, a train.py run folder, an MLflow run id, runs:/<id>, best, "
                        "or a list [a,b] for an ensemble")
    check_label_format(cfg.label_format)
    if cfg.tta_shift < 0:
        raise UserError(f"tta_shift must be >= 0 pixels, got {cfg.tta_shift}")
    settings = PredictSettings.from_config(cfg)
    weights_choice = parse_ensemble_weights(cfg.get("ensemble_weights"), len(as_list(cfg.ckpt)))
    inputs = as_list(cfg.get("input"))
    if settings.face_detect and not inputs:
        raise UserError("face_detect=true needs photos: input=photo.jpg, input=FOLDER or input=[a.jpg,b.jpg]")
    # a file we may not replace is refused now, not after minutes of reading and predicting (checked again on write)
    guard = settings.outputs.guard()
    guard.check(settings.outputs.csv, "output")
    if settings.outputs.annotate_video is not None:
        guard.check(settings.outputs.annotate_video, "annotate_video")
    return settings, weights_choice, inputs


def run_predict(cfg, started: float | None = None) -> PredictResult:
    """cfg: the composed conf/predict.yaml. started: perf_counter() at process start (for the start-up time)."""
    t_start = time.perf_counter()
    seconds: dict[str, float] = {"start-up": t_start - started} if started else {}
    settings, weights_choice, inputs = _check_call(cfg)
    reading, scoring = settings.reading, settings.scoring

    # everything that can be wrong with the call is checked before torch and Lightning are imported (seconds):
    # checkpoints exist and are zip files, the images are listed (and cached), faces found
    t = time.perf_counter()
    resolved = resolve_all(as_list(cfg.ckpt), cfg.tracking_uri, cfg.experiment_name,
                           Path(cfg.paths.cache_dir) / "checkpoints")
    for r in resolved:
        log.info("checkpoint: %s", r.describe())
    seconds["resolve"] = time.perf_counter() - t
    t = time.perf_counter()
    video = video_input(inputs)
    if video is not None:
        data = video
    else:
        data = scan_faces(settings.faces, reading, inputs) if settings.face_detect else \
            read_images(reading, cfg.data, inputs)
    seconds["faces" if settings.face_detect else "data"] = time.perf_counter() - t

    model, score, device, precision = _engine(scoring, resolved, seconds)
    _warn_if_synthetic(model, resolved)
    from fer.predict.ensemble import fit_weights_on_val

    weights_info = None
    if isinstance(weights_choice, list):
        model.set_weights(weights_choice)
        weights_info = {"how": "given"}
    elif weights_choice == "val" and len(model) == 1:
        log.info("ensemble_weights=val: one checkpoint, nothing to weigh")
    elif weights_choice == "val":
        t = time.perf_counter()
        # the val split of the training data config; its cache is open already unless the images came from input=
        from fer.data.opened import open_data_config

        train_data = data.data if not (settings.face_detect or inputs) else \
            open_data_config(cfg.data, on_bad_image=reading.on_bad_image, progress=reading.progress)
        weights_info = fit_weights_on_val(model, [r.spec for r in resolved], train_data, score)
        seconds["weights on val"] = time.perf_counter() - t

    def predict(images, rows=None, progress=scoring.progress):
        return model.calibrated(score(model, images, rows, progress))

    t = time.perf_counter()
    if video is not None:
        result = _video(settings, video, lambda crops: predict(crops, progress=False), seconds)
    else:
        probs = predict(data.crops, progress=False) if settings.face_detect else \
            predict(data.data.cache.images, data.idx)
        seconds["predict"] = time.perf_counter() - t
        t = time.perf_counter()
        result = write_faces(settings.outputs, data, probs, seconds) if settings.face_detect else \
            write_images(settings.outputs, data, probs, seconds)
        seconds["csv"] = time.perf_counter() - t
    result.seconds["total"] = time.perf_counter() - t_start + seconds.get("start-up", 0.0)
    result.extra.update(device=device, precision=precision, models=[r.describe() for r in resolved],
                        model_names=model.names,
                        mirror_invariant=[bool(m.mirror_invariant) for m in model.models])
    if weights_info:
        result.extra["ensemble_weights"] = dict(weights_info, members=[r.spec for r in resolved],
                                                weights=list(model.weights))
    print_summary(settings, result)
    return result


def _warn_if_synthetic(model, resolved) -> None:
    """A checkpoint trained on the synthetic default data says so (an exported one says it when it is loaded)."""
    from fer.runtime.metadata import SYNTHETIC, SYNTHETIC_WARNING

    for member, r in zip(model.models, resolved):
        if not r.is_onnx and (member.val_split_record or {}).get("data") == SYNTHETIC:
            log.warning("%s: %s", r.spec, SYNTHETIC_WARNING)


def _video(settings: PredictSettings, video, predict, seconds: dict[str, float]) -> PredictResult:
    """input=<video> / camera:N: the sampled frames' faces, classified frame by frame, followed by id."""
    from fer.runtime.video import VideoStats, classify_video

    stats = VideoStats()
    annotate, every = settings.outputs.annotate_video, settings.video
    guard = None
    if annotate is not None:
        guard = settings.outputs.guard()
        guard.check(annotate, "annotate_video")
    rows = list(classify_video(predict, video.spec, every.every, every.fps, settings.faces.build(), every.smooth,
                               every.max_frames, annotate, stats))
    if guard is not None:
        guard.record(annotate)
    seconds["video"] = stats.seconds
    t = time.perf_counter()
    result = write_video(settings.outputs, video.spec, rows, stats, seconds)
    seconds["csv"] = time.perf_counter() - t
    return result


def _engine(scoring: Scoring, resolved, seconds: dict[str, float]):
    """(the model, score(predictor, images, rows) -> probabilities, device text, precision text). Exported ONNX
    models only: onnxruntime on numpy, and torch is never imported; any checkpoint: the torch engine (ONNX members
    join it through onnxruntime)."""
    t = time.perf_counter()
    if all(r.is_onnx for r in resolved):
        from fer.predict.ensemble import load_onnx_ensemble
        from fer.runtime.engine import predict_rows

        seconds["imports"] = time.perf_counter() - t
        t = time.perf_counter()
        model = load_onnx_ensemble([r.path for r in resolved], scoring.num_threads)
        seconds["model load"] = time.perf_counter() - t

        def score(predictor, images, rows=None, progress=scoring.progress):
            return predict_rows(predictor, images, rows, scoring.batch_size, scoring.tta, scoring.shift, progress)

        kinds = sorted({"fp32" if m.info.quantized == "none" else m.info.quantized for m in model.models})
        return model, score, "cpu (onnxruntime)", "/".join(kinds)  # "fp32", "int8", or a mixed ensemble's "fp32/int8"

    import fer.models.loading  # noqa: F401 - torch + Lightning: most of the start-up, timed on its own
    from fer.inference.engine import predict_array, select_device, select_precision, torch_threads
    from fer.predict.ensemble import load_ensemble

    seconds["imports"] = time.perf_counter() - t
    device = select_device(scoring.device)
    dtype = select_precision(scoring.precision, device)
    t = time.perf_counter()
    model = load_ensemble([r.path for r in resolved], device)
    seconds["model load"] = time.perf_counter() - t

    def score(predictor, images, rows=None, progress=scoring.progress):
        with torch_threads(scoring.num_threads):
            return predict_array(predictor, images, rows, scoring.batch_size, device, dtype, scoring.tta,
                                 scoring.shift, progress)

    return model, score, str(device), "bf16" if dtype is not None else "fp32"
