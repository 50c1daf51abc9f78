"""Demo files for the README's photo and video commands, made from the one real photo the project ships
(tests/data/astronaut.jpg: NASA's portrait of Eileen Collins, public domain), so they run on a fresh clone:

    python scripts/make_demo.py            # writes photo.jpg and clip.mp4 here (or: python scripts/make_demo.py DIR)
    fer-classify photo.jpg                 # four faces: upright, turned 30 degrees, mouth covered, small
    fer-classify clip.mp4 --fps 5          # the face moving and turning, one row per face per sampled frame

Needs OpenCV and numpy only (what `pip install fer-toolkit` brings).
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

ASTRONAUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "astronaut.jpg"
HEAD = (120, 20, 200, 200)  # x, y, w, h of the square around her head in the 512x512 photo


def _head(photo: np.ndarray, side: int, degrees: float = 0.0, covered: bool = False) -> np.ndarray:
    x, y, w, h = HEAD
    head = photo[y:y + h, x:x + w].copy()
    if covered:  # a hand over the mouth and chin
        cv2.rectangle(head, (60, 110), (145, 155), (40, 60, 90), -1)
    if degrees:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
        head = cv2.warpAffine(head, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(head, (side, side), interpolation=cv2.INTER_AREA)


def make_photo(photo: np.ndarray) -> np.ndarray:
    """960x540: four copies of her head on a gradient, of 220, 200, 180 and 90 px."""
    yy, xx = np.mgrid[0:540, 0:960]
    scene = np.dstack([(xx / 960 * 120 + 60), (yy / 540 * 80 + 90), np.full_like(xx, 140.0)]).astype(np.uint8)
    for (x, y), head in zip([(20, 160), (260, 120), (500, 170), (760, 240)],
                            [_head(photo, 220), _head(photo, 200, 30), _head(photo, 180, covered=True),
                             _head(photo, 90)]):
        scene[y:y + head.shape[0], x:x + head.shape[1]] = head
    return scene


def make_clip(photo: np.ndarray, path: Path, frames: int = 48, fps: int = 12) -> None:
    """640x480, 4 s: her head crossing the frame while turning from -30 to 30 degrees."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    if not writer.isOpened():
        raise SystemExit(f"OpenCV cannot write {path}")
    for i in range(frames):
        frame = np.full((480, 640, 3), 90, np.uint8)
        head = _head(photo, 200, -30 + 60 * i / (frames - 1))
        x = 20 + int(400 * i / (frames - 1))
        frame[140:340, x:x + 200] = head
        writer.write(frame)
    writer.release()


def main(argv: list[str]) -> None:
    folder = Path(argv[0]) if argv else Path.cwd()
    folder.mkdir(parents=True, exist_ok=True)
    photo = cv2.imread(str(ASTRONAUT))
    if photo is None:
        raise SystemExit(f"{ASTRONAUT}: not found (run this from a clone of the project)")
    cv2.imwrite(str(folder / "photo.jpg"), make_photo(photo), [cv2.IMWRITE_JPEG_QUALITY, 92])
    make_clip(photo, folder / "clip.mp4")
    print(f"wrote {folder / 'photo.jpg'} and {folder / 'clip.mp4'}")


if __name__ == "__main__":
    main(sys.argv[1:])
