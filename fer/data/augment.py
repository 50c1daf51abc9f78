"""Whole-batch training augmentation on the device (kornia): every op draws per-sample parameters."""

from __future__ import annotations

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import nn



def build_augmentation(shift: int = 4, flip: bool = True, degrees: float = 10.0,
                       scale: tuple[float, float] | None = (0.9, 1.1), affine_p: float = 0.5,
                       brightness: float = 0.2, contrast: float = 0.2, color_p: float = 0.5,
                       erasing_p: float = 0.25, erasing_scale: tuple[float, float] = (0.02, 0.15)) -> nn.Module:
    """Random shift (padded crop), flip, rotation/scale, brightness/contrast, erasing. 0 / False / None turns a
    step off. Input and output: float [B,1,48,48] in [0,1]."""
    ops: list[nn.Module] = []
    if shift or flip:
        ops.append(RandomShiftFlip(int(shift), bool(flip)))
    if (degrees or scale) and affine_p:
        ops.append(K.RandomAffine(degrees=float(degrees or 0), scale=tuple(scale) if scale else None, p=affine_p,
                                  padding_mode="reflection"))
    if (brightness or contrast) and color_p:
        ops.append(K.ColorJiggle(brightness=float(brightness or 0), contrast=float(contrast or 0), p=color_p))
    if erasing_p:
        ops.append(K.RandomErasing(p=erasing_p, scale=tuple(erasing_scale)))
    return BatchAugment(ops)


class RandomShiftFlip(nn.Module):
    """Per-sample random shift (reflect-padded crop, up to `shift` px each way) and horizontal flip with one
    indexing copy over the batch (airbench-style). The most frequent augmentation is also the cheapest: a kornia
    RandomCrop + RandomHorizontalFlip costs about 5x more per batch on CPU."""

    def __init__(self, shift: int = 4, flip: bool = True):
        super().__init__()
        self.shift, self.flip = shift, flip

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.shift
        padded = F.pad(x, (s, s, s, s), mode="reflect") if s else x
        # every (dy, dx) crop of the padded batch as a view [B,C,2s+1,2s+1,H,W]; one indexing copies B crops
        windows = padded.unfold(2, h, 1).unfold(3, w, 1)
        offsets = torch.randint(0, 2 * s + 1, (2, b), device=x.device)
        out = windows[torch.arange(b, device=x.device), :, offsets[0], offsets[1]]
        if self.flip:
            mirrored = torch.rand(b, device=x.device) < 0.5
            out[mirrored] = out[mirrored].flip(-1)
        return out


class BatchAugment(nn.Module):
    """Applies the ops in order to a whole batch; clamps when brightness/contrast could leave [0,1]."""

    def __init__(self, ops: list[nn.Module]):
        super().__init__()
        self.ops = nn.ModuleList(ops)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x)
        # only colour changes can leave [0,1]; skipping the clamp otherwise saves a pass over the batch
        return x.clamp_(0.0, 1.0) if self._changes_range else x

    @property
    def _changes_range(self) -> bool:
        return any(isinstance(op, K.ColorJiggle) for op in self.ops)


def to_unit_float(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [B,48,48] (or [B,1,48,48]) -> float32 [B,1,48,48] in [0,1]: the input every model takes."""
    x = images_u8.unsqueeze(1) if images_u8.ndim == 3 else images_u8
    return x.float().div_(255.0)
