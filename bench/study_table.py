"""A finished Optuna study as the markdown tables of docs/RECIPES.md: one row per trial, then what pruning saved.

    python bench/study_table.py sqlite:///outputs/train/multiruns/<sweep>/optuna.db [--study fer2013_mlp_search]

Pruning's saving is estimated from the study itself: a pruned trial would have run its planned epochs
(`trainer.max_epochs` of its params) at the seconds per epoch it ran at; the saving is that minus what it took.
"""

from __future__ import annotations

import argparse

import optuna

EPOCHS = "trainer.max_epochs"


def _short(key: str) -> str:
    return key.split(".")[-1]


def _value(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("storage")
    parser.add_argument("--study", default=None, help="the study's name (default: the storage's only study)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = args.study or optuna.get_all_study_names(args.storage)[0]
    study = optuna.load_study(study_name=name, storage=args.storage)
    trials = [t for t in study.trials if t.state.is_finished()]
    keys = list(trials[0].params)
    print(f"Study {name}: {len(trials)} trials, best trial {study.best_trial.number} "
          f"(val/best_acc {study.best_value:.4f})\n")
    print("| trial | state | val/best_acc | epochs run | minutes | " + " | ".join(_short(k) for k in keys) + " |")
    print("|---" * (5 + len(keys)) + "|")
    run_minutes = saved_minutes = 0.0
    for t in trials:
        minutes = t.duration.total_seconds() / 60
        run_minutes += minutes
        epochs_run = len(t.intermediate_values)
        best = t.value if t.state == optuna.trial.TrialState.COMPLETE else max(t.intermediate_values.values(),
                                                                                default=float("nan"))
        planned = t.params.get(EPOCHS, epochs_run)
        if t.state == optuna.trial.TrialState.PRUNED and epochs_run:
            saved_minutes += minutes / epochs_run * (planned - epochs_run)
        print(f"| {t.number} | {t.state.name.lower()} | {best:.4f} | {epochs_run}/{planned} | {minutes:.1f} | "
              + " | ".join(_value(t.params.get(k)) for k in keys) + " |")
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in trials)
    print(f"\n{pruned} of {len(trials)} trials pruned. The study took {run_minutes:.1f} min of training; run to "
          f"their planned epochs, the pruned trials would have taken {saved_minutes:.1f} min more "
          f"({saved_minutes / (run_minutes + saved_minutes):.0%} of the total saved).")


if __name__ == "__main__":
    main()
