"""A timm ResNet trained from scratch on the faces, with the small-image stem FER and CIFAR ResNets use: the first
conv at stride 1 (3x3) and no max-pool. ImageNet's stem (7x7 stride 2, then a max-pool) would shrink a 48x48 face
to 12x12 before the first block and leave 2x2 for the last; this one leaves 6x6 (5x5 on 40x40 crops).
ResNet-18 as in WuJie1010/Facial-Expression-Recognition.Pytorch: 11.2M parameters, 1.25 GMAC per 48x48 face
(0.87 per 40x40 crop; cnn_deep_gpu: 0.33)."""

from __future__ import annotations

import timm
from timm.models.resnet import ResNet as TimmResNet
from torch import nn

from fer.classes import NUM_CLASSES
from fer.models.registry import register_model


@register_model("resnet")
def small_stem_resnet(arch: str = "resnet18", drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                      image_size: int | None = None) -> TimmResNet:
    """timm's `arch` with the small-image stem (any input side: the network ends in global pooling)."""
    net = timm.create_model(arch, pretrained=False, num_classes=NUM_CLASSES, in_chans=1,
                            drop_rate=drop_rate, drop_path_rate=drop_path_rate)
    if not isinstance(net, TimmResNet):
        raise ValueError(f"model.net.arch={arch!r} is not a timm ResNet (resnet18, resnet34, resnet18d...); "
                         "other timm models: model=efficientnet model.net.arch=... model.net.pretrained=false")
    if isinstance(net.conv1, nn.Conv2d):  # the plain stem: one 7x7 stride-2 conv -> 3x3 stride 1
        net.conv1 = nn.Conv2d(1, net.conv1.out_channels, 3, stride=1, padding=1, bias=False)
    else:  # the deep stems ("d", "t" variants): three 3x3 convs, the first at stride 2 -> all at stride 1
        for conv in net.conv1.modules():
            if isinstance(conv, nn.Conv2d):
                conv.stride = (1, 1)
    net.maxpool = nn.Identity()
    return net
