"""Two train.py processes started together, with different data settings, sharing one image cache folder, one
fresh sqlite MLflow store and one log folder: both land complete runs (no "database is locked", no experiment
created twice, no schema-migration race), each in its own run folder, and neither removes the other's cache
entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model=mlp", "trainer.max_epochs=1", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
        "data.source.n_test=70", "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false", "data.progress=false"]


@pytest.mark.slow  # two real train.py runs (interpreter start, imports, fit, test, model logging): ~1.5-3 min
def test_two_concurrent_runs_share_one_fresh_store(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    # as a user's shell would run them: not inside pytest (MLflow checks read-only sessions when it sees this)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "MLFLOW_TRACKING_URI")}
    procs = []
    for i, n_train in enumerate((200, 270)):  # the default run folder name: <time to the second>_<model>_<tag>
        cmd = [sys.executable, str(ROOT / "train.py"), *TINY, f"data.source.n_train={n_train}",
               f"logger.mlflow.tracking_uri={uri}", f"logger.mlflow.artifact_location={tmp_path / 'mlruns' / 'artifacts'}",
               f"paths.cache_dir={tmp_path / 'cache'}", f"paths.log_dir={tmp_path / 'outputs'}"]
        log = open(tmp_path / f"train{i}.log", "w")
        procs.append((subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    for proc, log in procs:
        try:
            proc.wait(timeout=540)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
    logs = [(tmp_path / f"train{i}.log").read_text(errors="replace") for i in range(2)]
    for (proc, _), text in zip(procs, logs):
        assert proc.returncode == 0, text[-4000:]
        for noise in ("litlogger", "Dim.AUTO", "No complete tensor found", "model summary"):
            assert noise not in text, noise
    folders = sorted((tmp_path / "outputs" / "train" / "runs").iterdir())
    assert len(folders) == 2 and {json.loads((f / "run_info.json").read_text())["data"] for f in folders} == {"synthetic"}
    assert len(list((tmp_path / "cache").glob("synthetic-*"))) == 2  # both entries kept

    client = MlflowClient(uri)
    assert [e.name for e in client.search_experiments()].count("fer") == 1
    exp = client.get_experiment_by_name("fer")
    runs = client.search_runs([exp.experiment_id])
    by_dir = {r.data.tags.get("output_dir"): r for r in runs}
    assert len(runs) == 2 and set(by_dir) == {str(f) for f in folders}
    assert len({r.data.tags["best_checkpoint"] for r in runs}) == 2
    for run in runs:
        rid = run.info.run_id
        assert run.info.status == "FINISHED", run.info
        assert "test/acc" in run.data.metrics and "val/acc" in run.data.metrics
        assert len(client.get_metric_history(rid, "val/acc")) >= 1
        assert "config.yaml" in {a.path for a in client.list_artifacts(rid)}
        assert "reports/confusion_matrix.png" in {a.path for a in client.list_artifacts(rid, "reports")}
    assert len({r.info.artifact_uri for r in runs}) == 2  # no shared artifact folder
