"""Experiment tracking (MLflow) and the reports every run writes."""
