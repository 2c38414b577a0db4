"""Fully connected G and D for the original GAN (Goodfellow et al. 2014) and the
conditional GAN (Mirza & Osindero 2014), where the class is a one-hot vector concatenated
to G's noise and to D's flattened image."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gancli.nets.dcgan import init_weights, num_classes


def _with_class(x: torch.Tensor, labels: torch.Tensor | None, classes: int) -> torch.Tensor:
    """Append the one-hot class; float labels are already class mixtures (label walks)."""
    if not classes:
        return x
    onehot = labels if labels.is_floating_point() else F.one_hot(labels, classes)
    return torch.cat([x, onehot.to(x.dtype)], dim=1)


class Generator(nn.Module):
    """z (N, nz) -> image (N, C, S, S) in [-1, 1]: widening Linear layers (ngf, 2, 4, 8 x
    ngf) with BatchNorm and LeakyReLU, then tanh."""

    def __init__(self, nz: int, channels: int, image_size: int, ngf: int = 128,
                 num_classes: int = 0) -> None:
        super().__init__()
        self.nz, self.num_classes = nz, num_classes
        self.shape = (channels, image_size, image_size)
        layers: list[nn.Module] = [nn.Linear(nz + num_classes, ngf), nn.LeakyReLU(0.2, True)]
        width = ngf
        for _ in range(3):
            layers += [nn.Linear(width, width * 2), nn.BatchNorm1d(width * 2),
                       nn.LeakyReLU(0.2, True)]
            width *= 2
        layers += [nn.Linear(width, channels * image_size * image_size), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        # unflatten, not view(len(z), ...): an exported graph keeps any batch size
        return self.main(_with_class(z, labels, self.num_classes)).unflatten(1, self.shape)


class Discriminator(nn.Module):
    """image -> `outputs` logits: the flattened image (plus one-hot class) through Linear
    layers of 4 and 2 x ndf units with LeakyReLU(0.2)."""

    def __init__(self, channels: int, image_size: int, ndf: int = 128, outputs: int = 1,
                 num_classes: int = 0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.main = nn.Sequential(
            nn.Linear(channels * image_size * image_size + num_classes, ndf * 4),
            nn.LeakyReLU(0.2, True),
            nn.Linear(ndf * 4, ndf * 2), nn.LeakyReLU(0.2, True),
            nn.Linear(ndf * 2, outputs),
        )

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.main(_with_class(x.flatten(1), labels, self.num_classes))


def _pair(cfg: dict, info: dict, g_classes: int = 0, d_classes: int = 0,
          outputs: int = 1) -> dict[str, nn.Module]:
    g = Generator(cfg["nz"], info["channels"], cfg["image_size"], cfg["ngf"], g_classes)
    d = Discriminator(info["channels"], cfg["image_size"], cfg["ndf"], outputs, d_classes)
    for net in (g, d):
        net.apply(init_weights)
    return {"G": g, "D": d}


def build(cfg: dict, info: dict) -> dict[str, nn.Module]:
    """Vanilla GAN: unconditional MLP pair."""
    return _pair(cfg, info)


def build_conditional(cfg: dict, info: dict) -> dict[str, nn.Module]:
    """cGAN: one-hot class into G and D, or with --discriminator multiclass a D that sees
    only the image and outputs one logit per class plus one for "generated"."""
    k = num_classes(cfg, info)
    if cfg["discriminator"] == "multiclass":
        return _pair(cfg, info, g_classes=k, outputs=k + 1)
    return _pair(cfg, info, g_classes=k, d_classes=k)
