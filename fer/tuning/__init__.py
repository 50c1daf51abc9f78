"""Hyper-parameter search with Optuna behind Hydra's sweeper interface (hydra_plugins/fer_optuna_sweeper,
conf/hparams_search/): the search space read from Hydra's override grammar, the link from a training run back
to its trial (per-epoch reports, pruning), and the study's summary (best experiment config, plots, MLflow)."""
