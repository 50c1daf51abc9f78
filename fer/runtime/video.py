"""Expressions in video files and camera streams: sample frames, find the faces, classify each frame's faces in
one batch, and follow each face from frame to frame (a simple IoU tracker) so that a person keeps one id.

    from fer.runtime import ExpressionModel
    from fer.runtime.video import classify_video
    model = ExpressionModel("model.onnx")
    for row in classify_video(model.predict_proba, "clip.mp4", fps=5):      # or "camera:0"
        print(row.frame, row.time, row.face_id, row.box, row.label)

`predict` is any function from uint8 face crops [N,48,48] to probabilities [N,7] (an ExpressionModel, or
predict.py's engine for a checkpoint). Torch-free: OpenCV reads the video and draws the annotated copy.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from fer.classes import CLASS_NAMES, NUM_CLASSES
from fer.errors import DataError, UserError
from fer.runtime.atomic import Staged, reporting_target_faults
from fer.runtime.yunet import box_iou

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}
_CAMERA = re.compile(r"camera:(\d+)")

Box = tuple[int, int, int, int]


def is_video(spec: str) -> bool:
    """True for `camera:<index>` and for paths with a video file extension."""
    return bool(_CAMERA.fullmatch(spec.strip())) or Path(spec).suffix.lower() in VIDEO_EXTENSIONS


def _quiet_opencv():
    """OpenCV's and FFmpeg's own messages about a file they cannot read are not for the user: fer says it once."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    logging_module = getattr(cv2.utils, "logging", None)  # absent from the opencv-python wheels (4.12)
    if logging_module is not None:
        logging_module.setLogLevel(logging_module.LOG_LEVEL_SILENT)
    else:
        cv2.setLogLevel(0)  # 0 = LOG_LEVEL_SILENT
    return cv2


class VideoSource:
    """Frames of a video file or a camera (`camera:<index>`), checked on opening: one clear line when the file is
    missing, is not a video OpenCV can decode, or the camera is not there."""

    def __init__(self, spec: str):
        cv2 = _quiet_opencv()
        self.spec = spec.strip()
        camera = _CAMERA.fullmatch(self.spec)
        self.is_camera = camera is not None
        if self.is_camera:
            self.capture = cv2.VideoCapture(int(camera.group(1)))
            if not self.capture.isOpened():
                raise DataError(f"{self.spec}: no camera at index {camera.group(1)} (or it is in use)")
        else:
            path = Path(self.spec).expanduser()
            if not path.is_file():
                raise DataError(f"video not found: {path}")
            self.capture = cv2.VideoCapture(str(path))
            if not self.capture.isOpened():
                raise DataError(f"{path}: not a video OpenCV can read (corrupt, or a format it has no decoder for)")
        ok, self._first = self.capture.read()
        if not ok or self._first is None:
            raise DataError(f"{self.spec}: no frame could be read (an empty or damaged video, or a camera that "
                            "sends nothing)")
        fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0)
        self.fps = fps if 0 < fps < 1000 else 30.0  # cameras and some files report 0: assume 30
        self.size = (self._first.shape[1], self._first.shape[0])

    def frames(self) -> Iterator[tuple[int, float, np.ndarray]]:
        """(index, time in seconds, BGR frame) of every frame; a camera's time is the wall clock since opening."""
        start = time.monotonic()
        index, frame = 0, self._first
        while frame is not None:
            yield index, (time.monotonic() - start) if self.is_camera else index / self.fps, frame
            ok, frame = self.capture.read()
            frame = frame if ok else None
            index += 1

    def close(self) -> None:
        self.capture.release()


@dataclass
class _Track:
    id: int
    box: Box
    last_seen: int
    probs: np.ndarray | None = None  # smoothed


@dataclass
class IouTracker:
    """Greedy IoU matching of each frame's boxes to the tracks of earlier frames: a box overlapping a track by at
    least `min_iou` continues it (best overlaps first), any other box starts a new id; a track not seen for
    `max_missed` sampled frames ends."""

    min_iou: float = 0.3
    max_missed: int = 5
    tracks: list[_Track] = field(default_factory=list)
    next_id: int = 0

    def update(self, boxes: list[Box], step: int) -> list[_Track]:
        self.tracks = [t for t in self.tracks if step - t.last_seen <= self.max_missed]
        overlaps = [box_iou(t.box, boxes) for t in self.tracks] if boxes else []
        pairs = sorted(((float(row[bi]), ti, bi) for ti, row in enumerate(overlaps) for bi in range(len(boxes))),
                       reverse=True)
        matched: dict[int, _Track] = {}
        used: set[int] = set()
        for overlap, ti, bi in pairs:
            if overlap < self.min_iou:
                break
            if ti in used or bi in matched:
                continue
            used.add(ti)
            matched[bi] = self.tracks[ti]
        out = []
        for bi, box in enumerate(boxes):
            track = matched.get(bi)
            if track is None:
                track = _Track(self.next_id, box, step)
                self.next_id += 1
                self.tracks.append(track)
            track.box, track.last_seen = box, step
            out.append(track)
        return out


@dataclass
class FaceRow:
    frame: int
    time: float
    face_id: int
    box: Box
    probabilities: np.ndarray  # [7], smoothed over the track when smoothing is on
    label: str


@dataclass
class VideoStats:
    frames_read: int = 0
    frames_sampled: int = 0
    faces: int = 0
    tracks: int = 0
    seconds: float = 0.0
    interrupted: bool = False


def classify_video(predict: Callable[[np.ndarray], np.ndarray], spec: str, every: int = 1, fps: float | None = None,
                   detector=None, smooth: float = 0.0, max_frames: int | None = None,
                   annotate: Path | None = None, stats: VideoStats | None = None) -> Iterator[FaceRow]:
    """One FaceRow per face per sampled frame: every `every`-th frame, or `fps` frames per second of video. smooth
    in [0,1): each track's probabilities become an exponential moving average (smooth = weight of the past).
    annotate: also write a copy of the sampled frames with boxes, ids and labels (complete or not at all)."""
    from fer.runtime.faces import FaceDetector, draw_faces

    if every < 1:
        raise UserError(f"video_every must be >= 1, got {every}")
    if fps is not None and fps <= 0:
        raise UserError(f"video_fps must be > 0, got {fps}")
    if not 0.0 <= smooth < 1.0:
        raise UserError(f"video_smooth must be in [0, 1), got {smooth}")
    stats = stats if stats is not None else VideoStats()
    source = VideoSource(spec)
    detector = detector or FaceDetector()
    step_every = max(1, round(source.fps / fps)) if fps else every
    tracker = IouTracker(max_missed=5)
    writer = None
    started = time.perf_counter()
    complete = False
    try:
        writer = _AnnotatedVideo(annotate, source.fps / step_every, source.size) if annotate else None
        for index, t, frame in source.frames():
            if max_frames is not None and index >= max_frames:
                break
            stats.frames_read = index + 1
            if index % step_every:
                continue
            stats.frames_sampled += 1
            boxes, crops = detector.faces(frame)
            tracks = tracker.update(boxes, stats.frames_sampled)
            probs = predict(crops) if boxes else np.empty((0, NUM_CLASSES))
            shown = []
            for box, track, p in zip(boxes, tracks, probs):
                track.probs = p if track.probs is None or not smooth else smooth * track.probs + (1 - smooth) * p
                shown.append(track.probs)
                stats.faces += 1
                yield FaceRow(index, t, track.id, box, track.probs, CLASS_NAMES[int(np.argmax(track.probs))])
            if writer is not None:
                writer.write(draw_faces(frame, boxes, shown, [f"#{tr.id}" for tr in tracks]))
        complete = True
    except KeyboardInterrupt:  # a camera runs until stopped: keep what was read
        stats.interrupted = complete = True
    except GeneratorExit:  # the caller stopped reading: what was written so far is a whole video
        complete = True
        raise
    finally:
        source.close()
        stats.tracks = tracker.next_id
        stats.seconds = time.perf_counter() - started
        if writer is not None:
            writer.finish() if complete else writer.abort()


class _AnnotatedVideo:
    """An MP4 (or AVI) written to a temporary file beside the target and renamed when complete."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        cv2 = _quiet_opencv()
        self.path = Path(path).expanduser()
        self.frames = 0
        # a name of its own: two runs annotating into the same target never write into each other's file
        with reporting_target_faults(f"annotate_video={self.path}"):
            self.staged = Staged(self.path)
        fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"))
        self.writer = cv2.VideoWriter(str(self.staged.tmp), fourcc, max(fps, 1.0), size)
        if not self.writer.isOpened():
            self.staged.discard()
            raise UserError(f"annotate_video={self.path}: OpenCV cannot write this format; use .mp4 or .avi")

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(frame)
        self.frames += 1

    def finish(self) -> None:
        self.writer.release()
        try:
            with reporting_target_faults(f"annotate_video={self.path}"):
                self._check_complete()
                self.staged.publish()  # a video to share: 0666 less the umask, not mkstemp's 0600
        finally:
            self.staged.discard()

    def abort(self) -> None:
        self.writer.release()
        self.staged.discard()

    def _check_complete(self) -> None:
        """OpenCV's writer drops frames it cannot write without a word (a full disk): count them back."""
        cv2 = _quiet_opencv()
        capture = cv2.VideoCapture(str(self.staged.tmp))
        try:
            readable = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
        finally:
            capture.release()
        if readable < self.frames:
            free = shutil.disk_usage(self.staged.tmp.parent).free
            raise UserError(f"cannot write annotate_video={self.path}: only {readable} of {self.frames} frames could "
                            f"be written ({free / 2**20:.0f} MB free on its disk); nothing was left there (free some "
                            "space, or choose another place)")
