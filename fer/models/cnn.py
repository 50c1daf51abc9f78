"""The old 3-block CNN: conv 64/128/256 with BN, max-pool and dropout, then FC 4096 -> 1024 -> 7."""

from __future__ import annotations

from torch import nn

from fer.classes import NUM_CLASSES
from fer.models.base import FERClassifier
from fer.models.layers import conv_bn_relu
from fer.models.registry import register_model


@register_model("cnn")
class CNN(FERClassifier):
    def __init__(self, channels: tuple[int, ...] = (64, 128, 256), fc: tuple[int, ...] = (4096, 1024),
                 conv_dropout: float = 0.25, fc_dropout: float = 0.5, **kwargs):
        self.channels, self.fc = tuple(channels), tuple(fc)
        self.conv_dropout, self.fc_dropout = conv_dropout, fc_dropout
        super().__init__(**kwargs)

    def build_net(self) -> nn.Module:
        layers: list[nn.Module] = []
        c_in, size = 1, self.net_input_size
        for c in self.channels:
            layers += conv_bn_relu(c_in, c) + [nn.MaxPool2d(2), nn.Dropout(self.conv_dropout)]
            c_in, size = c, size // 2
        layers.append(nn.Flatten())
        width = c_in * size * size
        for h in self.fc:
            layers += [nn.Linear(width, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(inplace=True),
                       nn.Dropout(self.fc_dropout)]
            width = h
        layers.append(nn.Linear(width, NUM_CLASSES))
        return nn.Sequential(*layers)
