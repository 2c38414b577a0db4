"""Spectral normalisation for discriminators (Miyato et al. 2018)."""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from gancli.errors import GancliError

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def apply_spectral_norm(net: nn.Module) -> nn.Module:
    """Constrain every conv/linear layer of `net` to spectral norm ~1, in place.

    BatchNorm is removed (replaced by Identity): it rescales activations and so undoes the
    Lipschitz bound that spectral normalisation is there to give.
    """
    layers = 0
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, NORMS):
                setattr(parent, name, nn.Identity())
            elif isinstance(child, (nn.Conv2d, nn.Linear)):
                setattr(parent, name, spectral_norm(child))
                layers += 1
    if not layers:
        raise GancliError(f"--spectral-norm: {type(net).__name__} has no conv or linear layer")
    return net
