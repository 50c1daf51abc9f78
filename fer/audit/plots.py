"""The audit's example grids (pairs side by side, flagged images) and the class-distribution chart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fer.audit.analysis import Analysis, class_balance, label_text
from fer.classes import CLASS_NAMES, NUM_CLASSES
from fer.tracking.plots import plot_image_grid


def write_plots(out_dir: Path, settings, images: np.ndarray, labels: np.ndarray, found: Analysis) -> dict[str, Path]:
    return _plots(out_dir, settings, images, labels, found.codes, found.split_names, found.train_code, found.groups,
                  found.cross, found.conflict, found.a, found.b, found.dist, found.shift, found.corr, found.quality)


def _plots(out_dir, settings, images, labels, codes, split_names, train_code, groups, cross, conflict, a, b, dist,
           shift, corr, qual) -> dict[str, Path]:
    files: dict[str, Path] = {"class_distribution": _plot_class_distribution(
        class_balance(labels, codes, split_names), out_dir / "class_distribution.png")}
    max_pairs = max(1, settings.max_examples // 2)

    def caption(i: int, extra: str = "") -> str:
        return f"{split_names[codes[i]]} #{i}\n{label_text(labels[i])}{extra}"

    def pair_grid(pairs: list[tuple[int, int, str]], name: str, grid_title: str) -> None:
        if not pairs:
            return
        imgs = np.stack([images[i] for p in pairs for i in p[:2]])
        caps = [c for i, j, extra in pairs for c in (caption(i), caption(j, extra))]
        files[name] = plot_image_grid(imgs, caps, out_dir / f"{name}.png", grid_title)

    def image_grid(idx: np.ndarray, extra: list[str], name: str, grid_title: str) -> None:
        if len(idx) == 0:
            return
        idx, extra = idx[: settings.max_examples], extra[: settings.max_examples]
        files[name] = plot_image_grid(np.stack([images[i] for i in idx]),
                                      [caption(i, e) for i, e in zip(idx, extra)], out_dir / f"{name}.png", grid_title)

    def train_first(m: np.ndarray) -> tuple[int, int]:
        in_train = m[codes[m] == train_code]
        first = in_train[0] if len(in_train) else m[0]
        other = m[(codes[m] != codes[first])]
        return int(first), int(other[0] if len(other) else m[m != first][0])

    cross_groups = [g for g, c in zip(groups, cross) if c]
    pair_grid([(*train_first(m), f" (x{len(m)})" if len(m) > 2 else "") for m in cross_groups[:max_pairs]],
              "exact_cross_split", f"exact duplicates across splits: {len(cross_groups)} group(s), first "
              f"{min(len(cross_groups), max_pairs)} (pairs side by side)")
    conflict_pairs = []
    for m, c in zip(groups, conflict):
        if c and len(conflict_pairs) < max_pairs:
            lab = labels[m]
            i = m[lab >= 0][0]
            j = m[(lab >= 0) & (lab != labels[i])][0]
            conflict_pairs.append((int(i), int(j), ""))
    pair_grid(conflict_pairs, "label_conflicts",
              f"identical pixels, different labels: {int(conflict.sum())} group(s)")
    if len(a):
        order = np.lexsort((dist, codes[a] == codes[b]))  # cross-split pairs first, then by distance
        sel = order[:max_pairs]
        pair_grid([(int(a[k]), int(b[k]), f"\nd={dist[k]} r={corr[k]:.2f}") for k in sel], "near_duplicates",
                  f"near duplicates (Hamming <= {settings.near_threshold}): {len(a)} pair(s); cross-split first")
        edge = int(dist.max())  # the threshold itself, unless no pair is that far apart
        at = np.flatnonzero(dist == edge)
        pair_grid([(int(a[k]), int(b[k]), f"\nd={dist[k]} r={corr[k]:.2f}") for k in at[:max_pairs]],
                  "near_at_threshold", f"near pairs at distance {edge} (threshold {settings.near_threshold}): "
                  f"{len(at)} pair(s), first {min(len(at), max_pairs)}: same photo or look-alikes?")
    image_grid(qual.indices[qual.blank], [f"\nstd {v:.1f}" for v in qual.std[qual.blank]], "blank",
               f"blank images (std < {settings.blank_std}): {int(qual.blank.sum())}")
    low = np.flatnonzero(qual.low_information)
    low = low[np.argsort(qual.entropy[low], kind="stable")]
    image_grid(qual.indices[low], [f"\nH={qual.entropy[k]:.1f} bits" for k in low], "low_information",
               f"low-information images (entropy < {settings.low_entropy} bits): {len(low)}, lowest first")
    nf = np.flatnonzero(qual.likely_non_face)
    nf = nf[np.argsort(-qual.residual[nf], kind="stable")]
    image_grid(qual.indices[nf], [f"\nres={qual.residual[k]:.2f}" for k in nf], "likely_non_face",
               f"likely non-face (face-space residual >= {settings.non_face_residual}): {len(nf)}, highest first")
    return files


def _plot_class_distribution(balance: pd.DataFrame, path: Path) -> Path:
    from matplotlib.figure import Figure

    table = balance.loc[list(CLASS_NAMES)]
    table = table.loc[:, table.sum(0) > 0]
    fig = Figure(figsize=(12, 4))
    axes = fig.subplots(1, 2)
    if table.shape[1]:
        x = np.arange(NUM_CLASSES)
        width = 0.8 / table.shape[1]
        share = table / table.sum(0)
        for k, split in enumerate(table.columns):
            axes[0].bar(x + k * width, table[split], width, label=f"{split} (n={int(table[split].sum())})")
            axes[1].bar(x + k * width, 100 * share[split], width, label=split)
        for ax, ylabel in zip(axes, ("images", "% of the split")):
            ax.set_xticks(x + 0.4 - width / 2, CLASS_NAMES, rotation=30)
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=8)
    else:
        axes[0].text(0.5, 0.5, "no labelled images", ha="center")
    fig.suptitle("class distribution per split")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
