"""The camera-degradation augmentation (fer.data.capture, data.augment.capture_p): off by default; on, each face is
degraded with probability p and left exactly as it was otherwise, and each degradation does what it says."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fer.data.augment import FusedAugment, build_augmentation
from fer.data.capture import CaptureDegradation
from fer.data.synthetic import render_faces, synthetic_labels

FACES = torch.from_numpy(render_faces(synthetic_labels(64, 0), 0)).float().div(255).unsqueeze(1)
ONLY = dict(min_side=72, blur=0.0, noise=0.0, light=0.0)  # everything off (a side of 72 keeps every pixel)


def _detail(x: torch.Tensor) -> torch.Tensor:
    """Per image, the energy of its finest structure (a Laplacian's mean square)."""
    kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3)
    return F.conv2d(x, kernel).pow(2).mean(dim=(1, 2, 3))


def test_off_by_default_and_at_p_0():
    assert isinstance(build_augmentation(), FusedAugment)  # the recipes' augmentation is untouched
    x = FACES.clone()
    assert CaptureDegradation(p=0.0)(x) is x


def test_each_face_is_degraded_with_probability_p_and_otherwise_left_as_it_was():
    torch.manual_seed(0)
    x = FACES.repeat(8, 1, 1, 1)  # 512 faces
    y = CaptureDegradation(p=0.3)(x)
    same = (y == x).flatten(1).all(dim=1)
    assert 0.2 < 1 - same.float().mean() < 0.4
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1


def test_fewer_pixels_lose_the_finest_detail():
    torch.manual_seed(0)
    low = CaptureDegradation(p=1.0, **{**ONLY, "min_side": 20})
    ratios = []
    for _ in range(30):  # one side per batch, drawn from [20, 72]: below 48 in about half the batches
        ratios.append(float((_detail(low(FACES)) / _detail(FACES)).mean()))
    resized = [r for r in ratios if r < 0.999]
    assert 8 <= len(resized) <= 22 and max(resized) < 0.9, ratios  # smaller sides, less detail
    assert sum(r == pytest.approx(1.0) for r in ratios) == 30 - len(resized)  # the others untouched


def test_blur_noise_and_light_each_do_what_they_say():
    torch.manual_seed(0)
    blurred = CaptureDegradation(p=1.0, **{**ONLY, "blur": 1.0})(FACES)
    assert (_detail(blurred) <= _detail(FACES) + 1e-6).all() and _detail(blurred).mean() < 0.8 * _detail(FACES).mean()
    noisy = CaptureDegradation(p=1.0, **{**ONLY, "noise": 0.03})(FACES)
    std = (noisy - FACES).flatten(1).std(dim=1)
    assert std.max() < 0.035 and std.min() < 0.01 < std.max()  # std drawn per face from [0, 0.03]
    lit = CaptureDegradation(p=1.0, **{**ONLY, "light": 0.3})(FACES)
    gain = (lit + 1e-3) / (FACES + 1e-3)
    inside = (FACES > 0.05) & (lit < 0.999)  # not clipped at either end
    bound = 0.3 * 2 ** 0.5 + 0.01  # x (1 + g * ramp), g <= 0.3, the ramp +-1 at the edges, +-sqrt(2) at corners
    assert gain[inside].min() > 1 - bound and gain[inside].max() < 1 + bound
    left, right = gain[..., :, :8], gain[..., :, -8:]
    top, bottom = gain[..., :8, :], gain[..., -8:, :]
    # a ramp: across each face one side brighter than the other, most of all where the ramp is strongest
    spread = torch.maximum((left.mean(dim=(1, 2, 3)) - right.mean(dim=(1, 2, 3))).abs(),
                           (top.mean(dim=(1, 2, 3)) - bottom.mean(dim=(1, 2, 3))).abs())
    assert spread.max() > 0.25


@pytest.mark.parametrize("bad,message", [(dict(p=1.5), "capture_p must be in"), (dict(min_side=2), "min_side")])
def test_bad_settings(bad, message):
    with pytest.raises(ValueError, match=message):
        CaptureDegradation(**bad)


def test_a_strong_blur_spreads_as_far_as_its_sigma_reaches():
    """The kernel grows with data.augment.capture_blur: a sigma of 2-3 px spreads a point over +-6-9 px, which a
    fixed 7x7 kernel (+-3 px: enough for the default sigma of 1) cut off."""
    torch.manual_seed(0)
    point = torch.zeros(64, 1, 48, 48)
    point[:, :, 24, 24] = 1.0
    y = CaptureDegradation(p=1.0, **{**ONLY, "blur": 3.0})(point)
    far = y[:, 0, 24, 29:32].sum(dim=1)  # 5-7 px from the point
    assert (far > 1e-3).float().mean() > 0.3  # the faces drawn with sigma above about 1.5
    y = CaptureDegradation(p=1.0, **{**ONLY, "blur": 1.0})(point)
    assert y[:, 0, 24, 28:].abs().max() == 0  # the default blur keeps its 7x7 kernel
