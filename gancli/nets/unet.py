"""The pix2pix U-Net (Isola et al. 2017): an encoder-decoder whose mirror blocks are joined
by skip connections, so low-level detail (edges, layout) goes straight to the output."""

from __future__ import annotations

import torch
from torch import nn

from gancli.errors import GancliError

DROPOUT_BLOCKS = 3  # the paper's CD512 blocks: the innermost decoder blocks get dropout


def norm2d(channels: int, kind: str) -> nn.Module:
    """BatchNorm, or InstanceNorm (what BatchNorm is at the paper's batch size of 1)."""
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.InstanceNorm2d(channels,
                                                                              affine=True)


def depth_for(image_size: int) -> int:
    """Downsamplings down to a 1x1 bottleneck: 256 -> 8, 128 -> 7, 64 -> 6."""
    depth = image_size.bit_length() - 1
    if image_size != 2**depth or depth < 3:
        raise GancliError(f"image size {image_size} is not supported by the U-Net: use a power "
                          "of two >= 8 (e.g. 32, 64, 128, 256)")
    return depth


class UNet(nn.Module):
    """(N, cin, S, S) -> (N, cout, S, S) in [-1, 1]; log2(S) encoder and decoder blocks.

    Encoder block k: [LeakyReLU(0.2)] -> 4x4 stride-2 conv -> [norm] (halves the size).
    Decoder block k: ReLU -> 4x4 stride-2 transposed conv -> norm [-> dropout], then its
    output is concatenated with the encoder output of the same size (the skip).
    """

    def __init__(self, cin: int, cout: int, image_size: int, ngf: int = 64,
                 norm: str = "batch", dropout: float = 0.5) -> None:
        super().__init__()
        depth = depth_for(image_size)
        widths = [ngf * min(2**i, 8) for i in range(depth)]  # 64 128 256 512 512 ...
        self.encoder = nn.ModuleList([nn.Conv2d(cin, widths[0], 4, 2, 1)])
        for k in range(1, depth):
            innermost = k == depth - 1  # a 1x1 map has nothing to normalise
            layers = [nn.LeakyReLU(0.2), nn.Conv2d(widths[k - 1], widths[k], 4, 2, 1,
                                                   bias=innermost)]
            self.encoder.append(nn.Sequential(*layers, *([] if innermost
                                                         else [norm2d(widths[k], norm)])))
        self.decoder = nn.ModuleList()
        for k in range(depth - 1):
            cin_k = widths[-1] if k == 0 else 2 * widths[depth - 1 - k]
            width = widths[depth - 2 - k]
            layers = [nn.ReLU(), nn.ConvTranspose2d(cin_k, width, 4, 2, 1, bias=False),
                      norm2d(width, norm)]
            if dropout and k < DROPOUT_BLOCKS:
                layers.append(nn.Dropout(dropout))
            self.decoder.append(nn.Sequential(*layers))
        self.decoder.append(nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2 * widths[0], cout,
                                                                         4, 2, 1), nn.Tanh()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        skips.pop()  # the bottleneck feeds dec1 directly
        for block in self.decoder:
            x = block(x)
            if skips:
                x = torch.cat([x, skips.pop()], dim=1)
        return x


def block_shapes(net: UNet, x: torch.Tensor) -> list[tuple[str, tuple[int, ...], str]]:
    """(block, output shape (C, H, W), what joins it) for every block, in call order, so
    `inspect` can answer "what is the shape after block k" for a given input size."""
    names = [f"enc{k}" for k in range(1, len(net.encoder) + 1)]
    names += [f"dec{k}" for k in range(1, len(net.decoder) + 1)]
    shapes: list[tuple[int, ...]] = []
    hooks = [block.register_forward_hook(lambda m, a, out: shapes.append(tuple(out.shape[1:])))
             for block in [*net.encoder, *net.decoder]]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    depth = len(net.encoder)
    enc, dec = shapes[:depth], shapes[depth:]
    joins = [""] * depth
    for k, shape in enumerate(dec[:-1], 1):  # dec k meets the encoder output of its size
        skip = enc[depth - 1 - k]
        joins.append(f"+ enc{depth - k} -> {(shape[0] + skip[0], *shape[1:])}")
    joins.append("tanh")
    return list(zip(names, shapes, joins, strict=True))
