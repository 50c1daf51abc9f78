"""Run the whole audit on an image cache and write the report folder.

  summary.md              counts, class balance per split, settings, runtime, the grids below
  findings.csv            one row per finding (exact-duplicate member, label-conflict member, near pair,
                          blank / low-information / likely-non-face image)
  class_distribution.png  class counts and shares per split
  exact_cross_split.png   exact duplicates across splits (each pair: the train copy, then the other)
  label_conflicts.png     identical pixels, different labels
  near_duplicates.png     near-duplicate pairs (cross-split first)
  near_at_threshold.png   near pairs at the threshold distance: where the threshold is checked by eye
  blank.png, low_information.png, likely_non_face.png
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fer.audit import dedup as dd
from fer.audit import quality as qq
from fer.classes import CLASS_NAMES, NUM_CLASSES

log = logging.getLogger(__name__)

_PART_ORDER = ("train", "val", "test", "predict")


@dataclass
class AuditSettings:
    near_threshold: int = dd.NEAR_THRESHOLD  # Hamming distance (of 63 bits) for near duplicates
    max_shift: int = dd.MAX_SHIFT  # pixels: shifted copies up to this are matched exactly
    near: bool = True  # search near duplicates at all
    blank_std: float = qq.BLANK_STD
    low_entropy: float = qq.LOW_ENTROPY  # bits
    non_face: bool = True
    non_face_residual: float = qq.NON_FACE_RESIDUAL
    max_examples: int = 32  # images (or pairs) per example grid

    @classmethod
    def from_config(cls, cfg: Any) -> "AuditSettings":
        """From the `audit` config: true/false (defaults) or a mapping of these fields (+ out_dir, ignored)."""
        if cfg is None or isinstance(cfg, bool):
            return cls()
        values = dict(cfg)
        values.pop("out_dir", None)
        values.pop("enabled", None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            from fer.cli import UserError

            raise UserError(f"unknown audit option(s) {unknown}; known: {sorted(known)} and out_dir")
        return cls(**values)


@dataclass
class AuditResult:
    out_dir: Path
    counts: dict[str, int]
    seconds: dict[str, float]
    files: dict[str, Path] = field(default_factory=dict)


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


# ---- counting -------------------------------------------------------------------------------------------
def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _label_text(label: int) -> str:
    return CLASS_NAMES[label] if 0 <= label < NUM_CLASSES else "unlabelled"


def run_audit(cache, out_dir: str | Path, settings: AuditSettings | None = None,
              parts: dict[str, np.ndarray] | None = None, title: str = "") -> AuditResult:
    """Audit every image of `cache` and write the report folder; returns the counts."""
    settings = settings or AuditSettings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started, cpu_started = time.perf_counter(), time.process_time()
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

    names = np.asarray(cache.names, dtype=object)
    splits_arr = np.asarray(split_names, dtype=object)[codes]
    findings = _findings(groups, conflict, g_labels, a, b, dist, shift, corr, comp_of_pair, qual, names,
                         splits_arr, labels)
    findings.to_csv(out_dir / "findings.csv", index=False, float_format="%.4g")
    seconds["tables"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    files = {"findings": out_dir / "findings.csv"}
    files.update(_plots(out_dir, settings, images, labels, codes, split_names, train_code, groups, cross,
                        conflict, a, b, dist, shift, corr, qual))
    seconds["plots"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - started
    seconds["cpu"] = time.process_time() - cpu_started  # all threads; wall time depends on the machine's load
    balance = class_balance(labels, codes, split_names)
    files["summary"] = _write_summary(out_dir, title or Path(cache.path).name, cache, settings, counts, seconds,
                                      balance, split_names, codes, files, qual)
    log.info("audit: %d exact group(s), %d near pair(s), %d blank; report in %s (%.1fs)", counts["exact_groups"],
             counts["near_pairs"], counts["blank"], out_dir, seconds["total"])
    return AuditResult(out_dir=out_dir, counts=counts, seconds=seconds, files=files)


def class_balance(labels: np.ndarray, codes: np.ndarray, split_names: list[str]) -> pd.DataFrame:
    """Images per class (rows: classes + unlabelled) and split (columns)."""
    table = {}
    for code, name in enumerate(split_names):
        lab = labels[codes == code]
        table[name] = list(np.bincount(lab[lab >= 0], minlength=NUM_CLASSES)) + [int((lab < 0).sum())]
    return pd.DataFrame(table, index=list(CLASS_NAMES) + ["unlabelled"])


def _findings(groups, conflict, g_labels, a, b, dist, shift, corr, comp_of_pair, qual, names, splits,
              labels) -> pd.DataFrame:
    cols = ["kind", "split", "name", "index", "label", "group", "partner_index", "partner_split", "partner_name",
            "partner_label", "distance", "shift", "pixel_corr", "detail"]
    parts: list[pd.DataFrame] = []

    def frame(kind, idx, group, partner, distance, shift_txt, pcorr, detail):
        idx = np.asarray(idx, dtype=np.int64)
        partner = np.asarray(partner, dtype=np.int64)
        has = partner >= 0
        p = np.where(has, partner, 0)
        return pd.DataFrame({
            "kind": kind, "split": splits[idx], "name": names[idx], "index": idx,
            "label": [_label_text(v) for v in labels[idx]], "group": group,
            "partner_index": np.where(has, partner, -1),
            "partner_split": np.where(has, splits[p], ""), "partner_name": np.where(has, names[p], ""),
            "partner_label": np.where(has, [_label_text(v) for v in labels[p]], ""),
            "distance": distance, "shift": shift_txt, "pixel_corr": pcorr, "detail": detail}, columns=cols)

    if groups:
        member = np.concatenate(groups)
        gid = np.repeat(np.arange(len(groups)), [len(m) for m in groups])
        partner = np.concatenate([np.r_[m[1], np.repeat(m[0], len(m) - 1)] for m in groups])
        detail = np.repeat([f"group of {len(m)}: " + ", ".join(sorted(set(splits[m]))) for m in groups],
                           [len(m) for m in groups])
        parts.append(frame("exact_duplicate", member, gid, partner, 0, "", np.nan, detail))
        if conflict.any():
            sel = np.isin(gid, np.flatnonzero(conflict))
            lab_txt = np.repeat(["labels " + "/".join(_label_text(v) for v in lab) for lab in g_labels],
                                [len(m) for m in groups])
            parts.append(frame("label_conflict", member[sel], gid[sel], partner[sel], 0, "", np.nan, lab_txt[sel]))
    if len(a):
        shift_txt = [f"{dy},{dx}" for dy, dx in shift]
        parts.append(frame("near_duplicate", a, comp_of_pair, b, dist, shift_txt, corr,
                           "partner ~ this image shifted by (dy,dx)"))
    for kind, mask, detail in (
            ("blank", qual.blank, [f"std={v:.2f}" for v in qual.std[qual.blank]]),
            ("low_information", qual.low_information,
             [f"entropy={e:.2f} bits, {u} grey levels" for e, u in
              zip(qual.entropy[qual.low_information], qual.unique[qual.low_information])]),
            ("likely_non_face", qual.likely_non_face,
             [f"face-space residual={r:.3f}" for r in qual.residual[qual.likely_non_face]])):
        if mask.any():
            idx = qual.indices[mask]
            parts.append(frame(kind, idx, -1, np.full(len(idx), -1), np.nan, "", np.nan, detail))
    if not parts:
        return pd.DataFrame(columns=cols)
    return pd.concat(parts, ignore_index=True)


# ---- plots ----------------------------------------------------------------------------------------------
def plot_grid(images: np.ndarray, captions: list[str], path: Path, title: str = "", cols: int = 8) -> Path:
    """Grid of 48x48 uint8 images with a caption under each, drawn as one mosaic in one axes (the same look
    as fer.tracking.reports.plot_image_grid, several times faster: no subplot per image)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, size = len(images), images.shape[1]
    rows = max(1, -(-n // cols))
    gap, cap = 8, 24  # pixels between tiles and under each tile for its caption
    cell_w, cell_h = size + gap, size + cap
    mosaic = np.full((rows * cell_h, cols * cell_w), 255, np.uint8)
    for k in range(n):
        r, c = divmod(k, cols)
        mosaic[r * cell_h:r * cell_h + size, c * cell_w + gap // 2:c * cell_w + gap // 2 + size] = images[k]
    top = 0.35 if title else 0.05
    fig = plt.figure(figsize=(cols * cell_w / 40, rows * cell_h / 40 + top))
    ax = fig.add_axes((0, 0, 1, 1 - top / (rows * cell_h / 40 + top)))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255, interpolation="nearest", aspect="auto")
    ax.axis("off")
    for k, text in enumerate(captions[:n]):
        r, c = divmod(k, cols)
        ax.text(c * cell_w + cell_w / 2, r * cell_h + size + 1, text, fontsize=6, ha="center", va="top",
                linespacing=1.0)
    if title:
        fig.suptitle(title, fontsize=9, y=1 - 0.08 / (rows * cell_h / 40 + top))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plots(out_dir, settings, images, labels, codes, split_names, train_code, groups, cross, conflict, a, b, dist,
           shift, corr, qual) -> dict[str, Path]:
    plot_image_grid = plot_grid
    files: dict[str, Path] = {"class_distribution": _plot_class_distribution(
        class_balance(labels, codes, split_names), out_dir / "class_distribution.png")}
    max_pairs = max(1, settings.max_examples // 2)

    def caption(i: int, extra: str = "") -> str:
        return f"{split_names[codes[i]]} #{i}\n{_label_text(labels[i])}{extra}"

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = balance.loc[list(CLASS_NAMES)]
    table = table.loc[:, table.sum(0) > 0]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
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
    plt.close(fig)
    return path


# ---- summary --------------------------------------------------------------------------------------------
def _md_table(df: pd.DataFrame, index_name: str = "") -> str:
    head = "| " + " | ".join([index_name] + [str(c) for c in df.columns]) + " |"
    sep = "|" + "---|" * (len(df.columns) + 1)
    rows = ["| " + " | ".join([str(i)] + [str(v) for v in row]) + " |" for i, row in zip(df.index, df.values)]
    return "\n".join([head, sep, *rows])


_DESCRIPTIONS = {
    "images": "images audited",
    "exact_groups": "groups of images with identical pixels",
    "exact_images": "images in those groups",
    "exact_redundant_images": "extra copies (images - groups)",
    "exact_within_split_groups": "groups inside one split",
    "exact_cross_split_groups": "groups spanning two or more splits",
    "exact_label_conflict_groups": "groups whose copies carry different labels",
    "exact_label_conflict_images": "images in those groups",
    "near_pairs": "near-duplicate pairs (not identical)",
    "near_images": "images in near pairs",
    "near_groups": "connected groups of near pairs",
    "near_cross_split_pairs": "near pairs spanning two splits",
    "near_label_conflict_pairs": "near pairs with different labels",
    "blank": "blank (near-constant) images",
    "low_information": "low-information images",
    "likely_non_face": "likely non-face images (-1: not checked)",
}


def _write_summary(out_dir, title, cache, settings, counts, seconds, balance, split_names, codes, files,
                   qual) -> Path:
    lines = [f"# Data audit: {title}", ""]
    sizes = ", ".join(f"{s} {int((codes == k).sum())}" for k, s in enumerate(split_names))
    lines += [f"{counts['images']} images ({sizes}), cache `{cache.path}`.", "",
              f"Runtime {seconds['total']:.1f} s wall, {seconds['cpu']:.1f} s CPU (" +
              ", ".join(f"{k} {v:.2f}" for k, v in seconds.items() if k not in ("total", "cpu")) + " s).", ""]
    for key, value in counts.items():  # the headline: held-out images the model may have seen in training
        if key.endswith("_with_train_twin"):
            split = key[:-16]
            total = counts.get(f"{split}_images", 0)
            near = counts.get(f"{split}_with_train_near_twin", 0)
            pct = 100.0 * (value + near) / max(total, 1)
            lines += [f"**{split}**: {value} of {total} images have an identical copy in train and {near} more a "
                      f"near copy ({pct:.1f}% in all).", ""]
    lines += [f"{counts['exact_label_conflict_groups']} group(s) of identical images carry different labels; "
              f"{counts['blank']} blank image(s).", ""]
    lines += ["## Counts", "", "| finding | count | meaning |", "|---|---|---|"]
    for key, value in counts.items():
        meaning = _DESCRIPTIONS.get(key, "")
        if key.endswith("_with_train_twin"):
            meaning = f"{key[:-16]} images with an identical copy in train"
        elif key.endswith("_with_train_near_twin"):
            meaning = f"{key[:-21]} images with a near (not identical) copy in train"
        elif key.endswith("_images") and key not in _DESCRIPTIONS:
            meaning = f"images in {key[:-7]}"
        lines.append(f"| {key} | {value} | {meaning} |")
    if balance.loc["unlabelled"].sum() == 0:
        balance = balance.drop(index="unlabelled")
    lines += ["", "## Class balance", "", _md_table(balance, "class"), ""]
    share = (balance.loc[list(CLASS_NAMES)] / balance.loc[list(CLASS_NAMES)].sum(0).replace(0, np.nan) * 100)
    lines += ["Share of each split (%):", "", _md_table(share.round(1).fillna(0), "class"), ""]
    lines += ["## Method", "",
              "* Exact duplicates: identical decoded pixels (64-bit blake2b of the 2304 bytes, verified byte for "
              "byte).",
              f"* Near duplicates: 63-bit DCT perceptual hash of the central {48 - 2 * settings.max_shift}px crop, "
              f"matched at every shift up to {settings.max_shift}px; Hamming distance <= "
              f"{settings.near_threshold}; pairs of identical images are not counted again. `pixel_corr` in "
              "findings.csv is the correlation of the aligned crops (same photo: mostly > 0.8).",
              f"* Blank: pixel std < {settings.blank_std}. Low information: grey-level entropy < "
              f"{settings.low_entropy} bits.",
              "* Likely non-face: face-space (eigenface) residual >= "
              f"{settings.non_face_residual}" + ("" if qual.non_face_checked else " (not checked: too few images)")
              + "; a list to look at, it also flags drawings and a few unusual photographs.", ""]
    lines += ["## Examples", ""]
    for key, path in files.items():
        if path.suffix == ".png":
            lines += [f"### {key.replace('_', ' ')}", "", f"![{key}]({path.name})", ""]
    lines += ["Every finding is listed in [findings.csv](findings.csv).", ""]
    path = out_dir / "summary.md"
    path.write_text("\n".join(lines))
    return path


# ---- training integration -------------------------------------------------------------------------------
def audit_for_training(datamodule, audit_cfg: Any, out_dir: str | Path, mlflow_logger=None) -> AuditResult | None:
    """`audit=true` in train.py: audit the DataModule's cache (splits as this run uses them: train, val,
    test, predict), write the report to out_dir, and log it to MLflow (tags audit.<count>, artifacts audit/)."""
    if not audit_cfg:
        return None
    datamodule.setup("fit")  # opens the cache and builds the splits; a no-op when Lightning calls it again
    settings = AuditSettings.from_config(audit_cfg)
    result = run_audit(datamodule.cache, out_dir, settings, parts=datamodule.idx, title=datamodule.name)
    if mlflow_logger is not None:
        from fer.tracking.mlflow_logger import retry

        client, run_id = mlflow_logger.experiment, mlflow_logger.run_id
        for key, value in result.counts.items():
            retry(client.set_tag, run_id, f"audit.{key}", str(value))
        retry(client.log_artifacts, run_id, str(result.out_dir), "audit")
    return result
