"""Procedurally drawn 48x48 grayscale faces for the seven FER2013 expressions.

This is the embedded default data set: it lets ``python train.py`` run with nothing downloaded,
and lets the benchmark tile it up to a million images. One job only: draw a face whose geometry
encodes the expression, then spoil it with the nuisances real face crops have.

Two layers of randomness, both drawn from a per-item generator ``default_rng([seed, index])``
so image ``i`` depends only on (seed, i, label, nuisance) and can be produced in any chunking:

* expression geometry (always on): every class has a mean shape (mouth curve and opening,
  brow height and slant, eye openness, disgust's nose wrinkle / raised lip) plus within-class
  jitter wide enough that neighbouring classes overlap, as real expressions do;
* nuisance (scaled by ``nuisance``; 0 gives clean, canonical, centred faces): identity
  (face shape, feature placement, skin and background tones, hair), pose (one affine warp:
  rotation, scale, shift), lighting gradient, contrast, blur, occlusion (hands, sunglasses,
  bars) and sensor noise.

At the default ``nuisance=1`` a HOG + linear classifier lands well below a small CNN, and
neither is perfect (numbers in the README).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from fer.classes import IMAGE_SIZE, NUM_CLASSES

__all__ = ["synthetic_labels", "render_faces"]

S = IMAGE_SIZE
_SHIFT = 4                      # cv2 sub-pixel bits: coordinates are passed as int(x * 16)
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA

# Normalised pixel coordinates in [-1, 1] for the lighting gradient (computed once, not per image).
_XX, _YY = np.meshgrid(np.linspace(-1, 1, S, dtype=np.float32), np.linspace(-1, 1, S, dtype=np.float32))
# Sensor noise is a window of this fixed Gaussian bank at a per-image random offset: as random as fresh draws
# for our purposes (262k distinct windows) but ~100x cheaper than standard_normal((48, 48)) per image.
_NOISE = np.random.default_rng(0x0153).standard_normal(1 << 18, dtype=np.float32)
# Parameter t along the mouth from the left corner (-1) to the right (+1).
_T = np.linspace(-1.0, 1.0, 9)
_T2 = _T * _T

# Class means of the expression geometry, in canonical 48-px face units. Columns:
#  brow_raise  (+ = brows lower)       brow_inner (+ = inner ends pulled down, - = up)
#  eye_open    (half-height of eye)    mouth_w    (half-width)
#  mouth_curve (+ = corners up)        mouth_open (gap between lips)
#  lip_raise   (one-sided upper-lip lift, disgust)   wrinkle (nose-wrinkle strength)
#  mouth_round (exponent of the opening's shape: low = slit/rectangle, high = pointed oval)
_MEAN = np.array([
    # raise inner  eye   mw    curve  open  lip   wrinkle round
    [2.0,   2.8,  1.05, 5.0,  -0.9,  0.2,  0.0,  0.35,  0.5],   # angry: lowered, knitted brows, pressed lips
    [0.7,   0.6,  0.70, 5.5,  -1.4,  1.0,  2.8,  1.10,  0.5],   # disgust: narrowed eyes, wrinkled nose, raised lip
    [-2.0, -1.6,  2.40, 7.5,  -0.9,  2.6,  0.0,  0.00,  0.3],   # fear: raised inner brows, wide eyes, stretched open mouth
    [-0.3,  0.0,  1.05, 8.3,   3.2,  1.6,  0.0,  0.00,  0.5],   # happy: smile, often open with teeth, cheeks narrow eyes
    [-0.4, -2.6,  1.15, 6.0,  -2.7,  0.0,  0.0,  0.00,  0.5],   # sad: inner brows up, corners down
    [-3.4,  0.0,  2.60, 4.4,   0.0,  6.2,  0.0,  0.00,  0.6],   # surprise: high arched brows, wide eyes, round open mouth
    [0.0,   0.0,  1.55, 6.3,   0.0,  0.0,  0.0,  0.00,  0.5],   # neutral: level brows, flat closed mouth
], dtype=np.float64)
# Within-class standard deviation of each column: big enough that classes overlap a little.
_SD = np.array([0.8, 0.9, 0.3, 0.9, 0.75, 0.9, 0.8, 0.3, 0.08])
_N_EXPR = _MEAN.shape[1]
_N_UNIFORM = 64                 # uniform draws per face (identity + nuisance), one rng call
assert _MEAN.shape[0] == NUM_CLASSES


def synthetic_labels(n: int, seed: int) -> np.ndarray:
    """Class-balanced labels (counts differ by at most 1), shuffled deterministically by ``seed``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    # A three-word key (last word non-zero) is a stream no face's two-word key rng([seed, i]) can equal.
    rng = np.random.default_rng([int(seed), 0x5EED, 1])
    # Which classes get the n % 7 extra items is itself random, so small sets are not biased to class 0.
    labels = np.concatenate([np.repeat(np.arange(NUM_CLASSES), n // NUM_CLASSES),
                             rng.permutation(NUM_CLASSES)[: n % NUM_CLASSES]]).astype(np.int64)
    return rng.permutation(labels)


def render_faces(labels: np.ndarray, seed: int, nuisance: float = 1.0, out: np.ndarray | None = None,
                 *, start: int = 0) -> np.ndarray:
    """Draw one 48x48 uint8 face per label; returns ``out`` (allocated when None) of shape [n, 48, 48].

    Image k is drawn with ``default_rng([seed, start + k])``: it depends only on the seed, its global
    index, its label and ``nuisance``. ``start`` lets a caller render ``labels[a:b]`` into
    ``out[a:b]`` with ``start=a`` and get exactly what a one-shot call would have written there.
    ``nuisance`` in [0, 3] scales every identity/pose/photometric perturbation (0: clean, 1: the default
    difficulty); the expression jitter does not depend on it. ``seed`` must be a non-negative int.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"labels must lie in 0..{NUM_CLASSES - 1}")
    if not 0.0 <= nuisance <= 3.0:
        raise ValueError(f"nuisance must lie in [0, 3], got {nuisance}")
    n = labels.shape[0]
    if out is None:
        out = np.empty((n, S, S), dtype=np.uint8)
    elif out.shape != (n, S, S) or out.dtype != np.uint8:
        raise ValueError(f"out must be uint8 of shape {(n, S, S)}, got {out.dtype} {out.shape}")
    for k in range(n):
        out[k] = _render_one(int(labels[k]), np.random.default_rng([int(seed), int(start) + k]), float(nuisance))
    return out


# ----------------------------------------------------------------------------------------------
# drawing helpers: coordinates are floats in pixels, converted to cv2's fixed point here

def _clip(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x * _ONE)), int(round(y * _ONE))


def _ellipse(img, cx, cy, ax, ay, angle, color, thickness=-1, a0=0, a1=360):
    cv2.ellipse(img, _pt(cx, cy), _pt(max(ax, 0.1), max(ay, 0.1)), angle, a0, a1, color, thickness, _AA, _SHIFT)


def _poly(xs, ys) -> np.ndarray:
    pts = np.empty((len(xs), 2), np.float64)
    pts[:, 0] = xs
    pts[:, 1] = ys
    return np.rint(pts * _ONE).astype(np.int32)


def _render_one(label: int, rng: np.random.Generator, nu: float) -> np.ndarray:
    # Python floats, not numpy scalars: scalar maths on numpy types is ~10x slower and this is the hot loop.
    z = (_MEAN[label] + _SD * rng.standard_normal(_N_EXPR)).tolist()
    ui = iter(rng.random(_N_UNIFORM).tolist())

    def U(lo: float = -1.0, hi: float = 1.0) -> float:
        return lo + (hi - lo) * next(ui)

    def J(amount: float) -> float:
        """Identity/nuisance jitter in [-amount, amount], scaled by the nuisance level."""
        return nu * amount * (2.0 * next(ui) - 1.0)

    brow_raise, brow_inner, eye_open, mouth_w, curve, mouth_open, lip_raise, wrinkle, roundness = z
    # Some expressions come in a closed and an open variant (closed smile vs grin, pressed lips vs shouting).
    if label == 3 and U(0, 1) < 0.35:
        mouth_open = 0.0
    elif label == 0 and U(0, 1) < 0.25:
        mouth_open = 2.5 + U(0, 1.5)          # angry shout / bared teeth
    eye_open = _clip(eye_open, 0.35, 3.2)
    mouth_w = _clip(mouth_w, 3.0, 10.5)
    mouth_open = max(mouth_open, 0.0)
    lip_raise = max(lip_raise, 0.0)
    wrinkle = _clip(wrinkle, 0.0, 1.5)
    roundness = _clip(roundness, 0.2, 0.8)

    # ---- identity (scaled by nu): tones and proportions differ between people
    skin = _clip(150.0 + J(55), 40.0, 235.0)
    bg = _clip(skin + (60 + J(20)) * (1 if U(0, 1) < 0.5 else -1) * (0.4 + 0.6 * nu), 10, 245) \
        if nu > 0 else 60.0
    dark = max(skin - 95.0 + J(20), 5.0)      # brows, pupils, mouth cavity
    line = max(skin - 65.0 + J(15), 10.0)     # lids, lip line, wrinkles
    face_ax, face_ay = 16.5 + J(2), 20.5 + J(2)
    cx, cy = 24.0, 25.5
    eye_dx, eye_y = 7.6 + J(1.0), 21.0 + J(1.2)
    eye_w = 3.4 + J(0.6)
    brow_y = eye_y - 5.0 + J(0.8)
    mouth_y = 35.5 + J(1.5)
    brow_t = 2 if U(0, 1) < 0.7 else 1
    side = 1.0 if U(0, 1) < 0.5 else -1.0     # which side disgust lifts the upper lip on

    img = np.empty((S, S), np.uint8)
    img.fill(int(bg))
    # background clutter: a couple of blobs/edges behind the head, so the face is not on a flat field
    if U(0, 1) < 0.6 * nu:
        _ellipse(img, U(0, 48), U(0, 48), U(4, 14), U(3, 10), U(0, 180), int(_clip(bg + J(70), 0, 255)))
        cv2.line(img, _pt(U(0, 48), 0), _pt(U(0, 48), 47.9), int(_clip(bg + J(60), 0, 255)),
                 1 + int(U(0, 3)), _AA, _SHIFT)

    # hair: a darker (or lighter) cap behind/above the face; shape varies per person
    hair = U(0, 1) < 0.75 if nu > 0 else False
    hair_tone = int(_clip(skin - 80 + J(70), 0, 255))
    hair_h = U(0.0, 4.0)
    if hair:
        _ellipse(img, cx, cy - 2.5 - hair_h, face_ax + 2.0, face_ay + 0.5, 0, hair_tone)
    _ellipse(img, cx, cy, face_ax, face_ay, 0, int(skin))
    if hair:                                  # fringe over the forehead
        _ellipse(img, cx, cy - face_ay + 2.0 - hair_h, face_ax - 1.0, 4.0 + hair_h * 0.5, 0, hair_tone, -1, 180, 360)

    # ---- eyes: sclera, pupil, upper lid. Wide eyes show sclera above the pupil (fear, surprise).
    sclera = int(min(skin + 55.0, 250.0))
    for sx in (-1.0, 1.0):
        ex = cx + sx * eye_dx
        _ellipse(img, ex, eye_y, eye_w, eye_open, 0, sclera)
        pr = min(1.6, eye_open)
        _ellipse(img, ex, eye_y + 0.15 * eye_open, 1.6, pr, 0, int(dark))
        _ellipse(img, ex, eye_y, eye_w + 0.3, eye_open + 0.2, 0, int(line), 1, 180, 360)
        # ---- brows: inner end moved by brow_inner (angry down, sad/fear up), outer end less;
        # surprise raises and arches them.
        bin_x, bout_x = cx + sx * 2.4, cx + sx * (eye_dx + eye_w + 1.2)
        bin_y = brow_y + brow_raise + brow_inner
        bout_y = brow_y + brow_raise - 0.3 * brow_inner
        arch = 0.6 + max(-brow_raise, 0.0) * 0.35
        bx = np.array([bin_x, 0.5 * (bin_x + bout_x), bout_x])
        by = np.array([bin_y, 0.5 * (bin_y + bout_y) - arch, bout_y])
        cv2.polylines(img, [_poly(bx, by)], False, int(dark), brow_t, _AA, _SHIFT)

    # ---- nose: bridge shadow and nostrils; disgust wrinkles the bridge with short horizontal creases
    ny = mouth_y - 5.5
    cv2.line(img, _pt(cx + 0.8, eye_y + 1.5), _pt(cx + 1.3, ny - 0.5), int(skin - 30), 1, _AA, _SHIFT)
    _ellipse(img, cx - 1.8, ny, 1.1, 0.6, 0, int(line))
    _ellipse(img, cx + 1.8, ny, 1.1, 0.6, 0, int(line))
    if wrinkle > 0.25:
        w_tone = int(skin - 45 * min(wrinkle, 1.2))
        for dy in (0.0, 2.0):
            y0 = eye_y + 0.5 + dy
            cv2.line(img, _pt(cx - 2.5, y0), _pt(cx + 2.5, y0 + 0.4), w_tone, 1, _AA, _SHIFT)

    # ---- mouth: lips follow y = mouth_y - curve * t^2; an opening bulges the lips apart by
    # mouth_open * (1 - t^2)^roundness; disgust lifts one side of the upper lip.
    xs = cx + mouth_w * _T
    mid = mouth_y - curve * _T2 + curve * 0.5
    env = (1.0 - _T2) ** roundness
    lift = lip_raise * np.maximum(side * _T + 0.2, 0.0) * (1.0 - 0.6 * _T2)
    upper = mid - 0.35 * mouth_open * env - lift
    lower = mid + 0.65 * mouth_open * env
    if mouth_open + lip_raise > 0.6:
        cavity = _poly(np.concatenate([xs, xs[::-1]]), np.concatenate([upper, lower[::-1]]))
        cv2.fillPoly(img, [cavity], int(dark), _AA, _SHIFT)
        if label == 3 or (label == 0 and mouth_open > 2.0):   # teeth: a light band under the upper lip
            teeth = _poly(np.concatenate([xs[1:-1], xs[-2:0:-1]]),
                          np.concatenate([upper[1:-1], (upper + 0.45 * (lower - upper))[-2:0:-1]]))
            cv2.fillPoly(img, [teeth], sclera, _AA, _SHIFT)
        cv2.polylines(img, [cavity], True, int(line), 1, _AA, _SHIFT)
    else:
        cv2.polylines(img, [_poly(xs, mid)], False, int(dark), 1 + (U(0, 1) < 0.5), _AA, _SHIFT)
    # lower-lip shadow and (for smiles/disgust) nasolabial creases, which make the mouth readable at 48 px
    cv2.polylines(img, [_poly(xs[2:-2], lower[2:-2] + 1.8)], False, int(skin - 22), 1, _AA, _SHIFT)
    if curve > 1.5 or lip_raise > 1.5:
        for sx in (-1.0, 1.0):
            cv2.line(img, _pt(cx + sx * 3.0, ny - 1.0), _pt(cx + sx * (mouth_w + 1.2), mid[0] - curve * 0.5 + 0.5),
                     int(skin - 35), 1, _AA, _SHIFT)

    # sunglasses (attached to the face, so drawn before the pose warp)
    if U(0, 1) < 0.06 * nu:
        cv2.rectangle(img, _pt(cx - eye_dx - eye_w - 1.5, eye_y - 2.8), _pt(cx + eye_dx + eye_w + 1.5, eye_y + 2.8),
                      int(U(0, 40)), -1, _AA, _SHIFT)

    # ---- pose: one similarity warp (rotation, scale, shift) about the face centre
    angle = J(15.0)
    scale = 1.0 + J(0.14)
    tx, ty = J(5.0), J(4.0)
    if nu > 0:
        # same matrix as cv2.getRotationMatrix2D((cx, cy), angle, scale) plus the shift, built in Python (cheaper)
        a = math.radians(angle)
        ca, sa = scale * math.cos(a), scale * math.sin(a)
        m = np.array([[ca, sa, (1 - ca) * cx - sa * cy + tx], [-sa, ca, sa * cx + (1 - ca) * cy + ty]])
        img = cv2.warpAffine(img, m, (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    # ---- occlusion in image space: a hand/object blob or a bar across part of the face
    if U(0, 1) < 0.15 * nu:
        tone = int(_clip(skin + J(60), 0, 255))
        if U(0, 1) < 0.5:
            _ellipse(img, U(4, 44), U(24, 48), U(6, 12), U(5, 10), U(0, 180), tone)
        else:
            y0 = U(8, 40)
            x0 = U(-10, 30)
            cv2.rectangle(img, _pt(x0, y0), _pt(x0 + U(12, 40), y0 + U(3, 9)), tone, -1, _AA, _SHIFT)

    # ---- photometric: lighting gradient, contrast, blur, sensor noise
    if nu == 0:
        return img
    if U(0, 1) < 0.3 * nu:
        img = cv2.GaussianBlur(img, (0, 0), U(0.5, 0.6 + 0.4 * nu))
    # lighting: gain * (1 + gx*x + gy*y), a linear ramp as from a side light; then offset + noise.
    # The last cv2.addWeighted saturates to uint8, so there is no separate clip/convert pass.
    gain = 1.0 + J(0.25)
    light = cv2.addWeighted(_XX, gain * J(0.35), _YY, gain * J(0.35), gain)
    f = img.astype(np.float32)
    f *= light
    o = int(U(0, _NOISE.size - S * S))
    noise = _NOISE[o:o + S * S].reshape(S, S)
    return cv2.addWeighted(f, 1.0, noise, U(0.0, 8.0) * nu, J(25.0), dtype=cv2.CV_8U)
