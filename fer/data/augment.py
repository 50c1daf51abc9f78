"""Whole-batch training augmentation on the device: every op draws per-sample parameters.

Two implementations of the same distribution (tests/test_augment.py compares them):
  fused (default)  one affine grid_sample does the shift, flip, rotation and scale of the whole batch; colour and
                   erasing are a few elementwise ops; no host synchronisation, so on a GPU it is a handful of
                   kernels per batch
  kornia           RandomShiftFlip, then kornia's RandomAffine, ColorJiggle and RandomErasing, op by op
"""

from __future__ import annotations

import math

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from torch import nn

from fer.data.capture import CaptureDegradation

IMPLEMENTATIONS = ("fused", "kornia")
_ERASING_RATIO = (0.3, 3.3)  # aspect ratios of erased rectangles (kornia's default)


def build_augmentation(shift: int = 4, flip: bool = True, degrees: float = 10.0,
                       scale: tuple[float, float] | None = (0.9, 1.1), affine_p: float = 0.5,
                       brightness: float = 0.2, contrast: float = 0.2, color_p: float = 0.5,
                       erasing_p: float = 0.25, erasing_scale: tuple[float, float] = (0.02, 0.15),
                       implementation: str = "fused", capture_p: float = 0.0, capture_min_side: int = 20,
                       capture_blur: float = 1.0, capture_noise: float = 0.03,
                       capture_light: float = 0.3) -> nn.Module:
    """Random shift (reflect-padded crop, integer px), flip, rotation/scale (with probability affine_p),
    brightness/contrast (with probability color_p, in random order), erasing; then, with probability capture_p,
    a camera's degradations (fer.data.capture: fewer pixels, blur, uneven light, noise). 0 / False / None turns a
    step off. Input and output: float [B,1,H,W] in [0,1]."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"data.augment.implementation must be one of {', '.join(IMPLEMENTATIONS)}, "
                         f"got {implementation!r}")
    base = _base_augmentation(shift, flip, degrees, scale, affine_p, brightness, contrast, color_p, erasing_p,
                              erasing_scale, implementation)
    if not capture_p:
        return base
    return nn.Sequential(base, CaptureDegradation(capture_p, capture_min_side, capture_blur, capture_noise,
                                                  capture_light))


def _base_augmentation(shift, flip, degrees, scale, affine_p, brightness, contrast, color_p, erasing_p, erasing_scale,
                       implementation) -> nn.Module:
    if implementation == "fused":
        return FusedAugment(int(shift or 0), bool(flip), float(degrees or 0), tuple(scale) if scale else None,
                            float(affine_p or 0), float(brightness or 0), float(contrast or 0), float(color_p or 0),
                            float(erasing_p or 0), tuple(erasing_scale))
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
        return shift_flip(x, self.shift, self.flip)


def shift_flip(x: torch.Tensor, shift: int, flip: bool) -> torch.Tensor:
    """RandomShiftFlip's work: one indexing copy for the shifts, then the mirrors."""
    b, c, h, w = x.shape
    s = shift
    padded = F.pad(x, (s, s, s, s), mode="reflect") if s else x
    # every (dy, dx) crop of the padded batch as a view [B,C,2s+1,2s+1,H,W]; one indexing copies B crops
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)
    offsets = torch.randint(0, 2 * s + 1, (2, b), device=x.device)
    out = windows[torch.arange(b, device=x.device), :, offsets[0], offsets[1]]
    if flip:
        out = mirror(out, torch.rand(b, device=x.device) < 0.5, in_place=x.device.type == "cpu")
    return out


def mirror(x: torch.Tensor, chosen: torch.Tensor, in_place: bool) -> torch.Tensor:
    """x with the images where `chosen` [B] is true mirrored. In place: flips only those (the cheapest on a CPU);
    otherwise a select, since boolean indexing makes the host wait for a GPU (the result's size is data)."""
    if in_place:
        x[chosen] = x[chosen].flip(-1)
        return x
    return torch.where(chosen.view(-1, 1, 1, 1), x.flip(-1), x)


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


class FusedAugment(nn.Module):
    """The default augmentation in a few whole-batch kernels and no host synchronisation.

    Geometry: the output pixel at normalised position u samples the input at flip(M^-1 u) + t, i.e. the image
    shifted by t (integer pixels, up to `shift` each way), mirrored, then rotated/scaled about its centre by M
    (with probability affine_p): the composition RandomShiftFlip -> RandomAffine applies, as one affine_grid +
    grid_sample with reflection at the borders. Colour: brightness (x + b - 1) and contrast (x * c) in random
    order, each result clipped to [0,1], as kornia's ColorJiggle does on one channel. Erasing: a rectangle of
    random area and aspect ratio set to 0, as kornia's RandomErasing."""

    def __init__(self, shift: int = 4, flip: bool = True, degrees: float = 10.0,
                 scale: tuple[float, float] | None = (0.9, 1.1), affine_p: float = 0.5, brightness: float = 0.2,
                 contrast: float = 0.2, color_p: float = 0.5, erasing_p: float = 0.25,
                 erasing_scale: tuple[float, float] = (0.02, 0.15)):
        super().__init__()
        self.shift, self.flip, self.degrees, self.scale, self.affine_p = shift, flip, degrees, scale, affine_p
        self.brightness, self.contrast, self.color_p = brightness, contrast, color_p
        self.erasing_p, self.erasing_scale = erasing_p, erasing_scale

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        if self.shift or self.flip or (self.affine_p and (self.degrees or self.scale)):
            x = self._geometry(x)
        if self.color_p and (self.brightness or self.contrast):
            x = self._colour(x)
        if self.erasing_p:
            x = self._erase(x)
        return x

    def _geometry(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.affine_p and (self.degrees or self.scale)):
            # integer shifts and mirrors only: an indexing copy, ~10x cheaper than resampling on a CPU
            return shift_flip(x, self.shift, self.flip)
        b, _, h, w = x.shape
        dev = x.device
        u = torch.rand(b, 4, device=dev)  # flip, affine on/off, angle, scale
        affine = u[:, 1] < self.affine_p
        angle = torch.where(affine, (2 * u[:, 2] - 1) * math.radians(self.degrees), torch.zeros_like(u[:, 2]))
        lo, hi = self.scale or (1.0, 1.0)
        zoom = torch.where(affine, lo + (hi - lo) * u[:, 3], torch.ones_like(u[:, 3]))
        mirror = torch.where(u[:, 0] < 0.5, -1.0, 1.0) if self.flip else torch.ones(b, device=dev)
        t = torch.randint(-self.shift, self.shift + 1, (2, b), device=dev).to(x.dtype) if self.shift \
            else torch.zeros(2, b, device=dev)
        return warp(x, affine_theta(angle, zoom, mirror, t, h, w))

    def _colour(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        u = torch.rand(b, 4, device=x.device)  # on/off, brightness, contrast, order
        on = (u[:, 0] < self.color_p).view(b, 1, 1, 1)
        add = ((2 * u[:, 1] - 1) * self.brightness).view(b, 1, 1, 1)
        mul = (1 + (2 * u[:, 2] - 1) * self.contrast).view(b, 1, 1, 1)
        brightness_first = (u[:, 3] < 0.5).view(b, 1, 1, 1)
        a = ((x + add).clamp(0, 1) * mul).clamp(0, 1)
        c = ((x * mul).clamp(0, 1) + add).clamp(0, 1)
        return torch.where(on, torch.where(brightness_first, a, c), x)

    def _erase(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        u = torch.rand(b, 6, device=x.device)  # on/off, area, ratio side, ratio, x, y
        lo, hi = self.erasing_scale
        area = (lo + (hi - lo) * u[:, 1]) * (h * w)
        r0, r1 = _ERASING_RATIO
        ratio = torch.where(u[:, 2] < 0.5, r0 + (1 - r0) * u[:, 3], 1 + (r1 - 1) * u[:, 3])
        eh = torch.sqrt(area * ratio).round().clamp(1, h)
        ew = torch.sqrt(area / ratio).round().clamp(1, w)
        y0 = (u[:, 5] * (h - eh + 1)).floor()
        x0 = (u[:, 4] * (w - ew + 1)).floor()
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        inside = (rows >= y0.view(b, 1, 1)) & (rows < (y0 + eh).view(b, 1, 1)) \
            & (cols >= x0.view(b, 1, 1)) & (cols < (x0 + ew).view(b, 1, 1))
        erase = (inside & (u[:, 0] < self.erasing_p).view(b, 1, 1)).unsqueeze(1)
        return x.masked_fill(erase, 0.0)


def affine_theta(angle: torch.Tensor, zoom: torch.Tensor, mirror: torch.Tensor, shift: torch.Tensor, h: int,
                 w: int) -> torch.Tensor:
    """[B,2,3] grid_sample matrices (output -> input, normalised coordinates) for: a shift by `shift` [2,B] pixels
    (x, y), a mirror (-1) or not (+1), then a rotation by `angle` (radians, kornia's sign) and a zoom about the
    centre."""
    cos, sin = torch.cos(angle) / zoom, -torch.sin(angle) / zoom  # the inverse of zoom * R(angle)
    return torch.stack([torch.stack([mirror * cos, mirror * sin, 2 * shift[0] / w], 1),
                        torch.stack([-sin, cos, 2 * shift[1] / h], 1)], 1)


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Bilinear resampling of [B,C,H,W] by `theta`, reflecting at the borders."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def to_unit_float(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [B,48,48] (or [B,1,48,48]) -> float32 [B,1,48,48] in [0,1]: the input every model takes."""
    x = images_u8.unsqueeze(1) if images_u8.ndim == 3 else images_u8
    return x.float().div_(255.0)
