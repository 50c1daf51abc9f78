"""Markdown results table of an MLflow experiment (one row per finished run, newest per model):

    python bench/results_table.py [experiment_name] [--tracking-uri URI] [--reach 0.65 0.70]

--reach: also list, per run, the wall time (from the run's start) at which val/acc first reached each level.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlflow.tracking import MlflowClient  # noqa: E402

from fer.tracking.record import (METRIC_FIT_SECONDS, METRIC_PARAMS, PARAM_DEVICE, PARAM_MODEL,  # noqa: E402
                                 SELECTION_METRIC)

def configured_tracking_uri() -> str:
    """The MLflow store train.py writes to (conf/paths: MLFLOW_TRACKING_URI, else mlruns/mlflow.db)."""
    from hydra import compose, initialize_config_dir

    os.environ.setdefault("FER_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="train").paths.mlflow_tracking_uri


def count_params(model: str) -> int:
    """Parameters of the configured model (for runs logged before `model/params` was recorded)."""
    from hydra import compose, initialize_config_dir

    from fer.training import instantiate_model

    os.environ.setdefault("FER_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={model}"])
    return sum(p.numel() for p in instantiate_model(cfg.model).parameters())


def recipe_of(run_name: str) -> str:
    """The experiment file a run came from: recipes name their runs <recipe>-<MMDD>-<HHMM> (_fer2013.yaml)."""
    match = re.fullmatch(r"(\w+)-\d{4}-\d{4}", run_name or "")
    return f"experiment={match.group(1)}" if match else "-"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("experiment", nargs="?", default="fer2013-defaults")
    ap.add_argument("--tracking-uri", default=None, help="default: the store train.py writes to")
    ap.add_argument("--reach", type=float, nargs="*", default=[], help="val/acc levels to time")
    args = ap.parse_args()
    args.tracking_uri = args.tracking_uri or configured_tracking_uri()
    client = MlflowClient(args.tracking_uri)
    exp = client.get_experiment_by_name(args.experiment)
    if exp is None:
        sys.exit(f"no experiment {args.experiment!r} in {args.tracking_uri}")
    rows = {}
    for run in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"]):
        rows.setdefault(run.data.params.get(PARAM_MODEL), run)
    tta = any("test_tta/acc" in run.data.metrics for run in rows.values())
    head = ["model", "recipe", "device", "params", "epochs", "fit wall time", "best val acc", "publictest acc",
            "publictest macro-F1"]
    head += ["+ TTA acc", "+ TTA macro-F1"] if tta else []
    print("| " + " | ".join(head + ["MLflow run"]) + " |")
    print("|" + "---|" * (len(head) + 1))
    nan = float("nan")
    for model, run in rows.items():
        m = run.data.metrics
        history = [h.value for h in client.get_metric_history(run.info.run_id, SELECTION_METRIC)]
        epochs, best_val = len(history), max(history, default=nan)  # the epoch the test used
        params = m.get(METRIC_PARAMS) or count_params(model)
        cells = [model, recipe_of(run.info.run_name), run.data.params.get(PARAM_DEVICE, "CPU, 2 cores"),
                 f"{params / 1e6:.1f}M" if params else "-", str(epochs),
                 f"{m.get(METRIC_FIT_SECONDS, 0) / 60:.1f} min",
                 f"{best_val:.3f}", f"{m.get('test/acc', nan):.3f}", f"{m.get('test/f1_macro', nan):.3f}"]
        cells += [f"{m.get('test_tta/acc', nan):.3f}", f"{m.get('test_tta/f1_macro', nan):.3f}"] if tta else []
        print("| " + " | ".join(cells + [run.info.run_name]) + " |")
    if args.reach:
        print(f"\nminutes from run start to the first epoch with val/acc >= {', '.join(map(str, args.reach))}:")
        for model, run in rows.items():
            history = client.get_metric_history(run.info.run_id, SELECTION_METRIC)
            times = [next((f"{(h.timestamp - run.info.start_time) / 60000:.1f} (epoch {i + 1})"
                           for i, h in enumerate(history) if h.value >= level), "not reached")
                     for level in args.reach]
            print(f"  {model}: " + ", ".join(f"{level}: {t}" for level, t in zip(args.reach, times)))

if __name__ == "__main__":
    main()
