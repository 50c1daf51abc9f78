"""Files users share (exported models, CSVs, annotated videos) get a normal file's mode, 0666 less the umask
(0644 under the usual 022), not the 0600 of the temporary file they are written under."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def umask_022():
    before = os.umask(0o022)
    yield
    os.umask(before)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_csv_and_onnx_writer_give_0644(tmp_path, umask_022):
    from fer.runtime.atomic import atomic_path
    from fer.runtime.table import write_csv_atomic

    write_csv_atomic(tmp_path / "predictions.csv", ["image", "label"], [["a.jpg", "happy"]])
    with atomic_path(tmp_path / "model.onnx") as tmp:  # export.py writes its .onnx files through this
        tmp.write_bytes(b"onnx")
    assert _mode(tmp_path / "predictions.csv") == _mode(tmp_path / "model.onnx") == 0o644


def test_annotated_video_gets_0644(tmp_path, umask_022):
    from fer.data.demo_video import write_two_face_video
    from fer.runtime.video import classify_video

    clip = write_two_face_video(tmp_path / "clip.mp4", frames=4)
    out = tmp_path / "annotated.mp4"
    rows = list(classify_video(lambda crops: np.full((len(crops), 7), 1 / 7), str(clip), annotate=out))
    assert rows and out.is_file() and _mode(out) == 0o644


def test_a_folder_is_never_an_output_even_with_overwrite(tmp_path):
    """export.py output=FOLDER overwrite=true once ended in IsADirectoryError from the final rename."""
    from fer.errors import UserError
    from fer.runtime.output_guard import OutputGuard

    folder = tmp_path / "models"
    folder.mkdir()
    for overwrite in (False, True):
        with pytest.raises(UserError, match=f"^output={folder} is a folder; give a file name$"):
            OutputGuard(tmp_path / "outputs.json", overwrite).check(folder)
