"""Image quality flags over a [N,48,48] uint8 array, vectorised: blank, low-information, likely non-face.

* blank: (near-)constant pixels, std < `blank_std` (FER2013 has all-black images).
* low_information: grey-level entropy below `low_entropy` bits (of 8): few distinct grey levels in very
  uneven amounts. On FER2013 these are the "this person moved or deleted this image" text placeholders,
  warning-triangle placeholders and binarised (two-tone) faces.
* likely_non_face: far from the "face space" of the audited images themselves (the eigenface test of
  Turk & Pentland): each image is downsampled to 24x24, standardised, and projected on the top
  `components` principal components of the set; the fraction of its energy left outside them is the
  residual. Text pages, line drawings and cartoons score highest; photographs of faces rarely do.
  OpenCV's bundled Haar cascade misses too many tight 48x48 crops to be a signal (it found a face in only
  610 of 1,000 FER2013 publictest images upscaled to 96 px), so this statistical signal is the one used. It needs enough images to learn the face
  space (`min_images`); below that it is skipped. It flags "not like the other images", so a few real
  photographs with unusual framing are flagged too: treat it as a list to look at, not to delete.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fer.data.threads import one_blas_thread

BLANK_STD = 2.0
LOW_ENTROPY = 3.0
NON_FACE_RESIDUAL = 0.55
NON_FACE_COMPONENTS = 50
NON_FACE_MIN_IMAGES = 1000
_FIT_SAMPLE = 4000
_CHUNK = 4096


@dataclass
class Quality:
    """Per-image statistics and flags, aligned with `indices` (cache indices, sorted)."""

    indices: np.ndarray
    std: np.ndarray
    unique: np.ndarray  # number of distinct grey levels
    entropy: np.ndarray  # bits
    residual: np.ndarray  # face-space residual (nan where not computed)
    blank: np.ndarray
    low_information: np.ndarray
    likely_non_face: np.ndarray
    non_face_checked: bool


def pixel_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(std float32, distinct grey levels int, grey-level entropy in bits float32) per image."""
    n = len(images)
    flat = np.asarray(images).reshape(n, -1)
    std = np.empty(n, np.float32)
    unique = np.empty(n, np.int64)
    entropy = np.empty(n, np.float32)
    for s in range(0, n, _CHUNK):
        x = flat[s:s + _CHUNK]
        c = len(x)
        std[s:s + c] = x.std(axis=1, dtype=np.float32)
        # one bincount gives every image's 256-bin histogram
        hist = np.bincount((np.arange(c, dtype=np.int64)[:, None] * 256 + x).ravel(), minlength=c * 256)
        hist = hist.reshape(c, 256)
        unique[s:s + c] = (hist > 0).sum(axis=1)
        p = hist / float(x.shape[1])
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy[s:s + c] = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)
    return std, unique, entropy


def face_space_residual(images: np.ndarray, usable: np.ndarray, components: int = NON_FACE_COMPONENTS,
                        seed: int = 0) -> np.ndarray:
    """Fraction of each image's (standardised, 24x24) energy outside the top principal components of the
    usable images (a seeded sample of up to 4000 fits them). nan for unusable images."""
    n = len(images)
    small = np.empty((n, 24 * 24), np.float32)
    for s in range(0, n, _CHUNK):  # 2x2 mean pooling in chunks: no full float copy of the images
        x = np.asarray(images[s:s + _CHUNK], dtype=np.float32)
        small[s:s + len(x)] = x.reshape(len(x), 24, 2, 24, 2).mean(axis=(2, 4)).reshape(len(x), -1)
    small -= small.mean(axis=1, keepdims=True)
    small /= np.maximum(np.sqrt(np.einsum("nk,nk->n", small, small)), 1e-6)[:, None]
    pool = np.flatnonzero(usable)
    fit = np.random.default_rng(seed).choice(pool, min(len(pool), _FIT_SAMPLE), replace=False)
    mean = small[fit].mean(axis=0)
    centred = (small[fit] - mean).astype(np.float64)
    _, vecs = np.linalg.eigh(centred.T @ centred)  # 576x576
    basis = vecs[:, ::-1][:, :components].astype(np.float32)
    z = small - mean
    proj = z @ basis
    energy = np.maximum(np.einsum("nk,nk->n", z, z), 1e-12)
    residual = 1.0 - np.einsum("nk,nk->n", proj, proj) / energy
    residual[~usable] = np.nan
    return residual.astype(np.float32)


def assess_quality(images: np.ndarray, indices: np.ndarray | None = None, blank_std: float = BLANK_STD,
                   low_entropy: float = LOW_ENTROPY, non_face: bool = True,
                   non_face_residual: float = NON_FACE_RESIDUAL, components: int = NON_FACE_COMPONENTS,
                   min_images: int = NON_FACE_MIN_IMAGES) -> Quality:
    indices = np.arange(len(images)) if indices is None else np.unique(np.asarray(indices, dtype=np.int64))
    x = np.asarray(images) if len(indices) == len(images) else np.asarray(images[indices])
    std, unique, entropy = pixel_statistics(x)
    blank = std < blank_std
    low_info = ~blank & (entropy < low_entropy)
    residual = np.full(len(x), np.nan, np.float32)
    checked = bool(non_face) and int((~blank).sum()) >= max(min_images, components + 1)
    if checked:
        with one_blas_thread():
            residual = face_space_residual(x, ~blank, components)
    with np.errstate(invalid="ignore"):
        non_face_flag = residual >= non_face_residual  # nan (blank or not checked) compares False
    return Quality(indices=indices, std=std, unique=unique, entropy=entropy, residual=residual, blank=blank,
                   low_information=low_info, likely_non_face=non_face_flag, non_face_checked=checked)
