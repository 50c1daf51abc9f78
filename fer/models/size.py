"""A model's size in one line, for the start of a training: parameters and floating-point operations per face.
It replaces Lightning's model-summary table, which lists the metric modules beside the network and, without an
example batch in the model's own input format, a FLOPs column of zeros."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from fer.classes import IMAGE_SIZE


def _human(count: float, unit: str) -> str:
    """6_500_000, "parameters" -> "6.5 M parameters"; 2.45e8, "FLOPs" -> "245.5 MFLOPs"."""
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {prefix}{unit}" if unit == "FLOPs" else f"{count / scale:.1f} {prefix} {unit}"
    return f"{count:.0f} {unit}"


def size_line(model: torch.nn.Module, net: torch.nn.Module, side: int = IMAGE_SIZE) -> str:
    """"6.5 M parameters, 0.9 GFLOPs per face" for `model`, the operations counted on `net` (the network proper)
    for one [1,1,side,side] face in eval mode (training mode restored after)."""
    params = sum(p.numel() for p in model.parameters())
    was_training = net.training
    counter = FlopCounterMode(display=False)
    try:
        net.eval()
        first = next(net.parameters(), None)
        face = torch.zeros(1, 1, side, side, device=first.device if first is not None else "cpu")
        with torch.no_grad(), counter:
            net(face)
    finally:
        net.train(was_training)
    flops = counter.get_total_flops()
    return _human(params, "parameters") + (f", {_human(flops, 'FLOPs')} per face" if flops else "")
