"""Building blocks shared by the convolutional models."""

from __future__ import annotations

from torch import nn


def conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    # no conv bias: BN's shift makes it redundant
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
