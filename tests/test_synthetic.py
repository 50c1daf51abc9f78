"""The synthetic face generator: determinism, chunking, class balance, and that the faces carry the label."""

from __future__ import annotations

import numpy as np
import pytest

from fer.classes import NUM_CLASSES
from fer.data.synthetic import render_faces, synthetic_labels


@pytest.mark.parametrize("n", [0, 1, 6, 7, 50, 701])
def test_labels_balanced_int64_and_deterministic(n):
    labels = synthetic_labels(n, seed=3)
    assert labels.dtype == np.int64 and labels.shape == (n,)
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    assert len(counts) == NUM_CLASSES and counts.sum() == n
    assert counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(labels, synthetic_labels(n, seed=3))


def test_labels_shuffled_by_seed():
    a, b = synthetic_labels(700, 0), synthetic_labels(700, 1)
    assert not np.array_equal(a, b)
    assert not np.array_equal(a, np.sort(a))  # shuffled, not grouped by class


def test_render_shape_dtype_and_determinism():
    labels = synthetic_labels(40, 0)
    a = render_faces(labels, seed=5)
    assert a.dtype == np.uint8 and a.shape == (40, 48, 48)
    assert (a.reshape(40, -1).std(axis=1) > 5).all()  # no blank images
    np.testing.assert_array_equal(a, render_faces(labels, seed=5))
    assert not np.array_equal(a, render_faces(labels, seed=6))


@pytest.mark.parametrize("nuisance", [0.0, 1.0])
def test_chunked_into_out_equals_one_shot(nuisance):
    labels = synthetic_labels(30, 2)
    whole = render_faces(labels, 9, nuisance)
    buf = np.zeros((30, 48, 48), np.uint8)
    for a, b in [(0, 7), (7, 8), (8, 30)]:
        returned = render_faces(labels[a:b], 9, nuisance, out=buf[a:b], start=a)
        assert np.shares_memory(returned, buf)
    np.testing.assert_array_equal(buf, whole)
    # out= a slice of a larger buffer (how the cache fills a memmap) writes in place, same pixels
    big = np.zeros((40, 48, 48), np.uint8)
    render_faces(labels, 9, nuisance, out=big[5:35])
    np.testing.assert_array_equal(big[5:35], whole)
    assert not big[:5].any() and not big[35:].any()


def test_image_depends_on_its_own_label_and_index_only():
    labels = synthetic_labels(20, 4)
    changed = labels.copy()
    changed[3] = (changed[3] + 1) % NUM_CLASSES
    a, b = render_faces(labels, 1), render_faces(changed, 1)
    differs = (a != b).any(axis=(1, 2))
    assert differs[3] and differs.sum() == 1


def test_bad_arguments_rejected():
    with pytest.raises(ValueError):
        render_faces(np.array([0, 7]), 0)
    with pytest.raises(ValueError):
        render_faces(np.array([0, 1]), 0, out=np.zeros((3, 48, 48), np.uint8))
    with pytest.raises(ValueError):
        synthetic_labels(-1, 0)


def test_classes_differ_and_nuisance_varies_images():
    labels = np.repeat(np.arange(NUM_CLASSES), 20)
    clean = render_faces(labels, 0, nuisance=0.0).astype(np.float32).reshape(NUM_CLASSES, 20, -1)
    means = clean.mean(axis=1)
    gaps = np.abs(means[:, None] - means[None]).mean(axis=2)
    assert gaps[~np.eye(NUM_CLASSES, dtype=bool)].min() > 1.0  # every pair of class means differs
    noisy = render_faces(labels, 0, nuisance=1.0).astype(np.float32).reshape(NUM_CLASSES, 20, -1)
    # within a class, nuisance spreads images far more than expression jitter alone does
    assert noisy.std(axis=1).mean() > 3 * clean.std(axis=1).mean()
    assert noisy.reshape(-1, 48 * 48).mean(axis=1).std() > 10  # brightness varies between images


def _one_nn_accuracy(x_train, y_train, x_test, y_test):
    # squared distances via the dot-product expansion: one matrix product, no per-pair loop
    dist = (x_test ** 2).sum(1)[:, None] - 2 * x_test @ x_train.T + (x_train ** 2).sum(1)[None]
    return float((y_train[dist.argmin(axis=1)] == y_test).mean())


def test_clean_faces_are_learnable_and_shuffled_labels_are_not():
    # 1-NN on raw pixels of clean faces (held-out seed): the label must be readable from the drawing, while the
    # expression jitter keeps it from being a lookup (a nearest *centroid* gets only ~85%: classes are not blobs)
    y_train, y_test = synthetic_labels(1000, 10), synthetic_labels(350, 11)
    x_train = render_faces(y_train, 10, nuisance=0.0).reshape(1000, -1).astype(np.float32)
    x_test = render_faces(y_test, 11, nuisance=0.0).reshape(350, -1).astype(np.float32)
    assert _one_nn_accuracy(x_train, y_train, x_test, y_test) > 0.9
    shuffled = np.random.default_rng(0).permutation(y_train)
    assert _one_nn_accuracy(x_train, shuffled, x_test, y_test) < 0.3
