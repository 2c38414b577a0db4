"""Adversarial losses on raw D outputs (logits), shared by every adversarial recipe."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("bce", "lsgan", "hinge")


def d_loss(real: torch.Tensor, fake: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """Discriminator loss: push real outputs up and fake outputs down."""
    if kind == "bce":
        return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    if kind == "lsgan":  # Mao et al. 2017: least squares towards 1 (real) and 0 (fake)
        return 0.5 * (F.mse_loss(real, torch.ones_like(real))
                      + F.mse_loss(fake, torch.zeros_like(fake)))
    if kind == "hinge":  # Lim & Ye 2017, as in SAGAN/BigGAN
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    raise ValueError(f"unknown loss {kind}")


def g_loss(fake: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """Generator loss: the non-saturating form for bce, the usual targets for the others."""
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
    if kind == "lsgan":
        return 0.5 * F.mse_loss(fake, torch.ones_like(fake))
    if kind == "hinge":
        return -fake.mean()
    raise ValueError(f"unknown loss {kind}")
