"""Whole-batch training augmentation on the device (kornia): every op draws per-sample parameters."""

from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn

from fer.classes import IMAGE_SIZE


def build_augmentation(shift: int = 4, flip: bool = True, degrees: float = 10.0,
                       scale: tuple[float, float] | None = (0.9, 1.1), affine_p: float = 0.5,
                       brightness: float = 0.2, contrast: float = 0.2, color_p: float = 0.5,
                       erasing_p: float = 0.25, erasing_scale: tuple[float, float] = (0.02, 0.15)) -> nn.Module:
    """Random shift (padded crop), flip, rotation/scale, brightness/contrast, erasing. 0 / False / None turns a
    step off. Input and output: float [B,1,48,48] in [0,1]."""
    ops: list[nn.Module] = []
    if shift:
        # reflect padding keeps face statistics at the border instead of black bars
        ops.append(K.RandomCrop((IMAGE_SIZE, IMAGE_SIZE), padding=int(shift), padding_mode="reflect", p=1.0))
    if flip:
        ops.append(K.RandomHorizontalFlip(p=0.5))  # expressions are left-right symmetric
    if (degrees or scale) and affine_p:
        ops.append(K.RandomAffine(degrees=float(degrees or 0), scale=tuple(scale) if scale else None, p=affine_p,
                                  padding_mode="reflection"))
    if (brightness or contrast) and color_p:
        ops.append(K.ColorJiggle(brightness=float(brightness or 0), contrast=float(contrast or 0), p=color_p))
    if erasing_p:
        ops.append(K.RandomErasing(p=erasing_p, scale=tuple(erasing_scale)))
    return BatchAugment(ops)


class BatchAugment(nn.Module):
    """Applies the ops in order to a whole batch; clamps so brightness/contrast cannot leave [0,1]."""

    def __init__(self, ops: list[nn.Module]):
        super().__init__()
        self.ops = nn.ModuleList(ops)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x)
        return x.clamp_(0.0, 1.0)


def to_unit_float(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [B,48,48] (or [B,1,48,48]) -> float32 [B,1,48,48] in [0,1]: the input every model takes."""
    x = images_u8.unsqueeze(1) if images_u8.ndim == 3 else images_u8
    return x.float().div_(255.0)
