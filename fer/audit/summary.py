"""summary.md: the audit's headline (held-out images with a copy in train), every count with its meaning, the class
balance, the method, and the example grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fer.classes import CLASS_NAMES, IMAGE_SIZE


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


def write_summary(out_dir, title, cache, settings, counts, seconds, balance, split_names, codes, files,
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
              "* Near duplicates: 63-bit DCT perceptual hash of the central "
              f"{IMAGE_SIZE - 2 * settings.max_shift}px crop, "
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
