"""What predict.py predicts: a split of the data config's data set, images given with input=, or the faces found
in photos. Everything here runs before torch is imported, so a wrong path fails in a fraction of a second."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fer.data.opened import OpenedData, open_data, open_data_config
from fer.data.splits import PREDICT_SPLITS, choose_split
from fer.errors import DataError, UserError
from fer.predict.settings import Faces, Reading
from fer.runtime.table import IMAGE_COLUMNS, output_names


@dataclass
class Images:
    data: OpenedData
    split: str
    idx: np.ndarray  # rows of the cache to predict
    names: list[str]  # their names in the CSV
    columns: tuple[str, ...]


def read_images(reading: Reading, data_cfg, inputs: list[str]) -> Images:
    """The images to predict, through the cache: input= files/folders, or a split of the data config's data
    (`data_cfg`, conf/data/)."""
    from fer.data.sources import ImageListSource

    if inputs:
        data = open_data(ImageListSource(paths=inputs), data_cfg.cache_dir, on_bad_image=reading.on_bad_image,
                         progress=reading.progress, max_image_pixels=reading.max_image_pixels)
        columns = IMAGE_COLUMNS
    else:
        data = open_data_config(data_cfg, on_bad_image=reading.on_bad_image, progress=reading.progress,
                                max_image_pixels=reading.max_image_pixels)
        columns = data.source.submission_columns() or IMAGE_COLUMNS
    columns = reading.columns or columns
    split = choose_split(data.cache, "auto" if inputs else reading.split, PREDICT_SPLITS)
    if split is None:
        raise UserError(f"nothing to predict: the data has no predict or test split (splits: "
                        f"{', '.join(data.cache.split_names)}); name one with split=..., or give images with input=PATH")
    idx = data.cache.split_indices(split)
    names_all = data.cache.names
    return Images(data, split, idx, output_names([names_all[i] for i in idx]), tuple(columns))


def scan_faces(faces: Faces, reading: Reading, inputs: list[str]):
    """face_detect=true: the photos of input=, their face boxes and 48x48 crops (fer.predict.faces.FaceScan)."""
    from fer.data.sources import ImageListSource
    from fer.predict.faces import scan_photos

    photos = ImageListSource(paths=inputs).manifest().names  # files and folders listed as for predict
    scan = scan_photos(photos, faces.build(), reading.on_bad_image, reading.progress, reading.max_image_pixels)
    if not scan.photos:
        raise DataError(f"none of the {len(photos)} photo(s) could be read; see the messages above")
    return scan


@dataclass
class VideoInput:
    """input=<video file> or input=camera:<index>: checked now (it opens and sends a frame), read after the model
    is loaded."""

    spec: str

    def __post_init__(self) -> None:
        from fer.runtime.video import VideoSource

        VideoSource(self.spec).close()


def video_input(inputs: list[str]) -> VideoInput | None:
    """The video to read when input= names one (a video file or camera:N), else None."""
    from fer.runtime.video import is_video

    videos = [i for i in inputs if is_video(i)]
    if not videos:
        return None
    if len(inputs) > 1:
        raise UserError(f"input={inputs}: give one video (or camera:N) at a time, not mixed with other inputs")
    return VideoInput(videos[0])
