"""Every pair of 63-bit codes within a Hamming distance, by multi-index hashing: no O(N^2) pass."""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np

from fer.data.duplicates.hashes import HASH_BITS

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
