"""Exact and near duplicates over a [N,48,48] uint8 image array (the memory-mapped cache), vectorised.

Near duplicates: the perceptual code of fer.data.duplicates.hashes plus a Hamming threshold; pairs within it are
found with multi-index hashing (fer.data.duplicates.hamming). On FER2013, copies of real images shifted by 1-2 px,
JPEG re-encoded and brightness-changed stay within 3 bits; pairs found at 5-7 bits are nearly all the same
photograph (47 of 48 sampled, checked by eye: see docs/AUDIT.md); at 8 bits about a third are look-alikes, and
from 9 bits chance collisions grow quickly.

Near pairs exclude pairs that are exact duplicates of each other and images too flat to hash (std below
`min_std`: the audit reports them as blank).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from fer.classes import IMAGE_SIZE
from fer.data.duplicates.hamming import hamming_pairs
from fer.data.duplicates.hashes import MAX_SHIFT, exact_groups, perceptual_hashes, pixel_std, shift_offsets

log = logging.getLogger(__name__)

NEAR_THRESHOLD = 6  # Hamming distance (of 63 bits) at or below which two images are near duplicates
MIN_STD = 2.0  # images with a pixel std below this are too flat to hash (they are "blank" in the quality check)


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
    # every image is coded (the codes' axes and medians are fitted on the whole set, copies included), but only
    # one image per exact group is searched, and its pairs are given to every member of its group below: the pairs
    # a search of every image finds, except that copies now always share their pairs (a copy's code could differ
    # in a bit, the float GEMM rounding a row by its place in the batch). Searching every copy grew as n^2 in a
    # big group (50,000 copies of one photo: killed at 21.7 GB).
    center, shifted = perceptual_hashes(x[hashed], max_shift)
    rep_of = _representatives(group)
    searched = rep_of[hashed] == hashed
    reps, center, shifted = hashed[searched], center[searched], shifted[searched]
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
    a, b, dist, shift = _ordered(reps[img[keep]], reps[rj[keep]], dist[keep], shift[keep])
    # one entry per pair of representatives: its smallest distance (then the smallest shift)
    first = np.ones(len(a), bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    a, b, dist, shift = _expand_to_members(a[first], b[first], dist[first], shift[first], hashed, rep_of)
    dup.near_a, dup.near_b = indices[a], indices[b]
    dup.near_distance, dup.near_shift = dist, shift
    seconds["near_pairs"] = time.perf_counter() - t0
    return dup


def _representatives(group: np.ndarray) -> np.ndarray:
    """Per position: the first position of its exact group, or itself when it has no copy."""
    rep_of = np.arange(len(group))
    member = np.flatnonzero(group >= 0)
    first_of_group = np.full(int(group.max(initial=-1)) + 1, len(group))
    np.minimum.at(first_of_group, group[member], member)
    rep_of[member] = first_of_group[group[member]]
    return rep_of


def _ordered(a, b, dist, shift):
    """Pairs as a < b (the shift turned with them: b ~ a shifted by it), sorted by a, b, distance, |shift|, then
    the shift itself: of two equally good shifts the same one is kept whatever order the pairs were found in."""
    swap = a > b
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    shift = np.where(swap[:, None], -shift, shift)
    order = np.lexsort((shift[:, 1], shift[:, 0], np.abs(shift).sum(1), dist, b, a))
    return a[order], b[order], dist[order], shift[order]


def _expand_to_members(a, b, dist, shift, hashed, rep_of):
    """Each pair of representatives as the pairs of all their groups' members (same distance and shift: the
    copies are identical), as a < b in (a, b) order."""
    members = hashed[np.argsort(rep_of[hashed], kind="stable")]  # hashed positions, grouped by representative
    keys = rep_of[members]
    start_a, start_b = np.searchsorted(keys, a), np.searchsorted(keys, b)
    n_a, n_b = np.searchsorted(keys, a, "right") - start_a, np.searchsorted(keys, b, "right") - start_b
    sizes = n_a * n_b
    pair = np.repeat(np.arange(len(a)), sizes)
    within = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    ma = members[start_a[pair] + within // n_b[pair]]
    mb = members[start_b[pair] + within % n_b[pair]]
    return _ordered(ma, mb, dist[pair], shift[pair])


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
