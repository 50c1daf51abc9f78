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

from fer.audit import quality as qq
from fer.audit.analysis import analyse, class_balance
from fer.audit.findings import findings_table
from fer.audit.plots import write_plots
from fer.audit.summary import write_summary
from fer.data import duplicates as dd
from fer.errors import UserError

log = logging.getLogger(__name__)


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
            raise UserError(f"unknown audit option(s) {unknown}; known: {sorted(known)} and out_dir")
        return cls(**values)


@dataclass
class AuditResult:
    out_dir: Path
    counts: dict[str, int]
    seconds: dict[str, float]
    files: dict[str, Path] = field(default_factory=dict)


def run_audit(cache, out_dir: str | Path, settings: AuditSettings | None = None,
              parts: dict[str, np.ndarray] | None = None, title: str = "") -> AuditResult:
    """Audit every image of `cache` and write the report folder; returns the counts."""
    settings = settings or AuditSettings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    found, counts, seconds = analyse(cache, settings, parts)
    t0 = time.perf_counter()
    findings_table(found, np.asarray(cache.names, dtype=object), cache.labels).to_csv(
        out_dir / "findings.csv", index=False, float_format="%.4g")
    seconds["tables"] = time.perf_counter() - t0 + seconds.pop("counts")
    t0 = time.perf_counter()
    files = {"findings": out_dir / "findings.csv"}
    files.update(write_plots(out_dir, settings, cache.images, cache.labels, found))
    seconds["plots"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - started
    seconds["cpu"] = time.process_time() - cpu_started  # all threads; wall time depends on the machine's load
    balance = class_balance(cache.labels, found.codes, found.split_names)
    files["summary"] = write_summary(out_dir, title or Path(cache.path).name, cache, settings, counts, seconds,
                                     balance, found.split_names, found.codes, files, found.quality)
    log.info("audit: %d exact group(s), %d near pair(s), %d blank; report in %s (%.1fs)", counts["exact_groups"],
             counts["near_pairs"], counts["blank"], out_dir, seconds["total"])
    return AuditResult(out_dir=out_dir, counts=counts, seconds=seconds, files=files)
