"""findings.csv: one row per finding (exact-duplicate member, label-conflict member, near pair, blank /
low-information / likely-non-face image), with the partner image where there is one."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fer.audit.analysis import Analysis, label_text


def findings_table(found: Analysis, names: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    splits = np.asarray(found.split_names, dtype=object)[found.codes]
    return _findings(found.groups, found.conflict, found.group_labels, found.a, found.b, found.dist, found.shift,
                     found.corr, found.comp, found.quality, names, splits, labels)


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
            "label": [label_text(v) for v in labels[idx]], "group": group,
            "partner_index": np.where(has, partner, -1),
            "partner_split": np.where(has, splits[p], ""), "partner_name": np.where(has, names[p], ""),
            "partner_label": np.where(has, [label_text(v) for v in labels[p]], ""),
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
            lab_txt = np.repeat(["labels " + "/".join(label_text(v) for v in lab) for lab in g_labels],
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
