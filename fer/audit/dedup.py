"""Exact and near duplicates over a [N,48,48] uint8 image array (the memory-mapped cache), vectorised.

Exact duplicates: identical decoded pixels. Each 2304-byte row is hashed (blake2b, 64 bits), equal hashes
are grouped and every group is verified byte for byte, so a hash collision can never merge two images.

Near duplicates: a shift-tolerant perceptual hash (a pHash variant) plus a Hamming threshold.
  * An image's code: the 63 lowest-frequency DCT coefficients (8x8 minus DC) of its central
    (48-2*max_shift)^2 crop, normalised to unit length (brightness and contrast changes do not move it),
    rotated onto their principal axes (over all crops coded) and split at each axis' median over the
    images' central crops: 63 bits,
    each true for half of the images and nearly uncorrelated with the others. (Aligned faces share most of
    their low-frequency structure: raw coefficient signs are strongly correlated bits, and unrelated faces
    then collide far more often than by chance - on the synthetic set 40x more at distance <= 6.)
  * A copy shifted by (dy, dx) pixels has the same central crop as the original's crop at offset
    (max_shift-dy, max_shift-dx); so every image is also coded at the shifted crop offsets (half of them:
    pairs are symmetric) and these codes are matched against everyone's central code. Shifts of up to
    `max_shift` pixels therefore cost no Hamming distance at all; only re-encoding noise does.
  * Pairs within the threshold are found with multi-index hashing (`hamming_pairs`): no O(N^2) pass.
On FER2013, copies of real images shifted by 1-2 px, JPEG re-encoded and brightness-changed stay within 3
bits; pairs found at 5-7 bits are nearly all the same photograph (47 of 48 sampled, checked by eye: see
docs/AUDIT.md); at 8 bits about a third are look-alikes, and from 9 bits chance collisions grow quickly.

Near pairs exclude pairs that are exact duplicates of each other and images too flat to hash (std below
`min_std`: they are reported by fer.audit.quality as blank).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from itertools import combinations
from math import comb

import numpy as np

from fer.classes import IMAGE_SIZE

log = logging.getLogger(__name__)

NEAR_THRESHOLD = 6  # Hamming distance (of 63 bits) at or below which two images are near duplicates
MAX_SHIFT = 2  # pixels: copies shifted by up to this much are matched at no cost
MIN_STD = 2.0  # images with a pixel std below this are too flat to hash (they are "blank" in the quality check)
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


def one_blas_thread():
    """Context: BLAS on one thread. These products are small or tall-and-thin; on a shared 2-core machine
    OpenBLAS threads mostly spin and wait (a 420k x 63 Gram matrix took 3-6 s threaded, 0.1 s on one)."""
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(1, user_api="blas")
    except ImportError:  # threadpoolctl comes with scikit-learn; without it, run as is
        from contextlib import nullcontext

        return nullcontext()


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
    k = coef.shape[-1]
    crops = coef.reshape(-1, k)
    if len(crops) >= 4 * k:
        mean = crops.mean(axis=0, dtype=np.float64)
        centred = crops - mean.astype(np.float32)
        _, axes = np.linalg.eigh((centred.T @ centred).astype(np.float64))
        axes = axes[:, ::-1].astype(np.float32)  # largest variance first
        proj = ((coef - mean.astype(np.float32)).reshape(-1, k) @ axes).reshape(coef.shape)  # one GEMM
    else:
        proj = coef
    thresholds = np.median(proj[:, 0], axis=0)
    codes = pack_bits(proj > thresholds)
    return codes[:, 0], codes[:, 1:]


# ---- Hamming search ------------------------------------------------------------------------------------
_TABLE_BITS = 22  # bands up to this wide get direct-address tables (<= 4M entries); wider ones a sorted search


def _plan(n_queries: int, n_refs: int, threshold: int, bits: int) -> tuple[int, int] | None:
    """(bands m, per-band radius r) of the cheapest multi-index search, or None (brute force is cheaper).
    By the pigeonhole principle, codes within `threshold` are within threshold // m in at least one of m bands."""
    best, best_cost = None, 2.0 * n_queries * n_refs  # brute force: one xor+popcount per pair
    for m in range(1, min(bits, threshold + 1) + 1):
        w = -(-bits // m)
        r = threshold // m
        probes = sum(comb(w, k) for k in range(r + 1))
        lookups = n_queries * m * probes
        candidates = lookups * n_refs / 2.0**w
        if w <= _TABLE_BITS:
            cost = 2.0 * lookups + m * (2.0**w) / 8
        else:  # binary search in the sorted band values
            cost = 2.0 * lookups * np.log2(max(n_refs, 2)) + m * n_refs * np.log2(max(n_refs, 2))
        cost += 4.0 * candidates
        if cost < best_cost:
            best, best_cost = (m, r), cost
    return best


def _flip_masks(width: int, radius: int) -> np.ndarray:
    masks = [0]
    for k in range(1, radius + 1):
        masks += [sum(1 << b for b in bs) for bs in combinations(range(width), k)]
    return np.array(masks, dtype=np.int64)


def hamming_pairs(queries: np.ndarray, refs: np.ndarray, threshold: int, bits: int = HASH_BITS,
                  max_candidates: int = 4_000_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (q, r) with popcount(queries[q] ^ refs[r]) <= threshold, as (q idx, r idx, distance) arrays.

    Multi-index hashing: the code is cut into m bands; each band of the refs becomes a direct-address table
    (bucket start + count per band value; a sorted array for bands wider than 22 bits) and each query looks
    up the band values within radius
    threshold // m of its own; candidates are checked with one vectorised popcount. m is chosen by an
    estimate of the work (e.g. 63 bits, threshold 6, 420k queries x 32k refs: 4 bands of 16 bits, radius 1).
    """
    queries = np.ascontiguousarray(queries, dtype=np.uint64).ravel()
    refs = np.ascontiguousarray(refs, dtype=np.uint64).ravel()
    nq, nr = len(queries), len(refs)
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64))
    if nq == 0 or nr == 0 or threshold < 0:
        return empty
    plan = _plan(nq, nr, threshold, bits)
    found: list[tuple[np.ndarray, np.ndarray]] = []
    if plan is None:  # small inputs or a threshold too large for banding: blocked brute force
        block = max(1, max_candidates // nr)
        for s in range(0, nq, block):
            dist = np.bitwise_count(queries[s:s + block, None] ^ refs[None, :])
            qi, ri = np.nonzero(dist <= threshold)
            found.append((qi + s, ri))
    else:
        m, radius = plan
        width = -(-bits // m)
        for b in range(m):
            lo = b * width
            w = min(width, bits - lo)
            if w <= 0:
                continue
            mask = np.uint64((1 << w) - 1)
            ref_key = ((refs >> np.uint64(lo)) & mask).astype(np.int64)
            order = np.argsort(ref_key, kind="stable")
            if w <= _TABLE_BITS:  # direct-address table: bucket start and size per band value
                table_counts = np.bincount(ref_key, minlength=1 << w)
                table_starts = np.cumsum(table_counts) - table_counts

                def lookup(keys, table_starts=table_starts, table_counts=table_counts):
                    return table_starts[keys], table_counts[keys]
            else:
                sorted_keys = ref_key[order]

                def lookup(keys, sorted_keys=sorted_keys):
                    first = np.searchsorted(sorted_keys, keys, "left")
                    return first, np.searchsorted(sorted_keys, keys, "right") - first
            flips = _flip_masks(w, radius)
            q_key = ((queries >> np.uint64(lo)) & mask).astype(np.int64)
            per_query = max(1.0, len(flips) * nr / 2.0**w)
            step = max(1, int(max_candidates / per_query))
            for s in range(0, nq, step):
                probe = (q_key[s:s + step, None] ^ flips[None, :]).ravel()
                start, cnt = lookup(probe)
                hit = np.flatnonzero(cnt)  # most probed buckets are empty
                if len(hit) == 0:
                    continue
                start, cnt = start[hit], cnt[hit]
                total = int(cnt.sum())
                q_of = np.repeat(s + hit // len(flips), cnt)
                # position in the sorted refs: bucket start + rank within the run of this probe
                ri = order[np.arange(total) + np.repeat(start - (np.cumsum(cnt) - cnt), cnt)]
                keep = np.bitwise_count(queries[q_of] ^ refs[ri]) <= threshold
                found.append((q_of[keep], ri[keep]))
    if not found:
        return empty
    qi = np.concatenate([f[0] for f in found])
    ri = np.concatenate([f[1] for f in found])
    key = np.unique(qi * nr + ri)  # a pair can match in several bands
    qi, ri = key // nr, key % nr
    return qi, ri, np.bitwise_count(queries[qi] ^ refs[ri]).astype(np.int64)


# ---- findings ------------------------------------------------------------------------------------------
@dataclass
class Duplicates:
    """Duplicate findings over a set of cache indices (all arrays hold cache indices, not positions)."""

    indices: np.ndarray  # the images searched, sorted
    group: np.ndarray  # exact group id per searched image (aligned with indices), -1 = unique
    near_a: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # near pair: cache index a < b
    near_b: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    near_distance: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    near_shift: np.ndarray = field(default_factory=lambda: np.empty((0, 2), np.int64))  # b ~ a shifted (dy, dx)
    hashed: np.ndarray = field(default_factory=lambda: np.empty(0, bool))  # per searched image: in the near search
    threshold: int = NEAR_THRESHOLD
    max_shift: int = MAX_SHIFT
    seconds: dict = field(default_factory=dict)

    @property
    def n_groups(self) -> int:
        return int(self.group.max()) + 1 if len(self.group) else 0

    def groups(self) -> list[np.ndarray]:
        """Cache indices of each exact group, by group id."""
        member = self.group >= 0
        if not member.any():
            return []
        order = np.argsort(self.group[member], kind="stable")
        ids = self.group[member][order]
        cuts = np.flatnonzero(np.diff(ids)) + 1
        return np.split(self.indices[member][order], cuts)


def find_duplicates(images: np.ndarray, indices: np.ndarray | None = None, threshold: int = NEAR_THRESHOLD,
                    max_shift: int = MAX_SHIFT, min_std: float = MIN_STD, near: bool = True) -> Duplicates:
    """Exact groups and near pairs among images[indices] (default: all)."""
    indices = np.arange(len(images)) if indices is None else np.unique(np.asarray(indices, dtype=np.int64))
    seconds = {}
    t0 = time.perf_counter()
    x = np.asarray(images[indices]) if len(indices) != len(images) else np.asarray(images)
    group = exact_groups(x)
    seconds["exact"] = time.perf_counter() - t0
    dup = Duplicates(indices=indices, group=group, threshold=threshold, max_shift=max_shift, seconds=seconds,
                     hashed=np.zeros(len(indices), bool))
    if not near or len(indices) < 2:
        return dup
    t0 = time.perf_counter()
    std = pixel_std(x)
    hashed = np.flatnonzero(std >= min_std)
    dup.hashed[hashed] = True
    center, shifted = perceptual_hashes(x[hashed], max_shift)
    seconds["phash"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    offsets = np.array([(0, 0)] + shift_offsets(max_shift), dtype=np.int64)
    # every image's central code against all codes (central and shifted) of every image: the tables are
    # built over the larger side, so the number of probes stays that of the smaller one
    codes = np.concatenate([center[:, None], shifted], axis=1)  # [n, 1 + n_shifts]
    rj, qi, dist = hamming_pairs(center, codes.ravel(), threshold)
    img, k = qi // codes.shape[1], qi % codes.shape[1]
    shift = offsets[k]  # rj's image ~ img shifted by `shift`
    keep = img != rj
    img, rj, dist, shift = img[keep], rj[keep], dist[keep], shift[keep]
    a, b = hashed[img], hashed[rj]  # positions in x
    swap = a > b
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    shift = np.where(swap[:, None], -shift, shift)
    # one entry per pair: its smallest distance (then the smallest shift)
    order = np.lexsort((np.abs(shift).sum(1), dist, b, a))
    a, b, dist, shift = a[order], b[order], dist[order], shift[order]
    first = np.ones(len(a), bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    a, b, dist, shift = a[first], b[first], dist[first], shift[first]
    exact_pair = (group[a] >= 0) & (group[a] == group[b])
    keep = ~exact_pair
    dup.near_a, dup.near_b = indices[a[keep]], indices[b[keep]]
    dup.near_distance, dup.near_shift = dist[keep], shift[keep]
    seconds["near_pairs"] = time.perf_counter() - t0
    return dup


def drop_train_duplicates(cache, idx: dict[str, np.ndarray], threshold: int = NEAR_THRESHOLD,
                          max_shift: int = MAX_SHIFT, min_std: float = MIN_STD) -> tuple[np.ndarray, dict]:
    """Training indices without every image that has an exact or near duplicate among the held-out parts
    (every key of `idx` but "train": val, test, predict). Held-out parts are never changed.
    Returns (new train indices in their original order, report of counts)."""
    started = time.perf_counter()
    train = np.asarray(idx["train"], dtype=np.int64)
    held = [np.asarray(v, dtype=np.int64) for k, v in idx.items() if k != "train" and v is not None and len(v)]
    held_out = np.setdiff1d(np.concatenate(held) if held else np.empty(0, np.int64), train)
    report = {"train_before": int(len(train)), "dropped_exact": 0, "dropped_near": 0, "train_after": int(len(train))}
    if len(held_out) == 0 or len(train) == 0:
        return train, report
    dup = find_duplicates(cache.images, np.concatenate([train, held_out]), threshold, max_shift, min_std)
    is_held = np.isin(dup.indices, held_out)
    is_train = np.isin(dup.indices, train)
    # exact: a group with a held-out member loses all its training members
    held_groups = np.unique(dup.group[is_held & (dup.group >= 0)])
    drop_exact = dup.indices[is_train & np.isin(dup.group, held_groups) & (dup.group >= 0)]
    # near: a training image paired with a held-out one
    a_held, b_held = np.isin(dup.near_a, held_out), np.isin(dup.near_b, held_out)
    a_train, b_train = np.isin(dup.near_a, train), np.isin(dup.near_b, train)
    near_hits = np.concatenate([dup.near_a[a_train & b_held], dup.near_b[b_train & a_held]])
    drop_near = np.setdiff1d(near_hits, drop_exact)
    drop = np.union1d(drop_exact, drop_near)
    new_train = train[~np.isin(train, drop)]
    report.update(dropped_exact=int(len(drop_exact)), dropped_near=int(len(drop_near)), train_after=int(len(new_train)))
    log.info("dedup: dropped %d exact and %d near duplicate(s) of held-out images from train (%.1fs)",
             len(drop_exact), len(drop_near), time.perf_counter() - started)
    return new_train, report


def pair_correlation(images: np.ndarray, a: np.ndarray, b: np.ndarray, shift: np.ndarray,
                     max_shift: int = MAX_SHIFT) -> np.ndarray:
    """Pearson correlation of the aligned central crops of near pairs (b ~ a shifted by `shift`): a second,
    pixel-level opinion on each pair (same photo: mostly > 0.8; look-alikes: lower). float32 [P]."""
    out = np.full(len(a), np.nan, np.float32)
    if len(a) == 0:
        return out
    m, size = max_shift, IMAGE_SIZE - 2 * max_shift
    shift = np.asarray(shift).reshape(-1, 2)
    for dy, dx in np.unique(shift, axis=0):
        k = np.flatnonzero((shift[:, 0] == dy) & (shift[:, 1] == dx))
        crop_a = np.asarray(images[a[k]], dtype=np.float32)[:, m - dy:m - dy + size, m - dx:m - dx + size]
        crop_b = np.asarray(images[b[k]], dtype=np.float32)[:, m:m + size, m:m + size]
        va = crop_a.reshape(len(k), -1) - crop_a.mean(axis=(1, 2))[:, None]
        vb = crop_b.reshape(len(k), -1) - crop_b.mean(axis=(1, 2))[:, None]
        den = np.sqrt((va * va).sum(1) * (vb * vb).sum(1))
        out[k] = (va * vb).sum(1) / np.maximum(den, 1e-6)
    return out
