"""The fused augmentation (one grid_sample + a few elementwise ops, the default) draws from the same distribution
as the kornia op-by-op version: compared on many augmentations of the same faces, their difference is no larger
than between two kornia runs with different seeds. And its pieces do exactly what they say."""

from __future__ import annotations

import pytest
import torch

from fer.data.augment import FusedAugment, build_augmentation
from fer.data.synthetic import render_faces, synthetic_labels

FACES = torch.from_numpy(render_faces(synthetic_labels(16, 0), 0)).float().div(255).unsqueeze(1)
ONLY = {  # each family of the default augmentation alone (the rest switched off), and all of it
    "default": {},
    "geometry": dict(brightness=0, contrast=0, erasing_p=0),
    "rotation_scale": dict(shift=0, flip=False, affine_p=1.0, brightness=0, contrast=0, erasing_p=0),
    "colour": dict(shift=0, flip=False, affine_p=0, erasing_p=0, color_p=1.0),
    "erasing": dict(shift=0, flip=False, affine_p=0, brightness=0, contrast=0, erasing_p=1.0),
}


def _augmented(implementation: str, seed: int, repeats: int = 256, **settings) -> torch.Tensor:
    """[repeats, 16, 48, 48]: every face augmented `repeats` times, in batches of 128 as training draws them."""
    torch.manual_seed(seed)
    aug = build_augmentation(implementation=implementation, **settings)
    return torch.cat([aug(FACES.repeat(8, 1, 1, 1)) for _ in range(repeats // 8)]).view(repeats, 16, 48, 48)


def _distance(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """How far two sets of augmentations are apart: per-pixel mean and std images, share of black pixels."""
    return {"mean": float((a.mean(0) - b.mean(0)).abs().mean()), "std": float((a.std(0) - b.std(0)).abs().mean()),
            "zeros": abs(float((a == 0).float().mean() - (b == 0).float().mean()))}


@pytest.mark.parametrize("family", sorted(ONLY))
def test_fused_matches_the_kornia_distribution(family, one_thread):
    fused = _augmented("fused", 0, **ONLY[family])
    kornia_a, kornia_b = _augmented("kornia", 1, **ONLY[family]), _augmented("kornia", 2, **ONLY[family])
    between, noise = _distance(fused, kornia_a), _distance(kornia_b, kornia_a)
    for key in ("mean", "std"):
        assert between[key] <= 1.3 * noise[key] + 1e-3, (key, between, noise)
    assert between["zeros"] <= 3 * noise["zeros"] + 2e-3, (between, noise)


def test_output_shape_range_seed_and_per_sample_randomness():
    aug = build_augmentation()
    assert isinstance(aug, FusedAugment)
    x = torch.rand(64, 1, 48, 48)
    torch.manual_seed(0)
    a = aug(x.clone())
    torch.manual_seed(0)
    b = aug(x.clone())
    torch.manual_seed(1)
    c = aug(x.clone())
    assert a.shape == x.shape and a.dtype == torch.float32 and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    changed = (a - x).abs().flatten(1).amax(1) > 1e-6
    assert changed.float().mean() > 0.9 and len({round(float(v), 4) for v in (a - x).abs().mean((1, 2, 3))}) > 32


def test_shift_and_flip_alone_are_exact_integer_crops_or_their_mirror():
    """With no rotation/scale the grid lands on pixel centres: the output is the image moved by whole pixels
    (up to `shift` each way), maybe mirrored, pixel for pixel (inside the border the shift reveals)."""
    aug = FusedAugment(shift=3, flip=True, affine_p=0.0, brightness=0, contrast=0, erasing_p=0)
    x = torch.rand(64, 1, 48, 48)
    torch.manual_seed(0)
    y = aug(x)
    moves, mirrored = set(), 0
    for i in range(64):
        match = [(dy, dx, m) for m in (False, True) for dy in range(-3, 4) for dx in range(-3, 4)
                 if torch.allclose(y[i, 0, 3:-3, 3:-3],
                                   (x[i, 0].flip(-1) if m else x[i, 0])[3 + dy:45 + dy, 3 + dx:45 + dx], atol=1e-5)]
        assert len(match) == 1, i
        moves.add(match[0][:2])
        mirrored += match[0][2]
    assert len(moves) > 20 and 16 < mirrored < 48


def test_mirror_in_place_cpu_and_select_device_paths_agree():
    from fer.data.augment import mirror

    x, chosen = torch.rand(16, 1, 48, 48), torch.arange(16) % 3 == 0
    selected = mirror(x.clone(), chosen, in_place=False)  # the path a GPU takes
    assert torch.equal(selected, mirror(x.clone(), chosen, in_place=True))
    assert torch.equal(selected[chosen], x[chosen].flip(-1)) and torch.equal(selected[~chosen], x[~chosen])


def test_rotation_matches_kornia_for_the_same_angle_and_scale():
    """The grid's rotation/scale is kornia's RandomAffine for the same parameters (centre fixed, same sign)."""
    import kornia.geometry.transform as KT

    from fer.data.augment import affine_theta, warp

    x = FACES[:4]
    angle, zoom = torch.tensor([7.0, -9.0, 3.0, 0.0]), torch.tensor([1.05, 0.93, 1.0, 1.1])
    ours = warp(x, affine_theta(torch.deg2rad(angle), zoom, torch.ones(4), torch.zeros(2, 4), 48, 48))
    center = torch.full((4, 2), 23.5)
    matrix = KT.get_rotation_matrix2d(center, angle, torch.stack([zoom, zoom], 1))
    theirs = KT.warp_affine(x, matrix, (48, 48), padding_mode="reflection", align_corners=False)
    assert (ours - theirs)[..., 4:-4, 4:-4].abs().max() < 1e-4  # the border: reflection is drawn differently


def test_erasing_sets_one_rectangle_of_the_right_size_to_zero():
    aug = FusedAugment(shift=0, flip=False, affine_p=0, brightness=0, contrast=0, erasing_p=1.0,
                       erasing_scale=(0.02, 0.15))
    x = torch.rand(256, 1, 48, 48) * 0.9 + 0.1  # no zeros of its own
    y = aug(x)
    for i in range(256):
        rows, cols = torch.nonzero(y[i, 0] == 0, as_tuple=True)
        assert len(rows) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # a filled rectangle
        assert 0.015 * 48 * 48 <= len(rows) <= 0.16 * 48 * 48
        keep = y[i, 0] != 0
        assert torch.equal(y[i, 0][keep], x[i, 0][keep])
