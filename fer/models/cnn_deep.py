"""The old project's chosen VGG-style net: 2x32, 2x64, 2x128, 2x256 3x3 convs with BN, 4 max-pools,
FC 2304 with dropout -> 7 (about 6.5M parameters)."""

from __future__ import annotations

from torch import nn

from fer.classes import NUM_CLASSES
from fer.models.base import FERClassifier
from fer.models.layers import flat_width, linear_bn_relu, vgg_blocks
from fer.models.registry import register_model


@register_model("cnn_deep")
class CNNDeep(FERClassifier):
    def __init__(self, channels: tuple[int, ...] = (32, 64, 128, 256), convs_per_block: int = 2, fc: int = 2304,
                 conv_dropout: float = 0.0, fc_dropout: float = 0.5, **kwargs):
        self.channels, self.convs_per_block, self.fc = tuple(channels), convs_per_block, fc
        self.conv_dropout, self.fc_dropout = conv_dropout, fc_dropout
        super().__init__(**kwargs)

    def build_net(self) -> nn.Module:
        dropout = (lambda: nn.Dropout2d(self.conv_dropout)) if self.conv_dropout else None
        layers = vgg_blocks(self.channels, self.convs_per_block, dropout)
        layers += [nn.Flatten(), nn.Dropout(self.fc_dropout),
                   *linear_bn_relu(flat_width(self.channels, self.net_input_size), self.fc, self.fc_dropout),
                   nn.Linear(self.fc, NUM_CLASSES)]
        return nn.Sequential(*layers)
