"""The layout of a train.py run folder (outputs/train/runs/<time>_<model>_<id>/), written by training and read by
`resume=` and predict.py's `ckpt=<run folder>`: the one place its file names are spelled."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

RUN_INFO = "run_info.json"  # which model, data and MLflow run this folder belongs to
RESULTS = "results.json"  # the final val/test metrics
CONFIG = "config.yaml"  # the resolved composed config (also uploaded to MLflow)
HYDRA_CONFIG = Path(".hydra") / "config.yaml"  # the composed config as Hydra saved it: what resume= reloads
HYDRA_RECORD = Path(".hydra") / "hydra.yaml"  # Hydra's own record of the run (config group choices)
CHECKPOINTS = "checkpoints"  # epoch_<n>.ckpt (the best by val/acc) and last.ckpt (every epoch)
LAST_CHECKPOINT = "last.ckpt"
REPORTS = "reports"
AUDIT = "audit"


@dataclass
class RunInfo:
    model: str
    data: str
    mlflow_run_id: str | None = None


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def file(self, name: str | Path) -> Path:
        return self.path / name

    @property
    def last_checkpoint(self) -> Path:
        return self.path / CHECKPOINTS / LAST_CHECKPOINT

    def best_checkpoints(self) -> list[Path]:
        """The checkpoints model selection kept (every .ckpt but last.ckpt), by name."""
        return sorted(p for p in (self.path / CHECKPOINTS).glob("*.ckpt") if p.name != LAST_CHECKPOINT)

    def read_info(self) -> RunInfo | None:
        try:
            data = json.loads((self.path / RUN_INFO).read_text())
            return RunInfo(data["model"], data.get("data", ""), data.get("mlflow_run_id"))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write_info(self, info: RunInfo) -> None:
        (self.path / RUN_INFO).write_text(json.dumps(asdict(info), indent=1))
