"""The study a sweep works on: opened (or joined, when another worker made it first) in its Optuna storage, and
summarised when a worker's trials are done."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from fer.tracking.sqlite_store import creation_lock
from fer.tuning.space import SearchSpace

log = logging.getLogger(__name__)

SQLITE_TIMEOUT_S = 60  # a worker waits this long for another's write to the shared sqlite file


def open_storage(url: str):
    """An Optuna storage for `url`: sqlite files wait for each other's writes (several workers on one machine);
    other URLs (postgresql://, mysql://, journal files) as Optuna opens them."""
    import optuna

    if url.startswith("sqlite:"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_S}})
    return optuna.storages.get_storage(url)


def open_study(name: str, url: str, sampler, pruner, direction: str, enqueue: list[dict[str, Any]] = ()):
    """The study `name` in the storage at `url`, created by the first worker and joined by the others. `enqueue`:
    trials to run first (their params), added once per study however many workers start together."""
    import optuna

    # workers starting together on a new sqlite file: one creates its tables and enqueues the first trials (on a
    # database server across machines, Optuna's own duplicate checks are what hold)
    with creation_lock(url):
        study = optuna.create_study(study_name=name, storage=open_storage(url), sampler=sampler, pruner=pruner,
                                    direction=direction, load_if_exists=True)
        for params in enqueue:
            study.enqueue_trial(params, skip_if_exists=True)
    return study


def trial_state(study, number: int):
    """The state of the trial `number` if it has finished (complete, pruned, failed), else None."""
    for trial in study.get_trials(deepcopy=False):
        if trial.number == number:
            return trial.state if trial.state.is_finished() else None
    return None


def summarise_study(study, space: SearchSpace, arguments: list[str], is_group: Callable[[str], bool],
                    sweep_dir: Path, config: DictConfig) -> dict[str, Any]:
    """The study as it stands when this worker is done (other workers' trials included): its counts and best trial
    in optimization_results.yaml, the best trial as a ready experiment config, the trials table and Optuna's
    plots, all in the sweep folder and, with logger=mlflow, in the study's summary run."""
    import optuna

    from fer.tuning.summary import experiment_config, plot_study

    states = [t.state for t in study.get_trials(deepcopy=False)]
    counts = {"n_trials": len(states)} | {f"n_{s.name.lower()}": states.count(s) for s in
                                           (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                                            optuna.trial.TrialState.FAIL)}
    files = []
    best = None
    if counts["n_complete"]:
        best = study.best_trial
        log.info("best trial %d of study %s: %s=%.4f with %s", best.number, study.study_name,
                 config.get("optimized_metric"), best.value, best.params)
    else:
        log.warning("study %s has no complete trial yet: no best trial to report", study.study_name)
    results = {"study": study.study_name, "direction": study.direction.name.lower(), **counts,
               "best_trial": best.number if best else None, "best_value": best.value if best else None,
               "best_params": dict(best.params) if best else {}}
    files.append(sweep_dir / "optimization_results.yaml")
    OmegaConf.save(OmegaConf.create(results), files[-1])
    if best is not None:
        recipe = f"{study.study_name}_best"
        header = (f"Best trial {best.number} of Optuna study {study.study_name}: {config.get('optimized_metric')}="
                  f"{best.value:.4f} ({counts['n_complete']} complete, {counts['n_pruned']} pruned, "
                  f"{counts['n_fail']} failed trials)\n"
                  f"Found by: python train.py -m {' '.join(arguments)}\n"
                  f"Use it: copy this file to conf/experiment/{recipe}.yaml, then\n"
                  f"  python train.py experiment={recipe} data.root=PATH   (trains it and scores the test split once)")
        files.append(sweep_dir / "best_experiment.yaml")
        files[-1].write_text(experiment_config(space.overrides(best.params), is_group, header))
        log.info("the best trial as an experiment config: %s (copy it to conf/experiment/%s.yaml)", files[-1],
                 recipe)
    files.append(sweep_dir / "trials.csv")
    study.trials_dataframe().to_csv(files[-1], index=False)
    files += plot_study(study, sweep_dir / "plots")
    logger = OmegaConf.select(config, "logger.mlflow")
    if logger is not None:
        from fer.tracking.record import StudyRecord

        record = StudyRecord.open(logger.tracking_uri, logger.experiment_name, logger.get("artifact_location"),
                                  study.study_name)
        record.log_study(results["best_value"], results["best_params"], counts, files)
        log.info("MLflow: the study's summary run %s in experiment %s", record.run_id, logger.experiment_name)
    return results
