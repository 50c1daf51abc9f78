"""The old project's chosen VGG-style net: 2x32, 2x64, 2x128, 2x256 3x3 convs with BN, 4 max-pools,
FC 2304 with dropout -> 7 (about 6.5M parameters)."""

from __future__ import annotations

from torch import nn

from fer.classes import IMAGE_SIZE, NUM_CLASSES
from fer.models.layers import flat_width, linear_bn_relu, vgg_blocks
from fer.models.registry import register_model


@register_model("cnn_deep")
class CNNDeep(nn.Sequential):
    def __init__(self, channels: tuple[int, ...] = (32, 64, 128, 256), convs_per_block: int = 2, fc: int = 2304,
                 conv_dropout: float = 0.0, fc_dropout: float = 0.5, image_size: int = IMAGE_SIZE):
        dropout = (lambda: nn.Dropout2d(conv_dropout)) if conv_dropout else None
        layers = vgg_blocks(channels, convs_per_block, dropout)
        layers += [nn.Flatten(), nn.Dropout(fc_dropout),
                   *linear_bn_relu(flat_width(channels, image_size), fc, fc_dropout), nn.Linear(fc, NUM_CLASSES)]
        super().__init__(*layers)
