"""DCGAN generator and discriminator (Radford et al. 2015), for any size 4..7 * 2^k."""

from __future__ import annotations

import torch
from torch import nn

from gancli.errors import GancliError


def plan(image_size: int) -> tuple[int, int]:
    """Split `image_size` into base * 2**k with base in 4..7 and k >= 2 (28 -> 7*4, 64 -> 4*16)."""
    for k in range(2, 12):
        base, rest = divmod(image_size, 2**k)
        if rest == 0 and 4 <= base <= 7:
            return base, k
    raise GancliError(
        f"image size {image_size} is not supported: use b * 2^k with b in 4..7 and k >= 2 "
        "(e.g. 16, 28, 32, 64, 128, 256)"
    )


def init_weights(module: nn.Module) -> None:
    """DCGAN init: conv weights N(0, 0.02); norm scales N(1, 0.02), shifts 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.InstanceNorm2d)) and module.weight is not None:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def upsample2x(cin: int, cout: int, mode: str) -> nn.Module:
    """Double the resolution: a 4x4 stride-2 transposed conv, or nearest upsampling + 3x3
    conv, which avoids the transposed conv's checkerboard artifacts (Odena et al. 2016)."""
    if mode == "transposed":
        return nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                         nn.Conv2d(cin, cout, 3, 1, 1, bias=False))


def norm2d(channels: int, kind: str) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.InstanceNorm2d(channels,
                                                                              affine=True)


class Generator(nn.Module):
    """z (N, nz) -> image (N, C, S, S) in [-1, 1] through upsampling convs, norm and ReLU.

    With `num_classes`, a learned label embedding is concatenated to z (conditional DCGAN).
    """

    def __init__(self, nz: int, channels: int, image_size: int, ngf: int = 64,
                 num_classes: int = 0, upsample: str = "transposed",
                 norm: str = "batch") -> None:
        super().__init__()
        base, k = plan(image_size)
        self.nz, self.num_classes = nz, num_classes
        self.embed = nn.Embedding(num_classes, num_classes) if num_classes else None
        width = ngf * 2 ** (k - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz + num_classes, width, base, 1, 0, bias=False),
            norm2d(width, norm), nn.ReLU(True),
        ]
        for _ in range(k - 1):
            layers += [upsample2x(width, width // 2, upsample), norm2d(width // 2, norm),
                       nn.ReLU(True)]
            width //= 2
        layers += [upsample2x(width, channels, upsample), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:  # float labels: class mixtures, for walks between classes
            soft = labels.is_floating_point()
            emb = labels @ self.embed.weight if soft else self.embed(labels)
            z = torch.cat([z, emb], dim=1)
        return self.main(z[:, :, None, None])


def d_norm(channels: int, kind: str) -> nn.Module:
    """Discriminator normalisation. A WGAN-GP critic must not use BatchNorm: it couples the
    images of a batch, while the gradient penalty assumes each output depends on one image."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    return nn.Identity()


class Discriminator(nn.Module):
    """image -> `outputs` logits per image through strided convs, norm and LeakyReLU(0.2).

    With `num_classes`, one-hot label maps are appended as input channels (conditional D).
    `norm` is batch, layer or none.
    """

    def __init__(self, channels: int, image_size: int, ndf: int = 64, outputs: int = 1,
                 num_classes: int = 0, norm: str = "batch") -> None:
        super().__init__()
        base, k = plan(image_size)
        self.num_classes = num_classes
        width = ndf
        layers: list[nn.Module] = [nn.Conv2d(channels + num_classes, width, 4, 2, 1),
                                   nn.LeakyReLU(0.2, True)]
        for _ in range(k - 1):
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=norm == "none"),
                       d_norm(width * 2, norm), nn.LeakyReLU(0.2, True)]
            width *= 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, outputs, base, 1, 0)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            maps = nn.functional.one_hot(labels, self.num_classes).to(x.dtype)
            x = torch.cat([x, maps[:, :, None, None].expand(-1, -1, *x.shape[2:])], dim=1)
        return self.head(self.features(x)).flatten(1)


def num_classes(cfg: dict, info: dict) -> int:
    """The dataset's class count, which a conditional model cannot do without."""
    if not info["num_classes"]:
        raise GancliError(f"{cfg['model']} is conditional and needs a labelled dataset "
                          "(mnist, fashion-mnist, cifar10 or a folder with one sub-folder "
                          f"per class); {info['dataset']} has no labels")
    return info["num_classes"]


def _pair(cfg: dict, info: dict, g_classes: int = 0, d_classes: int = 0, outputs: int = 1,
          d_norm: str = "batch") -> dict[str, nn.Module]:
    g = Generator(cfg["nz"], info["channels"], cfg["image_size"], cfg["ngf"], g_classes,
                  upsample=cfg["upsample"], norm=cfg["norm"])
    d = Discriminator(info["channels"], cfg["image_size"], cfg["ndf"], outputs, d_classes,
                      norm=d_norm)
    for net in (g, d):
        net.apply(init_weights)
    return {"G": g, "D": d}


def build(cfg: dict, info: dict) -> dict[str, nn.Module]:
    """DCGAN pair for the dataset's channels and the configured image size."""
    return _pair(cfg, info)


def build_conditional(cfg: dict, info: dict) -> dict[str, nn.Module]:
    """cDCGAN: G embeds the class; D gets label maps, or with --discriminator multiclass
    sees only the image and has one output per class plus one for "generated"."""
    k = num_classes(cfg, info)
    if cfg["discriminator"] == "multiclass":
        return _pair(cfg, info, g_classes=k, outputs=k + 1)
    return _pair(cfg, info, g_classes=k, d_classes=k)


def build_acgan(cfg: dict, info: dict) -> dict[str, nn.Module]:
    """AC-GAN: G embeds the class; D sees only the image, outputs real/fake + class logits."""
    k = num_classes(cfg, info)
    return _pair(cfg, info, g_classes=k, outputs=1 + k)


def build_critic(cfg: dict, info: dict) -> dict[str, nn.Module]:
    """WGAN-GP: a DCGAN generator and a critic without BatchNorm (one score per image)."""
    return _pair(cfg, info, d_norm=cfg["critic_norm"])
