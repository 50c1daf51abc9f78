"""Markdown results table of an MLflow experiment (one row per finished run, newest per model):

    python bench/results_table.py [experiment_name] [--tracking-uri URI]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlflow.tracking import MlflowClient  # noqa: E402

from fer.tracking.mlflow_logger import tracking_uri_default  # noqa: E402


def count_params(model: str) -> int:
    """Parameters of the configured model (for runs logged before `model/params` was recorded)."""
    from hydra import compose, initialize_config_dir

    from fer.training import instantiate_model

    os.environ.setdefault("FER_ROOT", str(ROOT))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={model}"])
    return sum(p.numel() for p in instantiate_model(cfg.model).parameters())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("experiment", nargs="?", default="fer2013-defaults")
    ap.add_argument("--tracking-uri", default=tracking_uri_default(os.environ.get("FER_ROOT", ROOT)))
    args = ap.parse_args()
    client = MlflowClient(args.tracking_uri)
    exp = client.get_experiment_by_name(args.experiment)
    if exp is None:
        sys.exit(f"no experiment {args.experiment!r} in {args.tracking_uri}")
    rows = {}
    for run in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"]):
        rows.setdefault(run.data.params.get("model"), run)
    print("| model | params | epochs | fit wall time | best val acc | publictest acc | publictest macro-F1 | MLflow run |")
    print("|---|---|---|---|---|---|---|---|")
    for model, run in rows.items():
        m = run.data.metrics
        history = [h.value for h in client.get_metric_history(run.info.run_id, "val/acc")]
        epochs, best_val = len(history), max(history, default=float("nan"))  # the epoch the test used
        params = m.get("model/params") or count_params(model)
        print(f"| {model} | {f'{params / 1e6:.1f}M' if params else '-'} | {epochs} | {m.get('fit_seconds', 0) / 60:.1f} min "
              f"| {best_val:.3f} | {m.get('test/acc', float('nan')):.3f} "
              f"| {m.get('test/f1_macro', float('nan')):.3f} | {run.info.run_name} |")


if __name__ == "__main__":
    main()
