"""Transfer learning with a timm EfficientNet: ImageNet weights from a local file, 48x48 input upscaled on
the device, grayscale handled by summing the first conv's RGB kernels (timm's adapt_input_conv)."""

from __future__ import annotations

import timm
from torch import nn

from fer.classes import NUM_CLASSES
from fer.models.pretrained import load_pretrained
from fer.models.registry import register_model


@register_model("efficientnet")
class EfficientNet(nn.Sequential):
    """input_size: the side the faces are upscaled to, whatever side they come in at (`image_size`: 48, or the
    crops' side)."""

    def __init__(self, arch: str = "efficientnet_lite0", pretrained: bool = True,
                 weights: str | None = "efficientnet_lite0_imagenet", input_size: int = 96, drop_rate: float = 0.2,
                 drop_path_rate: float = 0.1, image_size: int | None = None):
        net = timm.create_model(arch, pretrained=False, num_classes=NUM_CLASSES, in_chans=1,
                                drop_rate=drop_rate, drop_path_rate=drop_path_rate)
        if pretrained and weights:
            load_pretrained(net, weights, in_chans=1)
        # upscaling inside the net: it runs on the device, and predict/export see a 48x48-input model
        super().__init__(nn.Upsample(size=(input_size, input_size), mode="bilinear", align_corners=False), net)
