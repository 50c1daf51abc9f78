"""The link from a training run back to its Optuna trial. The sweeper names the trial in the run's config
(`trial.study`, `trial.number`, `trial.storage`: conf/train.yaml); the run reconnects to the study's storage
through Optuna's public API, whichever process or machine it runs on, to report val/acc after every epoch and
to learn whether the pruner stops it."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytorch_lightning as pl

from fer.errors import RunStoppedEarly, UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialRef:
    study: str
    number: int
    storage: str

    def open(self, pruner=None):
        """(study, trial) from the storage, as the sweeper left them. The pruner is not kept in the storage: the
        run is given the sweeper's own (its config)."""
        import optuna

        from fer.tuning.study import open_storage

        storage = open_storage(self.storage)
        study = optuna.load_study(study_name=self.study, storage=storage, pruner=pruner)
        trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(self.study),
                                                                   self.number)
        return study, optuna.trial.Trial(study, trial_id)


class TrialPruned(RunStoppedEarly):
    """The pruner stopped this trial: Optuna is told (state PRUNED) before this is raised, so the sweeper finds the
    trial finished; the training run's record ends as stopped, not failed."""


class TrialPruning(pl.Callback):
    """Reports `monitor` to the trial after every validation epoch; when the study's pruner says so, marks the trial
    PRUNED and stops the run (conf/hparams_search/*.yaml add it as callbacks.trial_pruning, with the sweeper's
    pruner)."""

    def __init__(self, study: str | None, number: int | None, storage: str | None, pruner=None,
                 monitor: str = "val/acc"):
        if study is None or number is None or storage is None:
            raise UserError("callbacks.trial_pruning reports to an Optuna trial: run hparams_search configs with "
                            "the Optuna sweeper (python train.py -m hparams_search=<name>), which names the trial")
        self.ref = TrialRef(str(study), int(number), str(storage))
        self.pruner, self.monitor = pruner, monitor
        self._study = self._trial = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:  # one rank talks to the storage; the others follow its decision
            self._study, self._trial = self.ref.open(self.pruner)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        epoch = trainer.current_epoch
        value = float(trainer.callback_metrics[self.monitor])
        prune = False
        if trainer.is_global_zero:
            self._trial.report(value, step=epoch)
            prune = self._trial.should_prune()
        if trainer.strategy.broadcast(prune):  # every DDP rank stops together
            if trainer.is_global_zero:
                import optuna

                self._study.tell(self.ref.number, state=optuna.trial.TrialState.PRUNED)
            raise TrialPruned(f"trial {self.ref.number} of study {self.ref.study} pruned after epoch {epoch} "
                              f"({self.monitor}={value:.4f})")
