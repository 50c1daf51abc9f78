"""`python train.py resume=<run folder>`: the run's own composed config, writing into the same folder, and its last
checkpoint, each checked before Lightning would fail inside its restore."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fer.cli import require_data_root
from fer.errors import DataError, UserError
from fer.tracking.run_folder import HYDRA_CONFIG, RESULTS, RunFolder


def load_resume_config(cfg: DictConfig) -> tuple[DictConfig, Path]:
    """`resume=<run folder>`: the original composed config of that run, writing into the same folder, and its
    last checkpoint."""
    folder = RunFolder(Path(cfg.resume).expanduser().resolve())
    saved = folder.file(HYDRA_CONFIG)
    if not saved.is_file():
        raise DataError(f"resume={cfg.resume}: {saved} not found; give the run folder printed by train.py "
                        "(outputs/train/runs/<time>_<model>_<id>)")
    if not folder.last_checkpoint.is_file():
        raise DataError(f"resume={cfg.resume}: no checkpoints/last.ckpt in it; nothing to resume from")
    if folder.file(RESULTS).is_file():  # resuming would test and calibrate again: each metric logged twice
        raise DataError(f"resume={cfg.resume}: this run finished ({RESULTS} is written); nothing to resume. Use it "
                        f"with predict.py ckpt={cfg.resume}, or train a new run")
    old = OmegaConf.load(saved)
    require_data_root(old)  # the data may have moved since
    _check_resumable(folder.last_checkpoint, old, cfg.resume)
    old.paths.output_dir = str(folder.path)
    old.resume = None
    return old, folder.last_checkpoint


def _check_resumable(last: Path, cfg: DictConfig, given: str) -> None:
    """last.ckpt is read as predict.py reads checkpoints (a zip of tensors: a truncated file or a pickle is
    refused without running it) and holds the model the run's config builds: one line otherwise, before Lightning
    would fail inside its restore."""
    from fer.models.loading import configured_model_name, read_checkpoint, registered_model

    try:
        checkpoint = read_checkpoint(last)
        saved = registered_model(checkpoint, last)[0]
        wanted = configured_model_name(cfg.model)
    except (UserError, ValueError) as exc:
        raise DataError(f"resume={given}: {exc}") from exc
    if saved != wanted:
        raise DataError(f"resume={given}: {last.name} holds a {saved} model but the run's config asks for "
                        f"{wanted}: was .hydra/config.yaml edited?")
