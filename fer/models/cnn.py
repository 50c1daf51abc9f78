"""The old 3-block CNN: conv 64/128/256 with BN, max-pool and dropout, then FC 4096 -> 1024 -> 7."""

from __future__ import annotations

from torch import nn

from fer.classes import IMAGE_SIZE, NUM_CLASSES
from fer.models.layers import flat_width, linear_bn_relu, vgg_blocks
from fer.models.registry import register_model


@register_model("cnn")
class CNN(nn.Sequential):
    def __init__(self, channels: tuple[int, ...] = (64, 128, 256), fc: tuple[int, ...] = (4096, 1024),
                 conv_dropout: float = 0.25, fc_dropout: float = 0.5, image_size: int = IMAGE_SIZE):
        layers = vgg_blocks(channels, 1, lambda: nn.Dropout(conv_dropout))
        layers.append(nn.Flatten())
        width = flat_width(channels, image_size)
        for h in fc:
            layers += linear_bn_relu(width, h, fc_dropout)
            width = h
        layers.append(nn.Linear(width, NUM_CLASSES))
        super().__init__(*layers)
