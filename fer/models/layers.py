"""Building blocks shared by the convolutional models."""

from __future__ import annotations

from typing import Callable, Sequence

from torch import nn


def conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    # no conv bias: BN's shift makes it redundant
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def vgg_blocks(channels: Sequence[int], convs_per_block: int,
               dropout: Callable[[], nn.Module] | None = None) -> list[nn.Module]:
    """VGG-style blocks on a grey image: per width in `channels`, `convs_per_block` 3x3 conv-BN-ReLU layers, then a
    2x2 max-pool (halving the side) and `dropout()` where given. The layer order is the checkpoints' key order."""
    layers: list[nn.Module] = []
    c_in = 1
    for c in channels:
        for _ in range(convs_per_block):
            layers += conv_bn_relu(c_in, c)
            c_in = c
        layers.append(nn.MaxPool2d(2))
        if dropout is not None:
            layers.append(dropout())
    return layers


def flat_width(channels: Sequence[int], side: int) -> int:
    """Features after vgg_blocks(channels) on a side x side image, flattened."""
    side //= 2 ** len(channels)
    return channels[-1] * side * side


def linear_bn_relu(width: int, out: int, dropout: float) -> list[nn.Module]:
    # no bias: BN's shift makes it redundant
    return [nn.Linear(width, out, bias=False), nn.BatchNorm1d(out), nn.ReLU(inplace=True), nn.Dropout(dropout)]
