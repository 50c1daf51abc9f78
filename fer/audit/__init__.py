"""Data audit: exact and near duplicates (within and across splits), label conflicts, blank /
low-information / likely non-face images, class balance; `python -m fer.audit data=... data.root=...`.

fer.audit.dedup      duplicate detection and `drop_train_duplicates` (data.dedup=train)
fer.audit.quality    per-image quality flags
fer.audit.report     `run_audit(cache, out_dir)`: the report folder (summary.md, findings.csv, PNGs)
"""

from fer.audit.dedup import Duplicates, drop_train_duplicates, find_duplicates
from fer.audit.quality import Quality, assess_quality

__all__ = ["Duplicates", "Quality", "assess_quality", "drop_train_duplicates", "find_duplicates"]
