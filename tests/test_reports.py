"""The test reports' inputs (fer.training.test_outputs) and files (fer.tracking.reports), without a training: the
callback is fed batches as Lightning would feed them."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from fer.classes import NUM_CLASSES
from fer.tracking.reports import write_test_reports
from fer.training.test_outputs import MISCLASSIFIED_KEPT, TestOutputs


def _feed(callback: TestOutputs, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Each batch through the callback, with the model's probabilities: wrong on every image of the even batches,
    right on the others."""
    trainer = SimpleNamespace(world_size=1)
    callback.on_test_epoch_start(trainer, None)
    for i, (x, y) in enumerate(batches):
        said = (y.clamp_min(0) + (1 if i % 2 == 0 else 0)) % NUM_CLASSES
        probs = torch.nn.functional.one_hot(said, NUM_CLASSES).float() * 0.9 + 0.1 / NUM_CLASSES
        callback.on_test_batch_end(trainer, None, probs, (x, y), i)
    callback.on_test_epoch_end(trainer, None)


def test_every_image_once_and_a_few_misclassified_of_each_class(tmp_path):
    """Probabilities and labels of every image in order, DDP padding (label -1) left out; misclassified images kept
    up to the quota of each true class across batches (a split sorted by class still shows every class)."""
    rng = np.random.default_rng(0)
    batches = []
    for b in range(6):
        y = torch.from_numpy(rng.integers(0, NUM_CLASSES, 40))
        y[-3:] = -1 if b == 5 else y[-3:]  # padding copies at the end of the last batch
        batches.append((torch.rand(40, 1, 48, 48), y))
    callback = TestOutputs()
    _feed(callback, batches)
    out = callback.outputs
    labels = torch.cat([y for _, y in batches])
    assert np.array_equal(out["labels"], labels[labels >= 0].numpy())
    assert out["probs"].shape == (len(out["labels"]), NUM_CLASSES)
    quota = MISCLASSIFIED_KEPT // NUM_CLASSES
    kept = np.bincount(out["wrong_labels"], minlength=NUM_CLASSES)
    wrong_per_class = np.bincount(torch.cat([y[y >= 0] for _, y in batches[::2]]).numpy(), minlength=NUM_CLASSES)
    assert np.array_equal(kept, np.minimum(wrong_per_class, quota))
    assert (out["wrong_preds"] != out["wrong_labels"]).all() and out["wrong_images"].shape[1:] == (48, 48)

    files = write_test_reports(out, tmp_path)
    assert {"confusion_matrix", "per_class_report", "misclassified"} <= set(files)
    assert all(path.is_file() for path in files.values())


def test_a_test_with_no_mistakes_has_no_misclassified_grid(tmp_path):
    callback = TestOutputs()
    trainer = SimpleNamespace(world_size=1)
    callback.on_test_epoch_start(trainer, None)
    y = torch.arange(14) % NUM_CLASSES
    callback.on_test_batch_end(trainer, None, torch.nn.functional.one_hot(y, NUM_CLASSES).float(),
                               (torch.rand(14, 1, 48, 48), y), 0)
    callback.on_test_epoch_end(trainer, None)
    assert len(callback.outputs["wrong_labels"]) == 0
    assert "misclassified" not in write_test_reports(callback.outputs, tmp_path)
