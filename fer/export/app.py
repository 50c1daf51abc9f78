"""What `python export.py` does: resolve the checkpoint as predict.py does, write the ONNX file with its metadata,
check it against PyTorch on real images of the data config (and refuse to leave a file that does not match),
optionally quantise it to int8, and attach the file to the checkpoint's MLflow run when it has one."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer.classes import CLASS_NAMES, IMAGE_SIZE
from fer.errors import UserError
from fer.export.check import compare, torch_probabilities

log = logging.getLogger(__name__)


@dataclass
class ExportResult:
    output: Path
    comparison: object  # fer.export.check.Comparison
    val_acc: float | None = None
    int8: Path | None = None
    int8_comparison: object | None = None
    accuracy: dict[str, float] = field(default_factory=dict)  # "<split> fp32" / "<split> int8" -> accuracy
    run_id: str | None = None


def _run_of(resolved) -> str | None:
    """The MLflow run a checkpoint belongs to: the one it was resolved through, or its run folder's."""
    from fer.tracking.run_folder import CHECKPOINTS, RunFolder

    if resolved.run_id:
        return resolved.run_id
    if resolved.path.parent.name == CHECKPOINTS:
        info = RunFolder(resolved.path.parent.parent).read_info()
        return info.mlflow_run_id if info else None
    return None


def _sample(rows: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).permutation(rows)[:n]) if len(rows) > n else rows


def run_export(cfg) -> ExportResult:
    from omegaconf import OmegaConf

    from fer.cli import silence_library_noise
    from fer.predict.inputs import as_list
    from fer.predict.output_guard import OutputGuard
    from fer.predict.resolve import resolve_checkpoint

    silence_library_noise()
    if OmegaConf.is_missing(cfg, "ckpt") or len(as_list(cfg.ckpt)) != 1:
        raise UserError("which model? ckpt=PATH.ckpt, a train.py run folder, an MLflow run id, runs:/<id>, best or "
                        "best:<model> (one checkpoint: an ensemble is exported member by member)")
    if cfg.quantize not in ("none", "int8"):
        raise UserError(f"quantize={cfg.quantize}: expected none or int8")
    resolved = resolve_checkpoint(as_list(cfg.ckpt)[0], cfg.tracking_uri, cfg.experiment_name,
                                  Path(cfg.paths.cache_dir) / "checkpoints")
    from fer.data.opened import open_data_config
    from fer.data.splits import split_digest
    from fer.export.onnx_file import export_onnx
    from fer.models.base import CALIBRATION_KEY
    from fer.models.loading import load_model
    from fer.runtime import ExpressionModel
    from fer.runtime.metadata import ModelInfo

    model = load_model(resolved.path)
    if not getattr(model, "onnx_exportable", True):
        raise UserError(f"ckpt={resolved.spec}: {model.onnx_refusal}")
    output = Path(cfg.output).expanduser()
    guard = OutputGuard(Path(cfg.paths.cache_dir) / "outputs.json", cfg.overwrite)
    int8_path = output.with_name(f"{output.stem}.int8{output.suffix}") if cfg.quantize == "int8" else None
    for path in (output, int8_path):
        if path is not None:
            guard.check(path)

    data = open_data_config(cfg.data, progress=cfg.progress)
    cache = data.cache
    has_train = bool(len(cache.split_indices(data.settings.train_split)))
    val = data.train_val[1] if has_train else np.empty(0, np.int64)
    check_rows = _sample(val if len(val) else np.arange(len(cache)), cfg.check_images)
    record = getattr(model, "val_split_record", None)
    val_acc = None
    if len(val) and record and record.get("digest") == split_digest(cache, val):
        val_acc = float((torch_probabilities(model, np.asarray(cache.images)[val]).argmax(1)
                         == cache.labels[val]).mean())
    elif len(val):
        log.warning("val accuracy not recorded: the checkpoint's val split is not the one of data=%s (give the data "
                    "settings it was trained with)", data.name)
    info = ModelInfo(model=type(model).model_name, class_names=CLASS_NAMES, input_size=IMAGE_SIZE,
                     temperature=float(getattr(model, CALIBRATION_KEY)), source_checkpoint=str(resolved.path),
                     mlflow_run_id=_run_of(resolved), val_split=record, val_acc=val_acc,
                     exported=time.strftime("%Y-%m-%dT%H:%M:%S"))
    # written and checked under a name of its own beside the target, which it replaces only once it passed: a
    # failed export leaves the previous file as it was
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, staged = tempfile.mkstemp(prefix=f".{output.stem}-", suffix=output.suffix, dir=output.parent)
    os.close(fd)
    try:
        export_onnx(model, Path(staged), info, cfg.opset)
        images = np.asarray(cache.images)[check_rows]
        reference = torch_probabilities(model, images)
        comparison = compare(reference, ExpressionModel(staged).predict_proba(images))
        if not comparison.ok:
            raise UserError(f"the ONNX model does not match the checkpoint on {comparison.n} images of "
                            f"data={data.name} (max |diff| {comparison.max_abs_diff:.2g}, same class on "
                            f"{comparison.agreement:.2%}); nothing was written")
        os.replace(staged, output)
    finally:
        Path(staged).unlink(missing_ok=True)
    guard.record(output)
    result = ExportResult(output, comparison, val_acc, run_id=info.mlflow_run_id)
    if int8_path is not None:
        train = data.train_val[0] if has_train else np.arange(len(cache))
        quantize_rows = _sample(train, cfg.calibration_images, seed=1)
        from fer.export.quantize import quantize_int8

        quantize_int8(output, int8_path, np.asarray(cache.images)[quantize_rows])
        guard.record(int8_path)
        result.int8 = int8_path
        result.int8_comparison = compare(reference, ExpressionModel(int8_path).predict_proba(images))
        if data.test_split:  # what int8 costs in accuracy, on the test split (reported, never used to choose)
            test = cache.split_indices(data.test_split)
            x, y = np.asarray(cache.images)[test], cache.labels[test]
            for name, path in (("fp32", output), ("int8", int8_path)):
                result.accuracy[f"{data.test_split} {name}"] = float(
                    (ExpressionModel(path).predict_proba(x).argmax(1) == y).mean())
    if result.run_id:
        _attach(cfg, result)
    _print_summary(result, data.name)
    return result


def _attach(cfg, result: ExportResult) -> None:
    from fer.tracking.record import RunRecord

    try:
        record = RunRecord.for_run(cfg.tracking_uri, result.run_id)
        for path in (result.output, result.int8):
            if path is not None:
                record.log_export(path)
    except Exception as exc:  # noqa: BLE001 - the file is written either way; the store may be elsewhere
        log.warning("could not attach the export to MLflow run %s (%s)", result.run_id, str(exc).splitlines()[0])
        result.run_id = None


def _print_summary(r: ExportResult, data_name: str) -> None:
    c = r.comparison
    lines = [f"wrote {r.output} ({r.output.stat().st_size / 2**20:.1f} MB): uint8 faces [N,48,48] -> calibrated "
             "probabilities [N,7]",
             f"  checked on {c.n} images of data={data_name}: max |diff| vs PyTorch {c.max_abs_diff:.2g}, same class "
             f"on {c.agreement:.2%}"]
    if r.val_acc is not None:
        lines.append(f"  val accuracy {r.val_acc:.4f} (in its metadata)")
    if r.int8 is not None:
        q = r.int8_comparison
        lines.append(f"wrote {r.int8} ({r.int8.stat().st_size / 2**20:.1f} MB, int8): same class as fp32 PyTorch on "
                     f"{q.agreement:.2%} of the {q.n} images, max |diff| {q.max_abs_diff:.2g}")
        if r.accuracy:
            lines.append("  accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in r.accuracy.items()))
    if r.run_id:
        lines.append(f"  attached to MLflow run {r.run_id} (artifacts export/)")
    print("\n".join(lines), flush=True)
