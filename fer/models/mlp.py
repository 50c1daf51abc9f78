"""The old project's 4-layer MLP on raw pixels: 2304 -> 2048 -> 1024 -> 512 -> 7."""

from __future__ import annotations

from torch import nn

from fer.classes import IMAGE_SIZE, NUM_CLASSES
from fer.models.registry import register_model


@register_model("mlp")
class MLP(nn.Sequential):
    def __init__(self, hidden: tuple[int, ...] = (2048, 1024, 512), dropout: float = 0.3, batch_norm: bool = True,
                 image_size: int = IMAGE_SIZE):
        layers: list[nn.Module] = [nn.Flatten()]
        width = image_size * image_size
        for h in hidden:
            layers += [nn.Linear(width, h, bias=not batch_norm)]
            layers += [nn.BatchNorm1d(h)] if batch_norm else []
            layers += [nn.ReLU(inplace=True)]
            layers += [nn.Dropout(dropout)] if dropout else []
            width = h
        layers.append(nn.Linear(width, NUM_CLASSES))
        super().__init__(*layers)
