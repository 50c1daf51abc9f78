"""Faces in photos for predict.py: decode each photo, find and crop its faces (fer.runtime.faces: YuNet by default,
or face_detector=haar | lbp), and write annotated copies."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fer.classes import IMAGE_SIZE
from fer.data.bad_input import BadInputLog
from fer.runtime.faces import Box, FaceDetector, draw_faces
from fer.runtime.images import DEFAULT_MAX_PIXELS, decode_file
from fer.errors import UserError

@dataclass
class FaceScan:
    """What the detector found: per photo its boxes, and all face crops stacked in photo order."""

    photos: list[str] = field(default_factory=list)  # readable photos, in input order
    boxes: list[list[Box]] = field(default_factory=list)  # per photo
    crops: np.ndarray = field(default_factory=lambda: np.empty((0, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8))
    skipped: BadInputLog = field(default_factory=lambda: BadInputLog("skip"))
    detector: str = ""  # which detector found them

    @property
    def n_faces(self) -> int:
        return len(self.crops)


def scan_photos(paths: list[str], detector: FaceDetector, on_bad_image: str = "error", progress: bool = False,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> FaceScan:
    """Decode each photo, detect faces, crop them. Unreadable photos raise (naming the file) or, with
    on_bad_image=skip, are counted in scan.skipped."""
    bad = BadInputLog(on_bad_image, max_pixels)
    scan = FaceScan(skipped=bad, detector=detector.describe())
    crops: list[np.ndarray] = []
    iterator = paths
    if progress and len(paths) > 20:
        from tqdm.auto import tqdm

        iterator = tqdm(paths, desc="detecting faces", unit="photo", mininterval=0.5)
    for path in iterator:
        try:
            img = decode_file(path, max_pixels)
        except (ValueError, OSError, cv2.error) as exc:
            bad.bad(path, str(exc))
            continue
        boxes, found = detector.faces(img)
        scan.photos.append(path)
        scan.boxes.append(boxes)
        crops += list(found)
    if crops:
        scan.crops = np.stack(crops)
    return scan


def annotated_path(target: Path) -> Path:
    """Where the annotated copy of a photo goes: its own name, or .png where OpenCV has no writer for that format.
    Decided before writing, so the output guard checks the file that is really written."""
    return target if cv2.haveImageWriter(str(target)) else target.with_suffix(".png")


def annotate_photo(path: str, boxes: list[Box], probs: np.ndarray, out_path: Path) -> Path:
    """A copy of the photo with each face's box and predicted label (and probability) drawn on it, at out_path
    (from annotated_path)."""
    img = draw_faces(decode_file(path), boxes, probs)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        ok = cv2.imwrite(str(out_path), img)
    except cv2.error:
        ok = False
    if not ok:
        raise UserError(f"cannot write annotated photo {out_path}")
    return out_path
