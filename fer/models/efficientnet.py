"""Transfer learning with a timm EfficientNet: ImageNet weights from a local file, 48x48 input upscaled on
the device, grayscale handled by summing the first conv's RGB kernels (timm's adapt_input_conv)."""

from __future__ import annotations

from typing import Any

import timm
from torch import nn

from fer.classes import NUM_CLASSES
from fer.models.base import FERClassifier
from fer.models.pretrained import load_pretrained
from fer.models.registry import register_model


@register_model("efficientnet")
class EfficientNet(FERClassifier):
    def __init__(self, arch: str = "efficientnet_lite0", pretrained: bool = True,
                 weights: str | None = "efficientnet_lite0_imagenet", input_size: int = 96, drop_rate: float = 0.2,
                 drop_path_rate: float = 0.1, **kwargs):
        self.arch, self.pretrained, self.weights = arch, pretrained, weights
        self.input_size, self.drop_rate, self.drop_path_rate = input_size, drop_rate, drop_path_rate
        super().__init__(**kwargs)

    def build_net(self) -> nn.Module:
        net = timm.create_model(self.arch, pretrained=False, num_classes=NUM_CLASSES, in_chans=1,
                                drop_rate=self.drop_rate, drop_path_rate=self.drop_path_rate)
        if self.pretrained and self.weights:
            load_pretrained(net, self.weights, in_chans=1)
        # upscaling inside the net: it runs on the device, and predict/export see a 48x48-input model
        return nn.Sequential(nn.Upsample(size=(self.input_size, self.input_size), mode="bilinear",
                                         align_corners=False), net)

    @classmethod
    def inference_kwargs(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        # the checkpoint holds every weight: do not read the ImageNet file again (it may not be installed)
        return {**super().inference_kwargs(hparams), "pretrained": False}
