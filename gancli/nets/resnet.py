"""The CycleGAN ResNet generator (Johnson et al. 2016): downsample twice, residual blocks
at 1/4 size, upsample twice. Residual blocks change style while keeping the layout."""

from __future__ import annotations

import torch
from torch import nn

from gancli.errors import GancliError
from gancli.nets.unet import norm2d


class ResBlock(nn.Module):
    """x + (pad, 3x3 conv, norm, ReLU, pad, 3x3 conv, norm)(x); reflection padding avoids
    dark borders."""

    def __init__(self, width: int, norm: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3, bias=False), norm2d(width, norm),
            nn.ReLU(), nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3, bias=False),
            norm2d(width, norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """(N, cin, S, S) -> (N, cout, S, S) in [-1, 1]; S must be a multiple of 4."""

    def __init__(self, cin: int, cout: int, image_size: int, ngf: int = 64, blocks: int = 9,
                 norm: str = "instance") -> None:
        super().__init__()
        if image_size % 4:
            raise GancliError(f"image size {image_size} is not supported by the ResNet "
                              "generator: use a multiple of 4")
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(cin, ngf, 7, bias=False),
                                   norm2d(ngf, norm), nn.ReLU()]
        for k in range(2):
            w = ngf * 2**k
            layers += [nn.Conv2d(w, 2 * w, 3, 2, 1, bias=False), norm2d(2 * w, norm), nn.ReLU()]
        layers += [ResBlock(4 * ngf, norm) for _ in range(blocks)]
        for k in range(2):
            w = ngf * 4 // 2**k
            layers += [nn.ConvTranspose2d(w, w // 2, 3, 2, 1, output_padding=1, bias=False),
                       norm2d(w // 2, norm), nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, cout, 7), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)
