"""The PatchGAN discriminator (pix2pix, CycleGAN): a fully convolutional net whose every
output judges one overlapping patch, so it models texture and leaves layout to L1/cycle."""

from __future__ import annotations

from torch import nn

from gancli.errors import GancliError
from gancli.nets.unet import norm2d


def patchgan(cin: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> nn.Sequential:
    """`n_layers` 4x4 stride-2 convs, then two 4x4 stride-1 convs (n_layers=3: 70x70)."""
    layers: list[nn.Module] = [nn.Conv2d(cin, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
    width = ndf
    for k in range(1, n_layers + 1):
        stride = 2 if k < n_layers else 1
        nxt = ndf * min(2**k, 8)
        layers += [nn.Conv2d(width, nxt, 4, stride, 1, bias=False), norm2d(nxt, norm),
                   nn.LeakyReLU(0.2)]
        width = nxt
    layers.append(nn.Conv2d(width, 1, 4, 1, 1))
    return nn.Sequential(*layers)


def convs(net: nn.Module) -> list[nn.Conv2d]:
    return [m for m in net.modules() if isinstance(m, nn.Conv2d)]


def receptive_field(net: nn.Module) -> int:
    """Input pixels one output sees, from the net's own convs: each adds (k-1) x jump."""
    field, jump = 1, 1
    for conv in convs(net):
        field += (conv.kernel_size[0] - 1) * jump
        jump *= conv.stride[0]
    return field


def output_size(net: nn.Module, image_size: int) -> int:
    """Side of the output grid (patches per row) for a square input; <= 0: input too small."""
    size = image_size
    for conv in convs(net):
        size = (size + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
    return size


def check_size(net: nn.Module, image_size: int, n_layers: int) -> None:
    if output_size(net, image_size) < 1:
        smallest = next(s for s in range(8, 4096, 8) if output_size(net, s) >= 1)
        raise GancliError(f"--disc-layers {n_layers} needs --image-size >= {smallest} "
                          f"(got {image_size}); use fewer layers or larger images")
