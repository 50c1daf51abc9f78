"""The audit's numbers: exact groups and near pairs seen through the splits (which cross splits, which conflict on
labels, which held-out images have a twin in train) plus the quality flags, as counts and as the arrays the table,
the plots and the summary are made from."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fer.audit import quality as qq
from fer.classes import CLASS_NAMES, NUM_CLASSES
from fer.data import duplicates as dd

_PART_ORDER = ("train", "val", "test", "predict")


@dataclass
class Analysis:
    """Everything found, by cache index. Exact groups: lists of members; near pairs: a[k] ~ b[k] shifted by
    shift[k], Hamming distance dist[k], pixel correlation corr[k], near-group comp[k]."""

    codes: np.ndarray  # split code per image
    split_names: list[str]
    train_code: int
    groups: list[np.ndarray]
    group_labels: list[np.ndarray]
    cross: np.ndarray  # per group: spans splits
    conflict: np.ndarray  # per group: carries different labels
    a: np.ndarray
    b: np.ndarray
    dist: np.ndarray
    shift: np.ndarray
    corr: np.ndarray
    comp: np.ndarray
    quality: qq.Quality


def split_view(cache, parts: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, list[str]]:
    """(split code per cache image, split names). Default: the cache's own splits. With `parts` (a
    DataModule's idx: train/val/test/predict index arrays) each image is named after the first part holding
    it (train, val, test, predict) and images in none are "unused"; empty names are left out."""
    if parts is None:
        return cache.split_codes.astype(np.int64), list(cache.split_names)
    codes = np.full(len(cache), -1, dtype=np.int64)
    names: list[str] = []
    order = [k for k in _PART_ORDER if k in parts] + [k for k in parts if k not in _PART_ORDER]
    for name in order:
        idx = np.asarray(parts[name], dtype=np.int64)
        free = idx[codes[idx] == -1]
        if len(free):
            codes[free] = len(names)
            names.append(name)
    if (codes == -1).any():
        codes[codes == -1] = len(names)
        names.append("unused")
    return codes, names


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def label_text(label: int) -> str:
    return CLASS_NAMES[label] if 0 <= label < NUM_CLASSES else "unlabelled"


def analyse(cache, settings, parts: dict[str, np.ndarray] | None = None
            ) -> tuple[Analysis, dict[str, int], dict[str, float]]:
    """(findings, counts, seconds per step) for every image of `cache`; `settings`: fer.audit.report.AuditSettings."""
    images, labels = cache.images, cache.labels
    n = len(images)
    codes, split_names = split_view(cache, parts)
    train_code = split_names.index("train") if "train" in split_names else 0

    dup = dd.find_duplicates(images, None, settings.near_threshold, settings.max_shift, settings.blank_std,
                             near=settings.near)
    seconds = dict(dup.seconds)
    t0 = time.perf_counter()
    qual = qq.assess_quality(images, None, settings.blank_std, settings.low_entropy, settings.non_face,
                             settings.non_face_residual)
    seconds["quality"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    counts: dict[str, int] = {"images": n}
    # exact groups
    group = dup.group  # aligned with 0..n-1 (all images searched)
    groups = dup.groups()
    g_splits = [np.unique(codes[m]) for m in groups]
    g_labels = [np.unique(labels[m][labels[m] >= 0]) for m in groups]
    cross = np.array([len(s) > 1 for s in g_splits], bool)
    conflict = np.array([len(lab) > 1 for lab in g_labels], bool)
    counts["exact_groups"] = len(groups)
    counts["exact_images"] = int((group >= 0).sum())
    counts["exact_redundant_images"] = counts["exact_images"] - len(groups)
    counts["exact_within_split_groups"] = int((~cross).sum())
    counts["exact_cross_split_groups"] = int(cross.sum())
    counts["exact_label_conflict_groups"] = int(conflict.sum())
    counts["exact_label_conflict_images"] = int(sum(len(m) for m, c in zip(groups, conflict) if c))
    group_has_train = np.zeros(len(groups) + 1, bool)  # index -1 -> last entry: False
    for k, s in enumerate(g_splits):
        group_has_train[k] = train_code in s
    exact_train_twin = (group >= 0) & group_has_train[group]
    # near pairs
    a, b, dist, shift = dup.near_a, dup.near_b, dup.near_distance, dup.near_shift
    corr = dd.pair_correlation(images, a, b, shift, settings.max_shift)
    near_comp = _components(n, a, b) if len(a) else np.arange(n)
    comp_of_pair = near_comp[a] if len(a) else np.empty(0, np.int64)
    near_imgs = np.unique(np.concatenate([a, b]))
    counts["near_pairs"] = len(a)
    counts["near_images"] = len(near_imgs)
    counts["near_groups"] = len(np.unique(near_comp[near_imgs])) if len(near_imgs) else 0
    counts["near_cross_split_pairs"] = int((codes[a] != codes[b]).sum())
    both = (labels[a] >= 0) & (labels[b] >= 0)
    counts["near_label_conflict_pairs"] = int((both & (labels[a] != labels[b])).sum())
    near_train_twin = np.zeros(n, bool)
    near_train_twin[a[codes[b] == train_code]] = True
    near_train_twin[b[codes[a] == train_code]] = True
    for code, name in enumerate(split_names):
        if code == train_code:
            continue
        in_split = codes == code
        counts[f"{name}_images"] = int(in_split.sum())
        if name == "unused":  # e.g. training images data.dedup=train dropped: not a leak
            continue
        counts[f"{name}_with_train_twin"] = int((in_split & exact_train_twin).sum())
        counts[f"{name}_with_train_near_twin"] = int((in_split & near_train_twin & ~exact_train_twin).sum())
    counts["blank"] = int(qual.blank.sum())
    counts["low_information"] = int(qual.low_information.sum())
    counts["likely_non_face"] = int(qual.likely_non_face.sum()) if qual.non_face_checked else -1
    seconds["counts"] = time.perf_counter() - t0
    found = Analysis(codes, split_names, train_code, groups, g_labels, cross, conflict, a, b, dist, shift, corr,
                     comp_of_pair, qual)
    return found, counts, seconds


def class_balance(labels: np.ndarray, codes: np.ndarray, split_names: list[str]) -> pd.DataFrame:
    """Images per class (rows: classes + unlabelled) and split (columns)."""
    table = {}
    for code, name in enumerate(split_names):
        lab = labels[codes == code]
        table[name] = list(np.bincount(lab[lab >= 0], minlength=NUM_CLASSES)) + [int((lab < 0).sum())]
    return pd.DataFrame(table, index=list(CLASS_NAMES) + ["unlabelled"])
