"""Check that the MLflow UI shows our experiment as a runs table (not MLflow 3's GenAI/traces view).

    python scripts/check_mlflow_ui.py [--tracking-uri sqlite:///PATH/mlflow.db] [--experiment fer]
                                      [--screenshot runs.png] [--run-screenshot run.png] [--check-default-landing]

What it does: starts `mlflow ui --backend-store-uri URI --host 127.0.0.1 --port <free port>` (the venv's MLflow),
waits until it answers /health, looks the experiment up with MlflowClient, renders the runs page in headless
Chromium (`apt-get install chromium`) and checks the rendered DOM: the runs table ("Run Name" column, the names
of the newest runs) in the "Model training" layout, not the GenAI one. The server is always stopped again.
Exit status 0 with a short summary on success, 1 with the reason otherwise (2: a tool is missing).

The URL. MLflow 3.17's UI picks GenAI vs. model-training views from its sidebar switch, i.e. the URL's
`workflowType` query parameter, else the browser's localStorage, default GenAI; the experiment tag
`mlflow.experimentKind` is no longer consulted. So the link that opens the runs table is

    http://127.0.0.1:PORT/#/experiments/<id>/runs?workflowType=machine_learning

(fer.tracking.mlflow_logger.ui_url builds it). A plain http://127.0.0.1:PORT/#/experiments/<id> in a fresh
browser lands on the GenAI "Overview" (traces usage); --check-default-landing renders that too and reports it.

--screenshot saves the runs page as PNG; --run-screenshot saves the newest run's reports/confusion_matrix.png
artifact page (run overview if it has no such artifact).
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fer.tracking.mlflow_logger import ui_url  # noqa: E402

DEFAULT_URI = f"sqlite:///{ROOT / 'mlruns' / 'mlflow.db'}"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                  "--hide-scrollbars", "--window-size=1600,1000"]
# Sidebar entries only the GenAI layout has (3.17); the model-training layout has Runs / Models / Traces.
GENAI_MARKERS = ("workflowType=genai", ">Observability<", ">Training runs<")


class UICheckError(RuntimeError):
    """The UI could not be started or did not show what we expect; the message says what and why."""


@dataclass
class UICheckResult:
    url: str
    experiment_id: str
    run_names: list[str]               # runs expected (and found) in the table
    n_runs: int                        # runs in the experiment
    mlflow_version: str
    title: str = ""
    screenshot: Path | None = None
    run_url: str | None = None
    run_screenshot: Path | None = None
    default_landing: str | None = None  # what http://.../#/experiments/<id> shows (--check-default-landing)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"OK: MLflow {self.mlflow_version} UI shows experiment {self.experiment_id} as a runs table "
                 f"({self.n_runs} run{'' if self.n_runs == 1 else 's'}; checked {', '.join(self.run_names)})",
                 f"  runs page: {self.url}  [{self.title}]"]
        if self.screenshot:
            lines.append(f"  screenshot: {self.screenshot}")
        if self.run_url:
            lines.append(f"  run page: {self.run_url}" + (f" -> {self.run_screenshot}" if self.run_screenshot else ""))
        if self.default_landing:
            lines.append(f"  plain experiment link (no workflowType) lands on: {self.default_landing}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    return None


def _mlflow_cli() -> list[str]:
    exe = Path(sys.executable).with_name("mlflow")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "mlflow"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (our own local server)
        return resp.read().decode("utf-8", "replace")


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server and its workers (its own process group, started by us)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def mlflow_ui(tracking_uri: str, port: int | None = None, start_timeout: float = 180.0) -> Iterator[str]:
    """Run `mlflow ui` on 127.0.0.1 for the duration of the block; yields its base URL."""
    port = port or _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="mlflow-ui-") as tmp:
        log_path = Path(tmp, "server.log")
        cmd = _mlflow_cli() + ["ui", "--backend-store-uri", tracking_uri, "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"]
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        with open(log_path, "wb") as log:
            # own session/process group: uvicorn workers and the job runner are stopped with it
            proc = subprocess.Popen(cmd, cwd=tmp, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                if proc.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise UICheckError(f"`{' '.join(cmd)}` exited with status {proc.returncode}:\n{tail}")
                try:
                    if _get(f"{base}/health", timeout=2).strip() == "OK":
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise UICheckError(f"mlflow ui did not answer {base}/health within {start_timeout:.0f} s:\n{tail}")
                time.sleep(1)
            yield base
        finally:
            _stop(proc)


def render(url: str, chromium: str, screenshot: Path | None = None, budget_ms: int = 15000,
           timeout: float = 120.0) -> str:
    """The DOM of `url` after its scripts ran (headless Chromium), optionally also saving a PNG."""
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}"]
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            cmd.append(f"--screenshot={screenshot}")
        cmd += ["--dump-dom", url]
        try:
            out = subprocess.run(cmd, capture_output=True, timeout=timeout, start_new_session=True)
        except subprocess.TimeoutExpired as exc:
            raise UICheckError(f"chromium did not finish rendering {url} within {timeout:.0f} s") from exc
    dom = out.stdout.decode("utf-8", "replace")
    if out.returncode != 0 or "<html" not in dom:
        err = out.stderr.decode("utf-8", "replace")[-2000:]
        raise UICheckError(f"chromium failed on {url} (status {out.returncode}):\n{err}")
    return dom


def _title(dom: str) -> str:
    titles = re.findall(r"<title>([^<]*)</title>", dom)
    return html.unescape(titles[0]) if titles else ""


def _text(dom: str) -> str:
    dom = re.sub(r"<(script|style)\b[^>]*>.*?</\1>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "\n", dom))


def check_runs_dom(dom: str, experiment_id: str, run_names: list[str]) -> list[str]:
    """Problems with a rendered runs page (empty: it is the runs table with these runs, model-training layout)."""
    problems = []
    title = _title(dom)
    if not title.startswith(f"Runs - Experiment {experiment_id}"):
        problems.append(f"page title is {title!r}, not 'Runs - Experiment {experiment_id} - MLflow'")
    if 'data-testid="sort-header-Run Name"' not in dom:
        problems.append("no runs table ('Run Name' column) in the page")
    text = _text(dom)
    missing = [n for n in run_names if n not in text]
    if missing:
        problems.append(f"runs missing from the table: {', '.join(missing)}")
    genai = [m for m in GENAI_MARKERS if m in dom]
    if genai:
        problems.append(f"page is in the GenAI layout (found {', '.join(genai)})")
    if f"#/experiments/{experiment_id}/models" not in dom:
        problems.append("no 'Models' entry in the sidebar: not the model-training layout")
    return problems


def _landing(dom: str) -> str:
    title = _title(dom) or "?"
    layout = "GenAI layout" if any(m in dom for m in GENAI_MARKERS) else "model-training layout"
    return f"{title} ({layout})"


def check_ui(tracking_uri: str = DEFAULT_URI, experiment: str = "fer", *, screenshot: Path | None = None,
             run_screenshot: Path | None = None, expect_runs: list[str] | None = None, max_names: int = 10,
             check_default_landing: bool = False, port: int | None = None, start_timeout: float = 180.0,
             attempts: int = 2) -> UICheckResult:
    """Start the UI on `tracking_uri`, render the runs page of `experiment` and check it; raises UICheckError."""
    import mlflow
    from mlflow.tracking import MlflowClient

    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("chromium not found on PATH (apt-get install -y chromium)")
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///"):]).is_file():
        raise UICheckError(f"no tracking store at {tracking_uri} (train something first: python train.py ...)")
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        known = [e.name for e in client.search_experiments()]
        raise UICheckError(f"experiment {experiment!r} not in {tracking_uri} (there: {', '.join(known) or 'none'})")
    runs = client.search_runs([exp.experiment_id], max_results=1000, order_by=["attributes.start_time DESC"])
    if not runs:
        raise UICheckError(f"experiment {experiment!r} has no runs: nothing to show in a runs table")
    # the table shows the newest runs first; check the first page's worth of names
    names = list(expect_runs) if expect_runs else [r.info.run_name for r in runs[:max_names] if r.info.run_name]
    result = UICheckResult(url="", experiment_id=exp.experiment_id, run_names=names, n_runs=len(runs),
                           mlflow_version=mlflow.__version__)
    if not mlflow.__version__.startswith("3.17."):
        result.notes.append(f"URL form checked against MLflow 3.17; this is {mlflow.__version__}")

    with mlflow_ui(tracking_uri, port=port, start_timeout=start_timeout) as base:
        result.url = ui_url(base, exp.experiment_id)
        problems: list[str] = []
        for attempt in range(attempts):  # the first page load after start-up can be slow to fill the table
            dom = render(result.url, chromium, screenshot)
            problems = check_runs_dom(dom, exp.experiment_id, names)
            if not problems:
                break
        if problems:
            raise UICheckError(f"{result.url} does not show the runs table:\n  - " + "\n  - ".join(problems))
        result.title = _title(dom)
        result.screenshot = screenshot

        if run_screenshot is not None:
            run = runs[0]
            has_cm = any(a.path == "reports/confusion_matrix.png" for a in client.list_artifacts(run.info.run_id,
                                                                                                 "reports"))
            result.run_url = ui_url(base, exp.experiment_id, run.info.run_id,
                                    "reports/confusion_matrix.png" if has_cm else None)
            run_dom = render(result.run_url, chromium, run_screenshot)
            if run.info.run_name and run.info.run_name not in _text(run_dom):
                raise UICheckError(f"run page {result.run_url} does not show run {run.info.run_name!r}")
            result.run_screenshot = run_screenshot

        if check_default_landing:
            plain = f"{base}/#/experiments/{exp.experiment_id}"
            result.default_landing = _landing(render(plain, chromium))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracking-uri", default=DEFAULT_URI, help=f"tracking store (default {DEFAULT_URI})")
    ap.add_argument("--experiment", default="fer", help="experiment name (default fer)")
    ap.add_argument("--screenshot", type=Path, help="save the runs page as PNG")
    ap.add_argument("--run-screenshot", type=Path, help="save the newest run's confusion-matrix page as PNG")
    ap.add_argument("--expect-run", action="append", help="a run name that must be in the table (repeatable); "
                                                          "default: the 10 newest runs")
    ap.add_argument("--check-default-landing", action="store_true",
                    help="also report where a plain #/experiments/<id> link lands")
    ap.add_argument("--port", type=int, help="server port (default: a free one)")
    ap.add_argument("--start-timeout", type=float, default=180.0, help="seconds to wait for the server")
    args = ap.parse_args(argv)
    try:
        res = check_ui(args.tracking_uri, args.experiment, screenshot=args.screenshot,
                       run_screenshot=args.run_screenshot, expect_runs=args.expect_run,
                       check_default_landing=args.check_default_landing, port=args.port,
                       start_timeout=args.start_timeout)
    except FileNotFoundError as exc:
        print(f"check_mlflow_ui: {exc}", file=sys.stderr)
        return 2
    except UICheckError as exc:
        print(f"check_mlflow_ui: FAILED: {exc}", file=sys.stderr)
        return 1
    print(res.summary())
    return 0


if __name__ == "__main__":
    # SIGTERM (e.g. a test timeout) unwinds through the finally blocks, so the server is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
