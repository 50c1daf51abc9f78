"""Video and camera input: predict.py input=clip.mp4 (and input=camera:N, the same reader) finds the faces of the
sampled frames, classifies each frame's faces in one batch, and keeps one id per person across frames. The
test writes its own video: two real faces (the astronaut and her mirror image) moving across 640x480 frames."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from fer.data.demo_video import write_two_face_video
from fer.errors import DataError, UserError

from helpers import CONF

FRAMES, FPS = 24, 12
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_two_face_video(tmp_path_factory.mktemp("video") / "clip.mp4")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    import torch

    from helpers import classifier

    torch.manual_seed(0)
    model = classifier("mlp", {"hidden": (32,)})
    path = tmp_path_factory.mktemp("ckpt") / "mlp.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "fer_model": "mlp"}, path)
    return path


def _predict(ckpt: Path, tmp_path: Path, *overrides: str):
    from fer.predict.app import run_predict

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("predict", overrides=[f"ckpt={ckpt}", f"output={tmp_path / 'video.csv'}", "probabilities=true",
                                            f"paths.cache_dir={tmp_path / 'cache'}", "progress=false", *overrides])
    result = run_predict(cfg)
    with open(tmp_path / "video.csv", newline="") as fh:
        return result, list(csv.DictReader(fh))


def test_every_frame_two_faces_each_keeps_its_id(ckpt, clip, tmp_path):
    result, rows = _predict(ckpt, tmp_path, f"input={clip}")
    assert list(rows[0])[:8] == ["frame", "time", "face_id", "x", "y", "w", "h", "label"]
    frames = sorted({int(r["frame"]) for r in rows})
    assert len(frames) >= FRAMES - 2  # the cascade may miss a face in a frame or two
    assert result.extra["frames_read"] == FRAMES and result.extra["frames_sampled"] == FRAMES
    ids_top = {r["face_id"] for r in rows if int(r["y"]) < 240}
    ids_bottom = {r["face_id"] for r in rows if int(r["y"]) >= 240}
    assert len(ids_top) == 1 and len(ids_bottom) == 1 and ids_top != ids_bottom  # one id per person
    assert result.extra["tracks"] == 2
    for r in rows:
        assert float(r["time"]) == pytest.approx(int(r["frame"]) / FPS, abs=1e-3)
        assert abs(sum(float(v) for k, v in r.items() if k.startswith("prob_")) - 1) < 1e-4
    top = sorted((int(r["frame"]), int(r["x"])) for r in rows if int(r["y"]) < 240)
    assert top[-1][1] - top[0][1] > 80  # the box follows the face moving right


def test_frames_are_sampled_by_step_or_rate_and_faces_batched_per_frame(ckpt, clip, tmp_path, monkeypatch):
    import fer.predict.app as app

    calls = []
    real = app._video

    def spy(cfg, video, predict, seconds):
        def counting(crops):
            calls.append(len(crops))
            return predict(crops)
        return real(cfg, video, counting, seconds)

    monkeypatch.setattr(app, "_video", spy)
    result, rows = _predict(ckpt, tmp_path, f"input={clip}", "video_every=3")
    assert result.extra["frames_sampled"] == FRAMES // 3 and {int(r["frame"]) % 3 for r in rows} == {0}
    assert len(calls) == FRAMES // 3 and max(calls) == 2  # one batch per sampled frame, both faces in it
    result, rows = _predict(ckpt, tmp_path, f"input={clip}", "video_fps=4")  # 12 fps video: every 3rd frame
    assert result.extra["frames_sampled"] == FRAMES // 3


def test_smoothing_averages_each_track_over_its_frames(ckpt, clip, tmp_path):
    _, raw = _predict(ckpt, tmp_path, f"input={clip}")
    _, smooth = _predict(ckpt, tmp_path, f"input={clip}", "video_smooth=0.8")
    probs = [c for c in raw[0] if c.startswith("prob_")]

    def track(rows, face_id):
        return np.array([[float(r[c]) for c in probs] for r in rows if r["face_id"] == face_id])

    a, b = track(raw, raw[0]["face_id"]), track(smooth, raw[0]["face_id"])
    expected = [a[0]]
    for p in a[1:]:
        expected.append(0.8 * expected[-1] + 0.2 * p)
    np.testing.assert_allclose(b, np.array(expected), atol=2e-6)
    assert np.abs(np.diff(b, axis=0)).mean() < np.abs(np.diff(a, axis=0)).mean()  # steadier


def test_camera_uses_the_same_reader(ckpt, clip, tmp_path, monkeypatch):
    """camera:0 goes through cv2.VideoCapture(0); here that capture is the test video, as a camera would stream."""
    real = cv2.VideoCapture
    monkeypatch.setattr(cv2, "VideoCapture", lambda source: real(str(clip)) if source == 0 else real(source))
    result, rows = _predict(ckpt, tmp_path, "input=camera:0", "video_max_frames=10")
    assert result.extra["frames_sampled"] == result.extra["frames_read"] == 10
    assert max(int(r["frame"]) for r in rows) <= 9
    assert result.extra["tracks"] == 2


def test_annotated_video_is_written_whole(ckpt, clip, tmp_path):
    out = tmp_path / "annotated.mp4"
    _predict(ckpt, tmp_path, f"input={clip}", f"annotate_video={out}", "video_every=2")
    capture = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == FRAMES // 2 and frames[0].shape == (480, 640, 3)
    assert [p.name for p in tmp_path.glob(".annotated*")] == []  # no temporary file left behind
    with pytest.raises(UserError, match="OpenCV cannot write this format"):
        _predict(ckpt, tmp_path, f"input={clip}", f"annotate_video={tmp_path / 'drawn.unknownformat'}")
    assert [p.name for p in tmp_path.glob(".drawn*")] == []


def test_bad_videos_and_cameras_are_one_line(ckpt, tmp_path, monkeypatch):
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 100)
    with pytest.raises(DataError, match="broken.mp4: not a video OpenCV can read"):
        _predict(ckpt, tmp_path, f"input={tmp_path / 'broken.mp4'}")
    with pytest.raises(DataError, match="video not found"):
        _predict(ckpt, tmp_path, f"input={tmp_path / 'nope.mp4'}")
    real = cv2.VideoCapture

    class NoCamera:
        def __init__(self, source):
            self.inner = real(str(tmp_path / "nope.mp4"))

        def __getattr__(self, name):
            return getattr(self.inner, name)

    monkeypatch.setattr(cv2, "VideoCapture", NoCamera)
    with pytest.raises(DataError, match="camera:3: no camera at index 3"):
        _predict(ckpt, tmp_path, "input=camera:3")
    monkeypatch.undo()
    with pytest.raises(UserError, match="one video"):
        _predict(ckpt, tmp_path, f"input=[{tmp_path / 'a.mp4'},{tmp_path / 'b.jpg'}]")
    assert not (tmp_path / "video.csv").exists()  # nothing written for a failed call


def test_runtime_video_api_and_tracker(clip, tmp_path):
    """The library route, no predict.py: classify_video with any predict function, and the tracker's rules."""
    from fer.runtime.video import IouTracker, VideoStats, classify_video

    def uniform(crops):
        return np.full((len(crops), 7), 1 / 7, np.float32)

    stats = VideoStats()
    rows = list(classify_video(uniform, str(clip), every=2, stats=stats))
    assert stats.frames_sampled == FRAMES // 2 and {r.face_id for r in rows} == {0, 1}
    tracker = IouTracker(min_iou=0.3, max_missed=1)
    a = tracker.update([(0, 0, 10, 10)], 1)[0].id
    assert tracker.update([(1, 1, 10, 10)], 2)[0].id == a  # overlapping: the same face
    assert tracker.update([(50, 50, 10, 10)], 3)[0].id != a  # elsewhere: a new face
    assert tracker.update([(1, 1, 10, 10)], 5)[0].id != a  # the first track expired after missing 2 frames


def test_a_missing_camera_is_fers_line_alone(capfd):
    """OpenCV's own log lines (V4L2 "can't open camera by index", "Camera index out of range") are not shown
    before fer's: they come from C++ straight to the file descriptor, so this reads fd 2."""
    from fer.runtime.video import VideoSource

    with pytest.raises(DataError, match="camera:7: no camera at index 7"):
        VideoSource("camera:7")
    assert capfd.readouterr().err == ""
