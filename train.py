"""Train an expression classifier: python train.py [model=cnn_deep] [data=fer2013 data.root=PATH] [...].

See README.md; the full config is in conf/ (print it with --cfg job).
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from fer.cli import exit_on_bad_command_line, finish_process, friendly_errors, setup_process


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from fer.training import run_training

    with friendly_errors():
        results = run_training(cfg)
    # what a sweeper (hparams_search: Optuna) optimises; None for a run that ended before it was measured
    return results.get(cfg.optimized_metric)


if __name__ == "__main__":
    setup_process(Path(__file__).resolve().parent, training=True)
    # typos, a bad FER_CACHE_DIR and a missing data folder: one line, before Hydra makes a run folder
    exit_on_bad_command_line(Path(__file__).resolve().parent / "conf", "train")
    main()
    finish_process()
