"""Image codes for duplicate search: exact pixel hashes and a shift-tolerant perceptual hash (a pHash variant).

Exact duplicates: identical decoded pixels. Each 2304-byte row is hashed (blake2b, 64 bits), equal hashes
are grouped and every group is verified byte for byte, so a hash collision can never merge two images.

Perceptual code: the 63 lowest-frequency DCT coefficients (8x8 minus DC) of an image's central
(48-2*max_shift)^2 crop, normalised to unit length (brightness and contrast changes do not move it), rotated onto
their principal axes (over all crops coded) and split at each axis' median over the images' central crops: 63
bits, each true for half of the images and nearly uncorrelated with the others. (Aligned faces share most of
their low-frequency structure: raw coefficient signs are strongly correlated bits, and unrelated faces then
collide far more often than by chance - on the synthetic set 40x more at distance <= 6.)
A copy shifted by (dy, dx) pixels has the same central crop as the original's crop at offset
(max_shift-dy, max_shift-dx); so every image is also coded at the shifted crop offsets (half of them: pairs are
symmetric) and these codes are matched against everyone's central code. Shifts of up to `max_shift` pixels
therefore cost no Hamming distance at all; only re-encoding noise does.
"""

from __future__ import annotations

import hashlib

import numpy as np

from fer.classes import IMAGE_SIZE
from fer.data.threads import one_blas_thread

MAX_SHIFT = 2  # pixels: copies shifted by up to this much are matched at no cost
HASH_BITS = 63
_DCT_K = 8
_CHUNK = 2048


# ---- exact ---------------------------------------------------------------------------------------------
def pixel_hashes(images: np.ndarray) -> np.ndarray:
    """64-bit blake2b hash of each image's decoded pixels, uint64 [N]."""
    flat = np.ascontiguousarray(images).reshape(len(images), -1)
    out = np.empty(len(flat), dtype=np.uint64)
    digest = hashlib.blake2b
    for i, row in enumerate(flat):  # ~2 us per image: 32k images in well under 0.1 s
        out[i] = int.from_bytes(digest(row.data, digest_size=8).digest(), "little")
    return out


def exact_groups(images: np.ndarray) -> np.ndarray:
    """Group id per image (0..G-1, numbered by first member) for images whose pixels occur more than once;
    -1 for unique images."""
    n = len(images)
    gid = np.full(n, -1, dtype=np.int64)
    if n < 2:
        return gid
    h = pixel_hashes(images)
    _, first, inverse, counts = np.unique(h, return_index=True, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    member = counts[inverse] > 1
    if not member.any():
        return gid
    flat = np.ascontiguousarray(images).reshape(n, -1)
    members = np.flatnonzero(member)
    if not (flat[members] == flat[first[inverse[members]]]).all():  # a 64-bit collision: group by full bytes
        _, inverse, counts = np.unique(flat.view(np.dtype((np.void, flat.shape[1]))).ravel(),
                                       return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
        member = counts[inverse] > 1
    # number groups by their first member so the ids are stable and readable
    keys_in_order = inverse[member]
    _, first_pos = np.unique(keys_in_order, return_index=True)
    order = np.argsort(first_pos, kind="stable")
    renumber = np.empty(len(order), dtype=np.int64)
    renumber[order] = np.arange(len(order))
    _, dense = np.unique(keys_in_order, return_inverse=True)
    gid[member] = renumber[dense.ravel()]
    return gid


def pixel_std(images: np.ndarray) -> np.ndarray:
    """Pixel standard deviation per image, float32 [N] (in chunks: no full float copy)."""
    flat = np.asarray(images).reshape(len(images), -1)
    out = np.empty(len(flat), np.float32)
    for s in range(0, len(flat), _CHUNK):
        out[s:s + _CHUNK] = flat[s:s + _CHUNK].std(axis=1, dtype=np.float32)
    return out


# ---- perceptual hash -----------------------------------------------------------------------------------
def _dct_basis(n: int, k: int) -> np.ndarray:
    x = np.arange(n)
    f = np.arange(k)[:, None]
    basis = np.cos(np.pi * (2 * x + 1) * f / (2 * n)) * np.sqrt(2.0 / n)
    basis[0] /= np.sqrt(2.0)
    return basis.astype(np.float32)


def shift_offsets(max_shift: int) -> list[tuple[int, int]]:
    """The shifts (dy, dx) coded besides (0, 0): half of the (2m+1)^2 - 1 non-zero ones (pairs are symmetric)."""
    m = max_shift
    return [(dy, dx) for dy in range(0, m + 1) for dx in range(-m, m + 1) if dy > 0 or dx > 0]


def dct_coefficients(images: np.ndarray, max_shift: int = MAX_SHIFT) -> np.ndarray:
    """Unit-normalised low-frequency DCT coefficients, float32 [N, 1 + len(shift_offsets), 63]:
    [:, 0] of the central crop, [:, 1 + k] of the crop an image shifted by shift_offsets[k] would show
    centrally. Two matrix products per chunk; no per-image Python."""
    m = max_shift
    size = IMAGE_SIZE - 2 * m
    if size < _DCT_K:
        raise ValueError(f"max_shift={max_shift} leaves no crop to hash")
    basis = _dct_basis(size, _DCT_K)
    placed = np.zeros((2 * m + 1, _DCT_K, IMAGE_SIZE), dtype=np.float32)  # basis placed at crop offset o
    for o in range(2 * m + 1):
        placed[o, :, o:o + size] = basis
    offsets = [(0, 0)] + shift_offsets(m)
    # an image shifted by (dy, dx) shows centrally what the original has at offset (m - dy, m - dx)
    oy = np.array([m - dy for dy, _ in offsets])
    ox = np.array([m - dx for _, dx in offsets])
    n, q, k2 = len(images), len(offsets), _DCT_K * _DCT_K
    out = np.empty((n, q, k2 - 1), dtype=np.float32)
    stacked = placed.reshape(-1, IMAGE_SIZE)  # [(2m+1)*K, 48]
    for s in range(0, n, _CHUNK):
        x = np.asarray(images[s:s + _CHUNK], dtype=np.float32)
        c = len(x)
        # two GEMMs give every crop offset at once: coef[oy, fy, i, ox, fx] = sum_yx B[oy,fy,y] x[i,y,x] B[ox,fx,x]
        rows = x.reshape(c * IMAGE_SIZE, IMAGE_SIZE) @ stacked.T  # [c*48, (2m+1)*K]
        rows = rows.reshape(c, IMAGE_SIZE, -1).transpose(1, 0, 2).reshape(IMAGE_SIZE, -1)
        # the shifts coded have dy >= 0, i.e. row offsets oy = m - dy in 0..m only
        coef = (stacked[: (m + 1) * _DCT_K] @ rows).reshape(m + 1, _DCT_K, c, 2 * m + 1, _DCT_K)
        picked = coef[oy, :, :, ox, :]  # [q, K, c, K]
        out[s:s + c] = picked.transpose(2, 0, 1, 3).reshape(c, q, k2)[:, :, 1:]
    out /= np.maximum(np.sqrt(np.einsum("nqk,nqk->nq", out, out)), 1e-6)[..., None]
    return out


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """bool [..., <=64] -> uint64 [...] (bit k = bits[..., k])."""
    pad = np.zeros(bits.shape[:-1] + (64 - bits.shape[-1],), dtype=bool)
    return np.packbits(np.concatenate([bits, pad], axis=-1), axis=-1, bitorder="little").view("<u8")[..., 0]


def perceptual_hashes(images: np.ndarray, max_shift: int = MAX_SHIFT) -> tuple[np.ndarray, np.ndarray]:
    """(central codes uint64 [N], shifted codes uint64 [N, len(shift_offsets)]) of 63 bits each."""
    with one_blas_thread():
        return _perceptual_hashes(images, max_shift)


def _perceptual_hashes(images: np.ndarray, max_shift: int) -> tuple[np.ndarray, np.ndarray]:
    coef = dct_coefficients(images, max_shift)
    if len(coef) == 0:
        return np.empty(0, np.uint64), np.empty((0, len(shift_offsets(max_shift))), np.uint64)
    # decorrelate: rotate onto the principal axes of the central coefficients, then split each axis at its
    # median. Aligned faces share most of their low-frequency structure, so raw coefficient signs are
    # strongly correlated bits; on decorrelated bits, unrelated images collide only by chance.
    # The axes are fitted on every crop coded (central and shifted), which also keeps small sets full rank;
    # with fewer crops than 4x the dimensions the coefficients are used as they are.
    k, shape = coef.shape[-1], coef.shape
    if coef.size >= 4 * k * k:
        mean = coef.reshape(-1, k).mean(axis=0, dtype=np.float64)
        centred = coef.reshape(-1, k) - mean.astype(np.float32)
        del coef  # one array of this size at a time: they are the audit's largest (50,000 images: 180 MB each)
        _, axes = np.linalg.eigh((centred.T @ centred).astype(np.float64))
        axes = axes[:, ::-1]  # largest variance first
        # an eigenvector's sign is LAPACK's choice: fix it (largest component positive), so that an image exactly
        # at an axis' median gets the same bit whatever the library returns
        axes = (axes * np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(k)])).astype(np.float32)
        proj = (centred @ axes).reshape(shape)  # one GEMM on the centred coefficients
        del centred
    else:
        proj = coef
    thresholds = np.median(proj[:, 0], axis=0)
    codes = pack_bits(proj > thresholds)
    return codes[:, 0], codes[:, 1:]
