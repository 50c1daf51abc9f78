"""What a finished study leaves behind: the best trial's settings as a ready experiment config, Optuna's plots
(matplotlib backend), the trials table, and the summary run in MLflow (through fer.tracking.record)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from omegaconf import OmegaConf

log = logging.getLogger(__name__)

# command-line overrides that belong to this machine or to the search itself, not to the recipe it found
_NOT_RECIPE = ("hydra", "hparams_search", "data.root", "paths", "trial", "experiment_name", "run_name")


def experiment_config(overrides: list[str], is_group: Callable[[str], bool], header: str) -> str:
    """A conf/experiment/ file that trains with `overrides` (the sweep's own command line, then the trial's): the
    `experiment=` it started from as the base, config-group choices (`is_group`) as `override /group: choice`,
    values as nested keys. Machine-local and search-only settings (_NOT_RECIPE) are left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    base: list[str] = []
    groups: dict[str, str] = {}
    values = OmegaConf.create({})
    for text in overrides:
        override = parser.parse_override(text)
        key = override.get_key_element().lstrip("+~")
        if key in _NOT_RECIPE or key.split(".")[0].split("/")[0] in _NOT_RECIPE:
            continue
        value = override.value()
        if key == "experiment":
            base = [str(value)]
        elif is_group(key):
            groups[key] = str(value)
        else:
            OmegaConf.update(values, key, value, force_add=True)
    defaults = base + [{f"override /{group}": choice} for group, choice in groups.items()]
    lines = ["# @package _global_"] + [f"# {line}" if line else "#" for line in header.splitlines()]
    body = OmegaConf.to_yaml(OmegaConf.create({"defaults": defaults, **OmegaConf.to_container(values)}))
    return "\n".join(lines) + "\n" + body


def plot_study(study, out_dir: Path) -> list[Path]:
    """Optuna's own matplotlib plots of the study: optimisation history, intermediate values (what the pruner saw)
    and parameter importances; a plot the study cannot draw yet (importances need two finished trials) is left out
    with a line saying why."""
    import warnings

    import matplotlib
    import matplotlib.pyplot as plt
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as optuna_plots

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    # rc_context: Optuna's plots switch pyplot's global style; the caller's comes back afterwards
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore", ExperimentalWarning)  # the matplotlib plots are marked experimental
        for name, draw in (("optimization_history", optuna_plots.plot_optimization_history),
                           ("intermediate_values", optuna_plots.plot_intermediate_values),
                           ("param_importances", optuna_plots.plot_param_importances)):
            try:
                figure = draw(study).get_figure()
            except (ValueError, RuntimeError) as exc:
                log.info("study plot %s left out: %s", name, str(exc).splitlines()[0])
                plt.close("all")
                continue
            figure.tight_layout()
            path = out_dir / f"{name}.png"
            figure.savefig(path, dpi=110)
            plt.close(figure)
            written.append(path)
    return written
