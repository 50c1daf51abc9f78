"""predict.py's settings, read once from the composed config (conf/predict.yaml) into typed groups. Each helper is
handed the group it works with, not the whole config: what a helper depends on is in its signature, and a test
builds just that group."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from fer.config_values import as_list, is_number_type
from fer.errors import UserError
from fer.runtime.output_guard import OutputGuard


def _path(value: Any) -> Path | None:
    return Path(str(value)).expanduser() if value else None


@dataclass(frozen=True)
class Outputs:
    """What predict.py writes, where, and what it may replace."""

    csv: Path
    label_format: str  # index | name
    probabilities: bool  # prob_<class> columns
    overwrite: bool  # replace files predict.py did not write
    ledger: Path  # the record of predict.py's own earlier outputs (which it may replace)
    annotate: Path | None = None  # folder for annotated copies of the photos (face_detect)
    annotate_video: Path | None = None  # annotated copy of a video's sampled frames

    def guard(self) -> OutputGuard:
        return OutputGuard(self.ledger, self.overwrite)


@dataclass(frozen=True)
class Reading:
    """How the images are read and listed."""

    on_bad_image: str  # error | skip
    max_image_pixels: int
    progress: bool
    split: str  # auto, or a split of the data config's data
    columns: tuple[str, ...] | None  # the CSV's [image, label] column names; None: the data's own or the default


@dataclass(frozen=True)
class Scoring:
    """How the model is run."""

    device: str
    precision: str
    batch_size: int
    num_threads: int | None
    tta: bool
    tta_shifts: bool
    tta_shift: int
    progress: bool

    @property
    def shift(self) -> int:
        """The shifted views' offset in pixels, 0 for none."""
        return self.tta_shift if self.tta_shifts else 0


@dataclass(frozen=True)
class Faces:
    """face_detect=true: the detector and how it crops (fer.runtime.faces.FaceDetector's settings)."""

    KEY_PREFIX: ClassVar[str] = "face_"  # each field is read from conf/predict.yaml's face_<field>

    detector: str
    min_size: int | None
    min_neighbors: int | None
    scale_factor: float
    max_side: int | None
    score_threshold: float | None
    margin: float | None
    align: bool
    upscale: float
    turns: tuple[float, ...]

    def build(self):
        from fer.runtime.faces import FaceDetector

        return FaceDetector(self.detector, self.min_size, self.min_neighbors, self.scale_factor, self.max_side,
                            self.score_threshold, self.margin, self.align, self.upscale, turns=self.turns)


@dataclass(frozen=True)
class Video:
    """input=<video> / camera:N: which frames are classified, and how faces are followed."""

    KEY_PREFIX: ClassVar[str] = "video_"

    every: int
    fps: float | None
    smooth: float
    max_frames: int | None


@dataclass(frozen=True)
class PredictSettings:
    outputs: Outputs
    reading: Reading
    scoring: Scoring
    faces: Faces
    video: Video
    face_detect: bool

    @staticmethod
    def number_keys() -> list[str]:
        """The config keys whose values must be numbers: the fields the groups declare as numbers (int, float,
        optional or not), read from <prefix><field> (the groups' KEY_PREFIX, none for the others)."""
        keys = []
        for group in typing.get_type_hints(PredictSettings).values():
            if dataclasses.is_dataclass(group):
                hints = typing.get_type_hints(group)
                keys += [vars(group).get("KEY_PREFIX", "") + field.name for field in dataclasses.fields(group)
                         if is_number_type(hints[field.name])]
        return keys

    @classmethod
    def from_config(cls, cfg) -> PredictSettings:
        """The groups of a composed conf/predict.yaml (its numbers checked by the caller: require_numbers)."""
        columns = tuple(as_list(cfg.columns)) if cfg.get("columns") else None
        if columns is not None and len(columns) != 2:
            raise UserError(f"columns={list(columns)}: give two names, e.g. columns=[id,label]")
        return cls(
            outputs=Outputs(Path(cfg.output), cfg.label_format, bool(cfg.probabilities), bool(cfg.get("overwrite")),
                            Path(cfg.paths.cache_dir) / "outputs.json", _path(cfg.get("annotate")),
                            _path(cfg.get("annotate_video"))),
            reading=Reading(cfg.on_bad_image, cfg.max_image_pixels, bool(cfg.progress), cfg.split, columns),
            scoring=Scoring(str(cfg.device), str(cfg.precision), cfg.batch_size, cfg.get("num_threads"),
                            bool(cfg.tta), bool(cfg.tta_shifts), cfg.tta_shift, bool(cfg.progress)),
            faces=Faces(cfg.face_detector, cfg.face_min_size, cfg.face_min_neighbors, cfg.face_scale_factor,
                        cfg.face_max_side, cfg.face_score_threshold, cfg.face_margin, bool(cfg.face_align),
                        cfg.face_upscale, tuple(as_list(cfg.get("face_turns")))),
            video=Video(cfg.video_every, cfg.get("video_fps"), cfg.video_smooth, cfg.get("video_max_frames")),
            face_detect=bool(cfg.face_detect))
