"""What the test reports are drawn from (fer.tracking.reports): every test image's calibrated probabilities and
label, and a few misclassified images of each true class. A Callback beside the model, not part of it: a model's
test_step only returns its probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from fer.classes import NUM_CLASSES

MISCLASSIFIED_KEPT = 63  # at most 9 per true class: the 9x7 grid of reports/misclassified.png


class TestOutputs(pl.Callback):
    """After trainer.test: `outputs` holds numpy arrays "probs" [N,7] and "labels" [N] (every test image once,
    across DDP ranks, without the padding copies), and "wrong_images" [M,48,48], "wrong_labels", "wrong_preds"
    (this rank's misclassified images, up to MISCLASSIFIED_KEPT // 7 of each true class)."""

    __test__ = False  # a class named Test*, not a pytest test class

    def __init__(self) -> None:
        self.outputs: dict[str, np.ndarray] = {}
        self._parts: dict[str, list[torch.Tensor]] = {}

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._parts = {"probs": [], "labels": [], "wrong_images": [], "wrong_labels": [], "wrong_preds": []}

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch
        probs = outputs  # the model's test_step returns its calibrated probabilities
        parts = self._parts
        parts["probs"].append(probs.detach().float().cpu())
        parts["labels"].append(y.cpu())
        # a few misclassified images of every true class (test splits are often sorted by class, so "the first
        # 63" would all be angry); label -1 is DDP padding
        wrong = ((probs.argmax(1) != y) & (y >= 0)).nonzero().flatten()
        kept = torch.bincount(torch.cat(parts["wrong_labels"]), minlength=NUM_CLASSES) if parts["wrong_labels"] \
            else torch.zeros(NUM_CLASSES, dtype=torch.long)
        quota = MISCLASSIFIED_KEPT // NUM_CLASSES
        take = [i for c in range(NUM_CLASSES) for i in wrong[y[wrong] == c][: max(0, quota - int(kept[c]))].tolist()]
        if take:
            wrong = torch.tensor(take, device=y.device)
            parts["wrong_images"].append(x[wrong, 0].float().cpu())
            parts["wrong_labels"].append(y[wrong].cpu())
            parts["wrong_preds"].append(probs[wrong].argmax(1).cpu())

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        out = {k: torch.cat(v) if v else torch.empty(0) for k, v in self._parts.items()}
        self._parts = {}
        if trainer.world_size > 1:  # the reports cover the whole test split, not rank 0's shard
            for key in ("probs", "labels"):
                out[key] = pl_module.all_gather(out[key].to(pl_module.device)).flatten(0, 1).cpu()
        real = out["labels"] >= 0  # without the DDP padding: every test image once
        out["probs"], out["labels"] = out["probs"][real], out["labels"][real]
        self.outputs = {k: v.numpy() for k, v in out.items()}
