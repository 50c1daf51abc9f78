"""HOG descriptors of a whole batch of 48x48 images at once (numpy), and the stateless sklearn transformer that
the SVM's pipeline starts with."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from fer.classes import IMAGE_SIZE


def hog_batch(images: np.ndarray, orientations: int = 9, cell: int = 8, block: int = 2, block_norm: str = "L2-Hys",
              transform_sqrt: bool = False, soft_binning: bool = False, eps: float = 1e-5) -> np.ndarray:
    """HOG of a whole batch [N,H,W] (floats) at once -> float32 [N, n_features].

    With soft_binning=False this is exactly skimage.feature.hog(image, orientations, (cell, cell),
    (block, block), block_norm) per image (central differences, unsigned 0-180 degree orientations, one bin per
    pixel, cell means, overlapping blocks with stride one cell); soft_binning splits each pixel's vote linearly
    between the two nearest orientation bins (Dalal & Triggs)."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 3:
        raise ValueError(f"hog_batch expects [N,H,W] images, got shape {x.shape}")
    if transform_sqrt:
        x = np.sqrt(np.clip(x, 0, None))
    n, h, w = x.shape
    ncy, ncx = h // cell, w // cell
    if ncy < block or ncx < block:
        raise ValueError(f"{h}x{w} images are too small for {block}x{block} blocks of {cell}-pixel cells")
    g_row = np.zeros_like(x)
    g_col = np.zeros_like(x)
    g_row[:, 1:-1, :] = x[:, 2:, :] - x[:, :-2, :]
    g_col[:, :, 1:-1] = x[:, :, 2:] - x[:, :, :-2]
    g_row, g_col = g_row[:, :ncy * cell, :ncx * cell], g_col[:, :ncy * cell, :ncx * cell]
    magnitude = np.hypot(g_row, g_col)
    position = (np.rad2deg(np.arctan2(g_row, g_col)) % 180.0) * (orientations / 180.0)  # in bin widths
    if soft_binning:
        low = np.floor(position - 0.5)
        frac = position - 0.5 - low
        b0 = low.astype(np.int64) % orientations
        bins = np.stack([b0, (b0 + 1) % orientations])
        weights = np.stack([magnitude * (1 - frac), magnitude * frac])
    else:
        bins = np.minimum(position.astype(np.int64), orientations - 1)[None]
        weights = magnitude[None]
    # flat index (image, cell row, cell col, bin) of every vote, summed with one bincount for the whole batch
    cell_of_pixel = (np.arange(ncy * cell) // cell)[:, None] * ncx + (np.arange(ncx * cell) // cell)[None, :]
    base = (np.arange(n)[:, None, None] * (ncy * ncx) + cell_of_pixel[None]) * orientations
    hist = np.bincount((base[None] + bins).ravel(), weights=weights.ravel().astype(np.float64),
                       minlength=n * ncy * ncx * orientations)
    hist = hist.reshape(n, ncy, ncx, orientations) / (cell * cell)
    nby, nbx = ncy - block + 1, ncx - block + 1
    blocks = np.stack([hist[:, i:i + nby, j:j + nbx] for i in range(block) for j in range(block)], axis=3)
    blocks = blocks.reshape(n, nby, nbx, block * block * orientations)

    def l2(a: np.ndarray) -> np.ndarray:
        return a / np.sqrt((a * a).sum(axis=-1, keepdims=True) + eps ** 2)

    if block_norm == "L2":
        out = l2(blocks)
    elif block_norm == "L2-Hys":
        out = l2(np.minimum(l2(blocks), 0.2))
    elif block_norm == "L1":
        out = blocks / (np.abs(blocks).sum(axis=-1, keepdims=True) + eps)
    elif block_norm == "L1-sqrt":
        out = np.sqrt(blocks / (np.abs(blocks).sum(axis=-1, keepdims=True) + eps))
    else:
        raise ValueError(f"block_norm must be L1, L1-sqrt, L2 or L2-Hys, got {block_norm!r}")
    return out.reshape(n, -1).astype(np.float32)


class HogFeatures(TransformerMixin, BaseEstimator):
    """Stateless sklearn transformer: images (flattened [N,2304], [N,48,48] or [N,1,48,48], floats in [0,1])
    -> HOG features, one descriptor per cell size, concatenated."""

    def __init__(self, orientations: int = 9, cell_sizes: tuple[int, ...] = (8,), cells_per_block: int = 2,
                 block_norm: str = "L2-Hys", transform_sqrt: bool = False, soft_binning: bool = False,
                 chunk: int = 1024):
        self.orientations, self.cell_sizes, self.cells_per_block = orientations, cell_sizes, cells_per_block
        self.block_norm, self.transform_sqrt, self.soft_binning, self.chunk = \
            block_norm, transform_sqrt, soft_binning, chunk

    def fit(self, X: Any = None, y: Any = None) -> "HogFeatures":
        self.n_features_in_ = IMAGE_SIZE * IMAGE_SIZE
        return self

    def transform(self, X: Any) -> np.ndarray:
        x = np.asarray(X, dtype=np.float32).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
        parts = []
        for start in range(0, len(x), self.chunk):  # bounds the temporary [chunk,48,48] arrays
            part = x[start:start + self.chunk]
            parts.append(np.concatenate([
                hog_batch(part, self.orientations, int(c), self.cells_per_block, self.block_norm,
                          self.transform_sqrt, self.soft_binning) for c in self.cell_sizes], axis=1))
        return np.concatenate(parts) if parts else np.empty((0, 0), np.float32)

    def __sklearn_is_fitted__(self) -> bool:
        return True  # nothing to learn
