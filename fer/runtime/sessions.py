"""ONNX Runtime session settings shared by the runtime's two networks (the expression model and the YuNet face
detector)."""

from __future__ import annotations

import os


def session_options(threads: int | None = None):
    """`threads` intra-op threads (default: one per core) that sleep when a run ends. ONNX Runtime's threads spin
    after each run by default; a photo alternates detection and classification, and each session's spinning threads
    took the cores from the other: a 640x480 detection went from 12 to 24 ms right after a classification
    (bench/faces.py)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or os.cpu_count() or 1)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # notes about the graph are for whoever exported it, not for the user
    return options
