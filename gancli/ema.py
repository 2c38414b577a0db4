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
    # one multi-tensor kernel rather than a launch per tensor (130 of them in the DDPM U-Net)
    torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in net.parameters()],
                         1.0 - decay)
    for e, b in zip(ema.buffers(), net.buffers(), strict=True):
        e.copy_(b)
