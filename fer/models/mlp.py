"""The old project's 4-layer MLP on raw pixels: 2304 -> 2048 -> 1024 -> 512 -> 7."""

from __future__ import annotations

from torch import nn

from fer.classes import NUM_CLASSES
from fer.models.base import FERClassifier
from fer.models.registry import register_model


@register_model("mlp")
class MLP(FERClassifier):
    def __init__(self, hidden: tuple[int, ...] = (2048, 1024, 512), dropout: float = 0.3, batch_norm: bool = True,
                 channels_last: bool = False, **kwargs):
        self.hidden, self.dropout, self.batch_norm = tuple(hidden), dropout, batch_norm
        super().__init__(channels_last=channels_last, **kwargs)  # no convolutions: memory format is moot

    def build_net(self) -> nn.Module:
        layers: list[nn.Module] = [nn.Flatten()]
        width = self.net_input_size * self.net_input_size
        for h in self.hidden:
            layers += [nn.Linear(width, h, bias=not self.batch_norm)]
            layers += [nn.BatchNorm1d(h)] if self.batch_norm else []
            layers += [nn.ReLU(inplace=True)]
            layers += [nn.Dropout(self.dropout)] if self.dropout else []
            width = h
        layers.append(nn.Linear(width, NUM_CLASSES))
        return nn.Sequential(*layers)
