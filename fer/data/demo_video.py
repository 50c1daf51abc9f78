"""A short video with two real faces moving across 640x480 frames (the astronaut photo that ships with
scikit-image, and its mirror image): what the tests and bench/predict_speed.py read as a camera or a clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_two_face_video(path: str | Path, frames: int = 24, fps: int = 12) -> Path:
    """The astronaut's head top left moving right, her mirror image bottom right moving left, 8 px a frame
    (mp4v in .mp4, MJPG in .avi)."""
    import cv2
    from skimage.data import astronaut

    path = Path(path)
    head = cv2.cvtColor(astronaut()[20:220, 120:320], cv2.COLOR_RGB2BGR)  # 200x200 around the face
    mirror = np.ascontiguousarray(head[:, ::-1])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*("MJPG" if path.suffix == ".avi" else "mp4v")),
                             fps, (640, 480))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    for i in range(frames):
        frame = np.full((480, 640, 3), 90, np.uint8)
        step = (i * 8) % 220  # longer clips go back and forth over the same 220 px
        frame[20:220, 20 + step:220 + step] = head
        frame[260:460, 420 - step:620 - step] = mirror
        writer.write(frame)
    writer.release()
    return path
