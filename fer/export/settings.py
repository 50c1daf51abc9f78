"""export.py's settings, read once from the composed config (conf/export.yaml) and checked; the export's stages
are handed these, not the whole config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fer.config_values import as_list
from fer.errors import UserError
from fer.export.quantize import SMALLER_FORMS
from fer.runtime.metadata import KNOWN_VIEWS
from fer.runtime.output_guard import OutputGuard


@dataclass(frozen=True)
class ExportSettings:
    ckpt: str  # what predict.py accepts, one checkpoint
    tracking_uri: str  # MLflow: where ckpt=<run id> / best is found, and where the files are attached
    experiment_name: str
    checkpoint_cache: Path  # downloaded MLflow checkpoints
    output: Path
    smaller: dict[str, Path]  # quantize=int8 / fp16 / [int8,fp16]: form -> <output stem>.<form>.onnx
    views: str  # none | flip | flip_shifts, inside the graph
    opset: int
    check_images: int  # images the file is checked on against PyTorch
    calibration_images: int  # int8 activation-range calibration images
    progress: bool
    ledger: Path  # the record of fer's own earlier outputs (which it may replace)
    overwrite: bool

    def guard(self) -> OutputGuard:
        return OutputGuard(self.ledger, self.overwrite)

    @classmethod
    def from_config(cls, cfg) -> ExportSettings:
        """One line for a call that cannot be exported, before anything is read."""
        from omegaconf import OmegaConf

        if OmegaConf.is_missing(cfg, "ckpt") or len(as_list(cfg.ckpt)) != 1:
            raise UserError("which model? ckpt=PATH.ckpt, a train.py run folder, an MLflow run id, runs:/<id>, best "
                            "or best:<model> (one checkpoint: an ensemble is exported member by member)")
        forms = [form for form in as_list(cfg.quantize) if form != "none"]
        if any(form not in SMALLER_FORMS for form in forms):
            raise UserError(f"quantize={cfg.quantize}: expected none, {', '.join(SMALLER_FORMS)} or a list of them "
                            "(quantize=[int8,fp16])")
        if cfg.views not in KNOWN_VIEWS:
            raise UserError(f"views={cfg.views}: expected one of {', '.join(KNOWN_VIEWS)}")
        output = Path(cfg.output).expanduser()
        cache = Path(cfg.paths.cache_dir)
        return cls(as_list(cfg.ckpt)[0], cfg.tracking_uri, cfg.experiment_name, cache / "checkpoints", output,
                   {form: output.with_name(f"{output.stem}.{form}{output.suffix}") for form in forms},
                   cfg.views, cfg.opset, cfg.check_images, cfg.calibration_images, bool(cfg.progress),
                   cache / "outputs.json", bool(cfg.overwrite))
