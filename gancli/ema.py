"""Exponential moving average of a network's weights, used for sampling and metrics."""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema(net: nn.Module) -> nn.Module:
    """A frozen copy of `net` that `ema_update` moves towards `net` after every step."""
    ema = copy.deepcopy(net)
    ema.requires_grad_(False)
    ema.eval()
    return ema


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * net for parameters; buffers (BN stats) are copied."""
    for e, p in zip(ema.parameters(), net.parameters(), strict=True):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema.buffers(), net.buffers(), strict=True):
        e.copy_(b)
