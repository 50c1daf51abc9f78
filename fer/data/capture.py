"""Training augmentation for faces as a camera delivers them: fewer pixels, blur, sensor noise, light that falls
unevenly. FER2013's crops are clean 48x48 faces; a face found in a photo or a video frame is often 20-40 px across
(then enlarged to 48), soft, noisy and lit from one side. On generated scenes that add exactly these, the bundled
model lost 11 points against the same faces' clean crops even when each face was cut from its true square
(docs/BENCHMARKS.md, "Face detectors"). Whole-batch tensor ops, no host synchronisation; off unless p > 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from torch import nn


class CaptureDegradation(nn.Module):
    """Each image, with probability p: resampled through a side drawn from [min_side, 1.5 x its side] (below its
    side only; one side per batch: resizing is a whole-batch op), blurred (Gaussian, sigma in [0, blur]), lit by a
    ramp in a random direction (x (1 + g * ramp), g in [0, light], the ramp going from -1 to 1 across the face:
    up to sqrt(2) in a corner) and given Gaussian noise (std in [0, noise], on [0,1] pixels).
    Input and output: float [B,1,H,W] in [0,1]."""

    def __init__(self, p: float = 0.5, min_side: int = 20, blur: float = 1.0, noise: float = 0.03,
                 light: float = 0.3):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"data.augment.capture_p must be in [0, 1], got {p}")
        if min_side < 4:
            raise ValueError(f"data.augment.capture_min_side must be >= 4 px, got {min_side}")
        self.p, self.min_side, self.blur, self.noise, self.light = float(p), int(min_side), float(blur), \
            float(noise), float(light)
        # +-3 sigma of the strongest blur drawn: a fixed 7x7 kernel cut a sigma of 2-3 short (a box more than a
        # Gaussian); 7x7 for the default blur of 1, as before
        self.blur_kernel = 2 * math.ceil(3 * self.blur) + 1

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.p:
            return x
        b, _, h, w = x.shape
        dev = x.device
        u = torch.rand(b, 5, device=dev)  # on/off, blur sigma, light strength, light direction, noise std
        on = (u[:, 0] < self.p).view(b, 1, 1, 1)
        y = x
        # host-side draw (no wait on the device) from [min_side, 1.5 x side]: about half the batches keep every pixel,
        # as most faces in photos are at least FER2013's size
        side = int(torch.randint(self.min_side, h + h // 2 + 1, (1,)))
        if side < h:
            small = F.interpolate(y, size=(side, side * w // h), mode="area")
            y = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
        if self.blur:
            sigma = (u[:, 1] * self.blur).clamp_min(1e-3).view(b, 1).expand(b, 2)
            y = gaussian_blur2d(y, (self.blur_kernel,) * 2, sigma, border_type="replicate")
        if self.light:
            angle = u[:, 3] * 2 * torch.pi
            ys = torch.linspace(-1, 1, h, device=dev).view(1, h, 1)
            xs = torch.linspace(-1, 1, w, device=dev).view(1, 1, w)
            ramp = torch.cos(angle).view(b, 1, 1) * xs + torch.sin(angle).view(b, 1, 1) * ys
            y = y * (1 + (u[:, 2] * self.light).view(b, 1, 1) * ramp).unsqueeze(1)
        if self.noise:
            y = y + torch.randn_like(y) * (u[:, 4] * self.noise).view(b, 1, 1, 1)
        return torch.where(on, y.clamp(0.0, 1.0), x)
