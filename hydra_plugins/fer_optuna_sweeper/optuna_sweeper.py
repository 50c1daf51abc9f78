"""The Optuna sweeper: asks the study for trials, launches each as a Hydra job (train.py with the trial's
overrides and its identity in `trial.*`), tells the study what the job returned, and summarises the study when
this worker's trials are done. Several workers (processes or machines) share one study through a storage URL.

Imports of optuna and fer stay inside the methods: Hydra imports every hydra_plugins module when any fer script
starts, sweeping or not."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf

log = logging.getLogger(__name__)


def _quoted(text: str) -> str:
    """A value as a quoted override string (a storage URL holds ':' and '/')."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class OptunaSweeper(Sweeper):
    def __init__(self, sampler: Any, pruner: Any, direction: str, storage: str | None, study_name: str,
                 n_trials: int, n_jobs: int, max_failure_rate: float, params: DictConfig | None,
                 enqueue: ListConfig | None = None) -> None:
        self.sampler, self.pruner, self.direction = sampler, pruner, direction
        self.storage, self.study_name = storage, study_name
        self.n_trials, self.n_jobs, self.max_failure_rate = int(n_trials), max(1, int(n_jobs)), max_failure_rate
        self.params = OmegaConf.to_container(params) if params is not None else {}
        self.enqueue = OmegaConf.to_container(enqueue) if enqueue is not None else []
        self.config: DictConfig | None = None
        self.launcher = None
        self.hydra_context: HydraContext | None = None
        self.job_idx = 0

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                                task_function=task_function)

    def sweep(self, arguments: list[str]) -> Any:
        from fer.cli import friendly_errors, silence_library_noise

        # again, now that Optuna is imported: its import gave its logger its own level (INFO) over train.py's
        silence_library_noise()
        with friendly_errors():  # a mistake in the search space or storage: one line, exit 2
            return self._sweep(arguments)

    def _sweep(self, arguments: list[str]) -> Any:
        import optuna

        from fer.tuning.space import choice_values, parse_search_space, suggest
        from fer.tuning.study import open_study, trial_state

        assert self.config is not None and self.launcher is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        # no URL: a sqlite file of this sweep's own, so the trials' runs can reach the study (pruning) and it stays
        storage = self.storage or f"sqlite:///{(sweep_dir / 'optuna.db').resolve()}"
        space = parse_search_space(self.params, arguments)
        # the enqueued trials (e.g. the recipe's own settings) run first; a worker joining later adds no copy
        study = open_study(self.study_name, storage, self.sampler, self.pruner, self.direction,
                           [choice_values(values) for values in self.enqueue])
        done = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
        log.info("Optuna study %s (%s), %d trials finished so far; this worker runs %d, searching %s",
                 self.study_name, storage, done, self.n_trials, ", ".join(space.distributions) or "nothing")
        searched = "[" + ",".join(_quoted(k) for k in space.distributions) + "]"
        remaining = self.n_trials
        while remaining > 0:
            trials = [study.ask() for _ in range(min(self.n_jobs, remaining))]
            batch = [space.overrides(suggest(t, space)) +
                     [f"trial.study={_quoted(self.study_name)}", f"trial.number={t.number}",
                      f"trial.storage={_quoted(storage)}", f"trial.params={searched}"] for t in trials]
            try:
                self._check_composes(batch)
                returns = self.launcher.launch(batch, initial_job_idx=self.job_idx)
            except BaseException:  # a bad override, Ctrl-C, or a trial that exits the process (exit 2: a mistake)
                for trial in trials:  # not left RUNNING in the study for ever
                    if trial_state(study, trial.number) is None:
                        study.tell(trial, state=optuna.trial.TrialState.FAIL)
                raise
            self.job_idx += len(returns)
            failed = [ret for trial, ret in zip(trials, returns) if not self._tell(study, trial, ret)]
            if failed and len(failed) / len(returns) > self.max_failure_rate:
                log.error("%d of %d trials failed (max_failure_rate=%s): stopping the sweep", len(failed),
                          len(returns), self.max_failure_rate)
                failed[0].return_value  # raises the job's own exception, with its traceback
            remaining -= len(trials)
        return self._summarise(study, space, arguments, sweep_dir)

    def _check_composes(self, batch: list[list[str]]) -> None:
        """Each trial's config composes before any trial trains; a searched key the chosen model or data does not
        have is one line naming it."""
        from hydra.errors import HydraException

        from fer.errors import UserError

        try:
            self.validate_batch_is_legal(batch)
        except HydraException as exc:
            reason = " ".join(line.strip() for line in str(exc).splitlines()[:2])
            raise UserError(f"a trial of study {self.study_name} does not compose: {reason}. Its search space "
                            "(hydra.sweeper.params) sets keys of the recipe it was written for: give that "
                            "experiment= (the search file says which)") from exc

    def _tell(self, study, trial, ret) -> bool:
        """Tells the study how the trial's job ended; False for a failure."""
        import optuna
        from hydra.core.utils import JobStatus

        from fer.tuning.study import trial_state

        state = trial_state(study, trial.number)
        if state is not None:  # the run finished its trial itself (pruned)
            log.info("trial %d: %s", trial.number, state.name)
            return True
        value = ret.return_value if ret.status == JobStatus.COMPLETED else None
        if isinstance(value, (int, float)):
            study.tell(trial, float(value))
            log.info("trial %d: %s", trial.number, value)
            return True
        if ret.status == JobStatus.COMPLETED:
            log.error("trial %d returned %r, not a number: is optimized_metric=%s logged by this model's runs?",
                      trial.number, value, self.config.get("optimized_metric"))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return False

    def _summarise(self, study, space, arguments: list[str], sweep_dir: Path) -> dict[str, Any]:
        from fer.tuning.study import summarise_study

        loader = self.hydra_context.config_loader

        def is_group(key: str) -> bool:
            return bool(loader.get_group_options(key))

        return summarise_study(study, space, arguments, is_group, sweep_dir, self.config)
