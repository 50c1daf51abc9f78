"""Deterministic scenes of faces for bench/faces.py: FER2013 face crops placed into 640x480 photos.

Per scene: a background (a crop of one of scikit-image's bundled sample images, no faces among them, plus random
shapes as clutter, under an uneven light), 2-5 faces of 24-200 px, each rotated by up to 45 degrees, blended in with
a soft oval edge (a pasted square would hand the detector its outline), lit brighter or darker; a third of them
partly covered by a bar (a hand, a cup), and a third of the scenes blurred, all with sensor noise. The same seed
gives the same scenes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

WIDTH, HEIGHT = 640, 480
SIZES = (24, 200)
MAX_ROTATION = 45.0
# face-free sample images that ship inside scikit-image (no download)
BACKGROUNDS = ("brick", "coffee", "coins", "grass", "gravel", "moon", "page", "text", "rocket", "hubble_deep_field",
               "clock", "horse", "cell", "retina", "immunohistochemistry")


@dataclass(frozen=True)
class GroundTruth:
    square: tuple[float, float, float, float]  # the face's own square (x, y, side, side), unrotated, in the scene
    angle: float  # degrees, counter-clockwise
    label: int
    index: int  # the face's row in its split
    covered: bool


def usable_faces(faces: np.ndarray, min_std: float = 5.0) -> tuple[np.ndarray, int]:
    """FER2013 holds blank images (one grey level): no detector should find a face there, so they are left out of
    the scenes (and counted)."""
    keep = faces.reshape(len(faces), -1).std(axis=1) >= min_std
    return keep, int((~keep).sum())


_backgrounds: list[np.ndarray] = []


def background_images() -> list[np.ndarray]:
    """The BACKGROUNDS as BGR uint8 images, loaded once."""
    if not _backgrounds:
        import skimage.data

        for name in BACKGROUNDS:
            img = np.asarray(getattr(skimage.data, name)())
            if img.dtype == bool:  # a binary sample image
                img = img.astype(np.uint8) * 255
            if img.dtype != np.uint8:
                img = cv2.normalize(img.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
            if img.ndim == 2:
                img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
            elif img.shape[2] == 4:
                img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGR)
            else:
                img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
            _backgrounds.append(img)
    return _backgrounds


def _background(rng: np.random.Generator) -> np.ndarray:
    src = background_images()[rng.integers(len(BACKGROUNDS))]
    h, w = src.shape[:2]
    zoom = rng.uniform(0.5, 1.0)
    ch, cw = max(16, int(h * zoom)), max(16, int(w * zoom))
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    bg = cv2.resize(src[y:y + ch, x:x + cw], (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR)
    for _ in range(rng.integers(3, 10)):  # clutter: boxes, lines and discs in random colours
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        p, q = rng.integers(0, [WIDTH, HEIGHT]), rng.integers(0, [WIDTH, HEIGHT])
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(bg, tuple(int(v) for v in p), tuple(int(v) for v in q), color, int(rng.choice([-1, 2, 4])))
        elif kind == 1:
            cv2.line(bg, tuple(int(v) for v in p), tuple(int(v) for v in q), color, int(rng.integers(1, 6)))
        else:
            cv2.circle(bg, tuple(int(v) for v in p), int(rng.integers(5, 60)), color, int(rng.choice([-1, 3])))
    return bg


def _place(rng: np.random.Generator, side: int, placed: list[tuple[float, float, float]]):
    """A centre for a face of this side whose rotated extent stays in the scene and clear of the others."""
    reach = side * 0.75  # half the diagonal of the visible oval at any rotation, with room to spare
    for _ in range(50):
        cx, cy = rng.uniform(reach, WIDTH - reach), rng.uniform(reach, HEIGHT - reach)
        if all(np.hypot(cx - x, cy - y) > reach + r for x, y, r in placed):
            return cx, cy
    return None


# What make_scene does to a face or a scene, each of which can be left out (`without`) to measure what it costs:
# its light and contrast, the cover bar, the oval edge, the turn; the scene's light ramp, blur and sensor noise
DEGRADATIONS = ("contrast", "cover", "oval", "turn", "light", "blur", "noise")


def make_scene(rng: np.random.Generator, faces: np.ndarray, labels: np.ndarray, rows: np.ndarray,
               without: frozenset[str] = frozenset()):
    """One scene: (BGR uint8 [480,640,3], [GroundTruth]). `rows` are the faces' indices in their split. `without`:
    DEGRADATIONS left out; every random number is still drawn, so the scene is the same one otherwise (same faces,
    places and sizes): the difference measures that degradation alone."""
    unknown = set(without) - set(DEGRADATIONS)
    if unknown:
        raise ValueError(f"no such degradation: {sorted(unknown)} (expected some of {', '.join(DEGRADATIONS)})")
    scene = _background(rng).astype(np.float32)
    truth: list[GroundTruth] = []
    placed: list[tuple[float, float, float]] = []
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    for _ in range(rng.integers(2, 6)):
        side = int(round(np.exp(rng.uniform(np.log(SIZES[0]), np.log(SIZES[1])))))
        spot = _place(rng, side, placed)
        if spot is None:
            continue
        k = int(rng.integers(len(faces)))
        cx, cy = spot
        angle = float(rng.uniform(-MAX_ROTATION, MAX_ROTATION)) * ("turn" not in without)
        face = cv2.resize(faces[k], (side, side), interpolation=cv2.INTER_AREA if side < 48 else cv2.INTER_CUBIC)
        gain, offset = rng.uniform(0.6, 1.3), rng.uniform(-30, 30)
        if "contrast" not in without:
            face = np.clip(face.astype(np.float32) * gain + offset, 0, 255)
        face = face.astype(np.float32)
        mask = np.zeros((side, side), np.float32)
        cv2.ellipse(mask, (side // 2, side // 2), (int(side * 0.47), int(side * 0.5)), 0, 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, side / 20)) if "oval" not in without else np.ones_like(mask)
        covered = bool(rng.random() < 1 / 3)
        if covered:  # a bar over up to a third of the face, from below or from one side
            depth = int(side * rng.uniform(0.15, 0.33))
            colour = float(rng.uniform(60, 220))
            bottom, left, right = slice(side - depth, None), slice(None, depth), slice(side - depth, None)
            bar = ((bottom, slice(None)) if rng.random() < 0.5 else
                   (slice(None), left) if rng.random() < 0.5 else (slice(None), right))
            covered = "cover" not in without
            if covered:
                face[bar] = colour
        # rotate face and mask about the face's centre, straight into scene coordinates
        m = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
        m[:, 2] += (cx - side / 2, cy - side / 2)
        warped = cv2.warpAffine(face, m, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(mask, m, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)[..., None]
        scene = scene * (1 - alpha) + warped[..., None] * alpha
        placed.append((cx, cy, side * 0.75))
        truth.append(GroundTruth((cx - side / 2, cy - side / 2, side, side), angle, int(labels[k]), int(rows[k]),
                                 covered))
    light = 0.7 + 0.6 * (xx / WIDTH * rng.uniform(-1, 1) + yy / HEIGHT * rng.uniform(-1, 1) + 1) / 2
    if "light" not in without:
        scene = scene * light[..., None].astype(np.float32)
    if rng.random() < 1 / 3:
        sigma = rng.uniform(0.7, 2.0)
        if "blur" not in without:
            scene = cv2.GaussianBlur(scene, (0, 0), sigma)
    noise = rng.normal(0, rng.uniform(1, 6), scene.shape).astype(np.float32)
    if "noise" not in without:
        scene += noise
    return np.clip(scene, 0, 255).astype(np.uint8), truth
