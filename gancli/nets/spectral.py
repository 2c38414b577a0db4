"""Spectral normalisation for discriminators (Miyato et al. 2018)."""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from gancli.errors import GancliError

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.InstanceNorm2d)


def apply_spectral_norm(net: nn.Module) -> nn.Module:
    """Constrain every conv/linear layer of `net` to spectral norm ~1, in place.

    Batch and instance norm are removed (replaced by Identity): they rescale activations
    and so undo the Lipschitz bound that spectral normalisation is there to give. Instance
    norm (the PatchGAN's) would even cancel it outright, IN(W x / sigma) = IN(W x), so a
    spectrally normalised PatchGAN is the norm-free SN-PatchGAN (Yu et al. 2019).
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
