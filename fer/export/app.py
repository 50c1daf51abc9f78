"""What `python export.py` does: resolve the checkpoint as predict.py does, write the ONNX file with its metadata,
check it against PyTorch on real images of the data config (and refuse to leave a file that does not match),
optionally write smaller forms of it (int8, fp16 weights), measure each written file on the val and test splits
(into its metadata), and attach the files to the checkpoint's MLflow run when it has one."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer.errors import UserError
from fer.export.check import compare, torch_probabilities
from fer.export.settings import ExportSettings
from fer.runtime.metadata import TEST_ACC, TEST_SPLIT, VAL_ACC

log = logging.getLogger(__name__)


@dataclass
class ExportResult:
    output: Path
    comparison: object  # fer.export.check.Comparison
    val_acc: float | None = None
    smaller: dict[str, Path] = field(default_factory=dict)  # "int8" / "fp16" -> its file
    smaller_comparison: dict[str, object] = field(default_factory=dict)  # each form against fp32 PyTorch
    accuracy: dict[str, float] = field(default_factory=dict)  # "<split> <form>" (form: fp32, int8, fp16) -> accuracy
    run_id: str | None = None


def _sample(rows: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).permutation(rows)[:n]) if len(rows) > n else rows


def run_export(cfg) -> ExportResult:
    """cfg: the composed conf/export.yaml."""
    from fer.inference.resolve import resolve_checkpoint

    settings = ExportSettings.from_config(cfg)
    resolved = resolve_checkpoint(settings.ckpt, settings.tracking_uri, settings.experiment_name,
                                  settings.checkpoint_cache)
    from fer.data.opened import open_data_config
    from fer.models.loading import load_model

    model = load_model(resolved.path)
    if not model.onnx_exportable:
        raise UserError(f"ckpt={resolved.spec}: {model.onnx_refusal}")
    paths, guard = [settings.output, *settings.smaller.values()], settings.guard()
    with guard.claimed(*paths):  # to the MLflow attach: a concurrent export to the same path waits
        for path in paths:
            guard.check(path)
        data = open_data_config(cfg.data, progress=settings.progress)
        result = _write_and_measure(settings, model, resolved, data, guard)
        if result.run_id:
            _attach(settings.tracking_uri, result)
    _print_summary(result, data.name)
    return result


def _write_and_measure(settings: ExportSettings, model, resolved, data, guard) -> ExportResult:
    from fer.export.provenance import model_info

    output = settings.output
    parts = _Parts.of(data, model.val_split_record)
    info = model_info(model, resolved, settings.views, settings.tracking_uri)
    info.exported = time.strftime("%Y-%m-%dT%H:%M:%S")
    images = np.asarray(data.cache.images)[_sample(parts.val if len(parts.val) else np.arange(len(data.cache)),
                                                   settings.check_images)]
    reference, comparison = _write_checked(model, output, info, images, data.name, settings.opset)
    guard.record(output)
    result = ExportResult(output, comparison, run_id=info.mlflow_run_id)
    if settings.smaller:
        from fer.export.quantize import write_smaller
        from fer.runtime import ExpressionModel

        calibration = np.asarray(data.cache.images)[_sample(parts.train, settings.calibration_images, seed=1)]
    for form, path in settings.smaller.items():
        write_smaller(form, output, path, calibration)
        guard.record(path)
        result.smaller[form] = path
        result.smaller_comparison[form] = compare(reference, ExpressionModel(path).predict_proba(images))
    for kind, path in {"fp32": output, **result.smaller}.items():
        _measure(path, kind, data, parts, result, guard)
    result.val_acc = result.accuracy.get("val fp32")
    return result


@dataclass
class _Parts:
    train: np.ndarray  # int8 calibration images come from here
    val: np.ndarray  # the export check's images; its accuracy only when it is the checkpoint's own val split
    val_is_own: bool
    test: np.ndarray
    test_split: str | None

    @classmethod
    def of(cls, data, record: dict | None) -> _Parts:
        from fer.data.splits import split_digest

        cache = data.cache
        has_train = bool(len(cache.split_indices(data.settings.train_split)))
        train, val = data.train_val if has_train else (np.arange(len(cache)), np.empty(0, np.int64))
        own = bool(len(val) and record and record.get("digest") == split_digest(cache, val))
        if len(val) and not own:
            log.warning("val accuracy not recorded: the checkpoint's val split is not the one of data=%s (give the "
                        "data settings it was trained with)", data.name)
        test = cache.split_indices(data.test_split) if data.test_split else np.empty(0, np.int64)
        return cls(train, val, own, test, data.test_split)


def _write_checked(model, output: Path, info, images: np.ndarray, data_name: str, opset: int):
    """The ONNX file, written under a name of its own beside the target and checked against the checkpoint (with
    the same views) before it replaces the target: a failed export leaves the previous file as it was."""
    from fer.export.onnx_file import export_onnx
    from fer.runtime import ExpressionModel
    from fer.runtime.atomic import atomic_path

    reference = torch_probabilities(model, images, views=info.views)
    with atomic_path(output, shown_as=f"output={output}") as staged:
        export_onnx(model, staged, info, opset)
        comparison = compare(reference, ExpressionModel(staged).predict_proba(images))
        if not comparison.ok:
            raise UserError(f"the ONNX model does not match the checkpoint on {comparison.n} images of "
                            f"data={data_name} (max |diff| {comparison.max_abs_diff:.2g}, same class on "
                            f"{comparison.agreement:.2%}); nothing was written")
    return reference, comparison


def _measure(path: Path, kind: str, data, parts: _Parts, result: ExportResult, guard) -> None:
    """The written file's own accuracy (its default call: baked views and quantisation included) on the
    checkpoint's val split and on the test split, reported and kept in its metadata. Never used to choose."""
    from fer.export.onnx_file import stamp_metadata
    from fer.runtime import ExpressionModel

    model, props = ExpressionModel(path), {}
    labels = data.cache.labels

    def accuracy(rows: np.ndarray) -> float:
        return float((model.predict_proba(np.asarray(data.cache.images)[rows]).argmax(1) == labels[rows]).mean())

    if parts.val_is_own:
        acc = accuracy(parts.val)
        result.accuracy[f"val {kind}"] = acc
        props[VAL_ACC] = repr(acc)
    if len(parts.test) and (labels[parts.test] >= 0).all():
        acc = accuracy(parts.test)
        result.accuracy[f"{parts.test_split} {kind}"] = acc
        props.update({TEST_SPLIT: str(parts.test_split), TEST_ACC: repr(acc)})
    if props:
        stamp_metadata(path, props)
        guard.record(path)


def _attach(tracking_uri: str, result: ExportResult) -> None:
    from fer.tracking.record import RunRecord

    try:
        record = RunRecord.for_run(tracking_uri, result.run_id)
        for path in (result.output, *result.smaller.values()):
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
    for form, path in r.smaller.items():
        q = r.smaller_comparison[form]
        lines.append(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB, {form}): same class as fp32 PyTorch on "
                     f"{q.agreement:.2%} of the {q.n} images, max |diff| {q.max_abs_diff:.2g}")
    if r.accuracy:
        figures = ", ".join(f"{k} {v:.4f}" for k, v in r.accuracy.items())
        lines.append(f"  accuracy (in each file's metadata): {figures}")
    if r.run_id:
        lines.append(f"  attached to MLflow run {r.run_id} (artifacts export/)")
    print("\n".join(lines), flush=True)
