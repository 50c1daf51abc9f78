"""What a run trained with, for its MLflow params: the code (the checkout's commit) and the machine (the device)."""

from __future__ import annotations

import os
import subprocess

import torch


def source_commit(root: str) -> str:
    """The checkout's commit, "-dirty" appended when tracked files differ from it (the run did not train with that
    commit's code alone); "unknown" outside a git checkout."""
    def git(*args: str) -> str:  # no optional locks: a training does not rewrite the checkout's index
        return subprocess.run(["git", "--no-optional-locks", *args], cwd=root, capture_output=True, text=True,
                              timeout=5).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD") or "unknown"
        return f"{commit}-dirty" if commit != "unknown" and git("status", "--porcelain", "-uno") else commit
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(accelerator: str) -> str:
    """What the run trains on, as the results tables name it: the GPU's name, else the CPU's core count."""
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU, {os.cpu_count()} cores"
