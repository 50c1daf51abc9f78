"""fer's Optuna sweeper for Hydra (conf/hydra/sweeper/optuna.yaml). hydra-optuna-sweeper 1.3 pins optuna<3 and
cannot prune; this one runs on the Optuna that requirements.txt pins, prunes through the trial's own training
run (fer.tuning.trial), and logs the study to MLflow. Hydra finds it because it lives in the hydra_plugins
namespace package on sys.path (the checkout's root, beside train.py)."""
