"""The MLflow UI shows our experiment as a runs table (scripts/check_mlflow_ui.py), and experiments carry the
model-training kind tag."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fer.tracking.mlflow_logger import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, ensure_experiment, ui_url

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model=mlp", "trainer.accelerator=cpu", "trainer.max_epochs=1", "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=2", "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false", "data.progress=false",
        "data.source.n_train=200", "data.source.n_test=70"]


def _load_script():
    spec = importlib.util.spec_from_file_location("check_mlflow_ui", ROOT / "scripts" / "check_mlflow_ui.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_new_experiment_is_tagged_as_model_training(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    exp_id = ensure_experiment("fer-test", uri, str(tmp_path / "artifacts"))
    exp = MlflowClient(uri).get_experiment(exp_id)
    assert exp.name == "fer-test"
    assert exp.tags.get(EXPERIMENT_KIND_TAG) == EXPERIMENT_KIND == "custom_model_development"
    assert exp.artifact_location == (tmp_path / "artifacts" / "fer-test").resolve().as_uri()
    assert ensure_experiment("fer-test", uri) == exp_id  # idempotent


def test_existing_untagged_experiment_gets_the_tag(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp_id = client.create_experiment("old")
    assert ensure_experiment("old", uri) == exp_id
    assert client.get_experiment(exp_id).tags.get(EXPERIMENT_KIND_TAG) == EXPERIMENT_KIND


def test_ui_url_opens_the_runs_table():
    base = "http://127.0.0.1:5000/"
    assert ui_url(base, "3") == "http://127.0.0.1:5000/#/experiments/3/runs?workflowType=machine_learning"
    assert ui_url(base, "3", "abc", "reports/confusion_matrix.png") == (
        "http://127.0.0.1:5000/#/experiments/3/runs/abc/artifacts/reports/confusion_matrix.png"
        "?workflowType=machine_learning")


def test_dom_check_tells_runs_table_from_genai_view():
    check = _load_script().check_runs_dom
    runs_dom = ('<html><head><title>Runs - Experiment 1 - MLflow</title></head><body>'
                '<a href="#/experiments/1/models?workflowType=machine_learning">Models</a>'
                '<div data-testid="sort-header-Run Name">Run Name</div><a>mlp-synthetic-1</a></body></html>')
    assert check(runs_dom, "1", ["mlp-synthetic-1"]) == []
    # a run name that is not there fails the check with a clear message (check_ui raises it as UICheckError; a
    # second server start to see it there cost ~30 s of the slow tier)
    assert "runs missing from the table: cnn-synthetic-2" in check(runs_dom, "1", ["cnn-synthetic-2"])
    genai_dom = ('<html><head><title>Overview - Experiment 1 - MLflow</title></head><body>'
                 '<a href="#/experiments/1/traces?workflowType=genai">Traces</a><span>Observability</span>'
                 '</body></html>')
    problems = check(genai_dom, "1", ["mlp-synthetic-1"])
    assert any("GenAI" in p for p in problems) and any("Run Name" in p for p in problems)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium (apt-get install -y chromium)")
def test_mlflow_ui_renders_runs_table(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_CURRENT_TEST", "MLFLOW_TRACKING_URI")}
    cmd = [sys.executable, str(ROOT / "train.py"), *TINY, "run_name=ui-check-run",
           f"logger.mlflow.tracking_uri={uri}", f"logger.mlflow.artifact_location={tmp_path / 'mlruns' / 'artifacts'}",
           f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]

    script = _load_script()
    shot = tmp_path / "runs.png"
    result = script.check_ui(uri, "fer", screenshot=shot, run_screenshot=tmp_path / "run.png",
                             expect_runs=["ui-check-run"])
    assert result.url.endswith("/runs?workflowType=machine_learning")
    assert result.title.startswith(f"Runs - Experiment {result.experiment_id}")
    assert result.n_runs == 1 and result.run_names == ["ui-check-run"]
    assert "artifacts/reports/confusion_matrix.png" in result.run_url
    for png in (shot, tmp_path / "run.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
