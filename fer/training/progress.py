"""The training progress bar."""

from __future__ import annotations

from pytorch_lightning.callbacks import TQDMProgressBar


class ProgressBar(TQDMProgressBar):
    """Lightning's bar without `v_num` (the logger's version: a fragment of the MLflow run id, meaningless beside
    the loss and accuracy). get_metrics is the hook Lightning documents for choosing what the bar shows."""

    def get_metrics(self, trainer, pl_module) -> dict:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        return items
