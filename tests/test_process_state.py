"""Process-wide settings are made by the entry points alone (fer.cli.setup_process / finish_process): importing and
running fer's library code leaves the configs' resolvers, torch's matmul precision, matplotlib's backend, the
warning filters and logger levels (the libraries' noise fer drops) and the exit path as the embedding program has
them. A test runs in a fresh interpreter, where nothing set them before."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_library_code_leaves_process_wide_settings_alone(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        import matplotlib
        matplotlib.use("svg")  # the embedding program's choice
        import numpy as np
        import torch
        from omegaconf import OmegaConf
        import fer.training, fer.predict.app, fer.export.app, fer.audit.report, fer.cli
        from fer.tracking.plots import plot_confusion_matrix
        from pathlib import Path
        plot_confusion_matrix(np.arange(7), np.arange(7), Path({str(tmp_path / 'cm.png')!r}))
        assert not OmegaConf.has_resolver("fer.run_tag"), "a resolver registered by an import"
        assert torch.get_float32_matmul_precision() == "highest", torch.get_float32_matmul_precision()
        assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
        import logging, warnings
        def silenced():
            return any(f[1] is not None and "No complete tensor" in f[1].pattern for f in warnings.filters)
        assert not silenced() and logging.getLogger("onnx_ir").level == logging.NOTSET, "noise dropped by a library"
        fer.cli.setup_process(Path({str(ROOT)!r}), training=True)  # what train.py does first
        assert OmegaConf.has_resolver("fer.run_tag") and torch.get_float32_matmul_precision() == "high"
        assert silenced() and logging.getLogger("onnx_ir").level == logging.WARNING
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"


def test_entry_points_end_through_the_interpreter_not_os_exit():
    for script in ("train.py", "predict.py", "export.py", "fer/audit/__main__.py"):
        text = (ROOT / script).read_text()
        assert "os._exit" not in text and "finish_process()" in text and "setup_process(" in text, script
