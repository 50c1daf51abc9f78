"""python -m fer.audit data=<source> data.root=PATH [audit.out_dir=PATH] [audit.near_threshold=N]

Composes conf/audit.yaml (the same `data` and `paths` groups as train.py), opens (or builds) the source's
image cache and writes the audit report folder.
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from fer.cli import finish_process, friendly_errors, setup_process

_ROOT = Path(__file__).resolve().parents[2]


@hydra.main(version_base="1.3", config_path=str(_ROOT / "conf"), config_name="audit")
def main(cfg: DictConfig) -> None:
    import time

    from fer.audit.report import AuditSettings, run_audit
    from fer.data.opened import open_data_config

    with friendly_errors():
        started = time.perf_counter()
        data = open_data_config(cfg.data)
        opened = time.perf_counter() - started
        result = run_audit(data.cache, cfg.audit.out_dir, AuditSettings.from_config(cfg.audit),
                           title=f"{data.name} ({cfg.data.get('root') or data.source.name})")
    c = result.counts
    print(f"audit of {c['images']} images in {result.seconds['total']:.1f}s (+{opened:.1f}s to open the cache)")
    print(f"  exact duplicates: {c['exact_groups']} groups, {c['exact_images']} images, "
          f"{c['exact_cross_split_groups']} across splits, {c['exact_label_conflict_groups']} with conflicting labels")
    for key, value in c.items():
        if key.endswith("_with_train_twin"):
            split = key[:-16]
            print(f"  {split}: {value} of {c[split + '_images']} images have an identical copy in train, "
                  f"{c[split + '_with_train_near_twin']} more a near copy")
    print(f"  near duplicates: {c['near_pairs']} pairs, {c['near_images']} images, "
          f"{c['near_cross_split_pairs']} pairs across splits")
    print(f"  blank {c['blank']}, low information {c['low_information']}, likely non-face {c['likely_non_face']}")
    print(f"report: {result.files['summary']}")


if __name__ == "__main__":
    setup_process(_ROOT)
    main()
    finish_process()
