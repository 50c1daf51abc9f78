"""The old 3-block CNN: conv 64/128/256 with BN, max-pool and dropout, then FC 4096 -> 1024 -> 7."""

from __future__ import annotations

from torch import nn

from fer.classes import NUM_CLASSES
from fer.models.base import FERClassifier
from fer.models.layers import flat_width, linear_bn_relu, vgg_blocks
from fer.models.registry import register_model


@register_model("cnn")
class CNN(FERClassifier):
    def __init__(self, channels: tuple[int, ...] = (64, 128, 256), fc: tuple[int, ...] = (4096, 1024),
                 conv_dropout: float = 0.25, fc_dropout: float = 0.5, **kwargs):
        self.channels, self.fc = tuple(channels), tuple(fc)
        self.conv_dropout, self.fc_dropout = conv_dropout, fc_dropout
        super().__init__(**kwargs)

    def build_net(self) -> nn.Module:
        layers = vgg_blocks(self.channels, 1, lambda: nn.Dropout(self.conv_dropout))
        layers.append(nn.Flatten())
        width = flat_width(self.channels, self.net_input_size)
        for h in self.fc:
            layers += linear_bn_relu(width, h, self.fc_dropout)
            width = h
        layers.append(nn.Linear(width, NUM_CLASSES))
        return nn.Sequential(*layers)
