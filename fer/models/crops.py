"""Crops for models trained on crops of the 48x48 faces (model.crop_size): a random crop per image in training,
the ten standard crops for evaluation. Whole-batch tensor indexing: no per-image Python."""

from __future__ import annotations

import torch


def random_crops(x: torch.Tensor, size: int) -> torch.Tensor:
    """One random size x size crop of each image of [B,C,H,W], by one indexing over a view of every window."""
    b, _, h, w = x.shape
    windows = x.unfold(2, size, 1).unfold(3, size, 1)  # [B,C,H-size+1,W-size+1,size,size], a view
    oy = torch.randint(0, h - size + 1, (b,), device=x.device)
    ox = torch.randint(0, w - size + 1, (b,), device=x.device)
    return windows[torch.arange(b, device=x.device), :, oy, ox]


def ten_crops(x: torch.Tensor, size: int) -> torch.Tensor:
    """[10B,C,size,size]: the four corner crops and the centre crop of each image, then the same mirrored."""
    h, w = x.shape[-2:]
    cy, cx = (h - size) // 2, (w - size) // 2
    crops = [x[..., y:y + size, c:c + size] for y, c in ((0, 0), (0, w - size), (h - size, 0),
                                                          (h - size, w - size), (cy, cx))]
    crops += [c.flip(-1) for c in crops]
    return torch.cat(crops)


def ten_crops_are_mirror_invariant(size: int | None, image_size: int) -> bool:
    """True when a mirrored image gives the same ten crops (mirrored) as the image, so a model that averages them
    gains nothing from a mirror view: crops were asked for, with even margins (the centre crop is then symmetric)."""
    return bool(size) and (image_size - int(size)) % 2 == 0
