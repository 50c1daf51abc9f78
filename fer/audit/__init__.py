"""Data audit: exact and near duplicates (within and across splits), label conflicts, blank /
low-information / likely non-face images, class balance; `python -m fer.audit data=... data.root=...`.

fer.data.duplicates  duplicate detection (on the data floor: data.dedup=train uses it too)
fer.audit.quality    per-image quality flags
fer.audit.report     `run_audit(cache, out_dir)`: the report folder (summary.md, findings.csv, PNGs)
"""
