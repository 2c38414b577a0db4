"""Network builders of the image-to-image models (pix2pix, CycleGAN) from config and data."""

from __future__ import annotations

from torch import nn

from gancli.nets import dcgan
from gancli.nets.patchgan import check_size, patchgan
from gancli.nets.resnet import ResnetGenerator
from gancli.nets.unet import UNet


def build_pix2pix(cfg: dict, info: dict) -> dict[str, nn.Module]:
    """U-Net G: input -> output; PatchGAN D on (input, output) stacked along channels."""
    c, size = info["channels"], cfg["image_size"]
    g = UNet(c, c, size, cfg["ngf"], cfg["norm"], cfg["dropout"])
    d = patchgan(2 * c, cfg["ndf"], cfg["disc_layers"], cfg["norm"])
    check_size(d, size, cfg["disc_layers"])
    for net in (g, d):
        net.apply(dcgan.init_weights)
    return {"G": g, "D": d}


def build_cyclegan(cfg: dict, info: dict) -> dict[str, nn.Module]:
    """G_AB, G_BA (ResNet or U-Net) and D_A, D_B (PatchGAN or whole-image DCGAN-style).

    D_A judges domain A (real A vs G_BA(B)), D_B domain B.
    """
    c, size = info["channels"], cfg["image_size"]
    nets: dict[str, nn.Module] = {}
    for name in ("G_AB", "G_BA"):
        nets[name] = (ResnetGenerator(c, c, size, cfg["ngf"], cfg["blocks"], cfg["norm"])
                      if cfg["gen"] == "resnet" else UNet(c, c, size, cfg["ngf"], cfg["norm"],
                                                           dropout=0.0))
    for name in ("D_A", "D_B"):
        if cfg["disc"] == "patch":
            nets[name] = patchgan(c, cfg["ndf"], cfg["disc_layers"], cfg["norm"])
            check_size(nets[name], size, cfg["disc_layers"])
        else:
            nets[name] = dcgan.Discriminator(c, size, cfg["ndf"])
    for net in nets.values():
        net.apply(dcgan.init_weights)
    return nets
