"""The noise-predicting U-Net of DDPM (Ho et al. 2020), small enough to train on a CPU.

Levels of `width` x (1, 2, 2) channels at full, 1/2 and 1/4 resolution (28 -> 14 -> 7 on
MNIST), `blocks` residual blocks per level, each told the step through a sinusoidal time
embedding (plus a class embedding when conditional), and optional self-attention at the
lowest resolution, where it is cheap and sees the whole image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gancli.errors import GancliError

MULTS = (1, 2, 2)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style sin/cos features of the step, geometric frequencies 1 .. 1/10000;
    (N, dim) for any dim: an odd one ends in a zero column."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device) / max(half, 1))
    angles = t.float()[:, None] * freqs[None]
    features = [angles.sin(), angles.cos()]
    if dim % 2:
        features.append(torch.zeros(len(t), 1, device=t.device))
    return torch.cat(features, dim=1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the time embedding added in between, plus a skip."""

    def __init__(self, cin: int, cout: int, emb: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2, self.conv2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Single-head self-attention over all pixels, with a residual connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=2)
        # as one head of (n, heads, pixels, c): ONNX's attention takes 4-d inputs only
        y = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.out(y.transpose(1, 2).reshape(n, c, h, w))


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv (no checkerboard artifacts)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """Residual blocks at one resolution, each followed by attention if asked."""

    def __init__(self, cins: list[int], cout: int, emb: int, attention: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(cin, cout, emb) for cin in cins)
        self.attn = nn.ModuleList(Attention(cout) if attention else nn.Identity() for _ in cins)


class UNet(nn.Module):
    """eps_theta(x_t, t[, y]): predicts the noise in x_t. Class index `num_classes` means
    "no class" (the unconditional model classifier-free guidance needs)."""

    def __init__(self, channels: int, width: int = 32, blocks: int = 1,
                 attention: bool = True, num_classes: int = 0) -> None:
        super().__init__()
        emb = 4 * width
        self.width, self.num_classes = width, num_classes
        self.time = nn.Sequential(nn.Linear(width, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label = nn.Embedding(num_classes + 1, emb) if num_classes else None
        chans = [width * m for m in MULTS]
        self.conv_in = nn.Conv2d(channels, width, 3, padding=1)
        last = len(chans) - 1
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        cin = width
        for i, c in enumerate(chans):
            self.down.append(Level([cin] + [c] * (blocks - 1), c, emb, attention and i == last))
            self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if i < last
                                   else nn.Identity())
            cin = c
        self.mid = Level([cin, cin], cin, emb, attention)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(chans))):
            c = chans[i]
            # each block also takes the matching down block's output (skip connection)
            self.up.append(Level([cin + c] + [2 * c] * (blocks - 1), c, emb,
                                 attention and i == last))
            self.upsample.append(Upsample(c) if i > 0 else nn.Identity())
            cin = c
        self.norm_out = _norm(width)
        self.conv_out = nn.Conv2d(width, channels, 3, padding=1)
        # zero output: the untrained model predicts no noise, a calm start for the MSE
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time(timestep_embedding(t, self.width))
        if self.label is not None:
            if y is None:
                y = torch.full((len(x),), self.num_classes, dtype=torch.long, device=x.device)
            emb = emb + self.label(y)
        h = self.conv_in(x)
        skips = []
        for level, down in zip(self.down, self.downsample, strict=True):
            for block, attn in zip(level.blocks, level.attn, strict=True):
                h = attn(block(h, emb))
                skips.append(h)
            h = down(h)
        for block, attn in zip(self.mid.blocks, self.mid.attn, strict=True):
            h = attn(block(h, emb))
        for level, up in zip(self.up, self.upsample, strict=True):
            for block, attn in zip(level.blocks, level.attn, strict=True):
                h = attn(block(torch.cat([h, skips.pop()], dim=1), emb))
            h = up(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def build(cfg: dict, info: dict) -> dict[str, nn.Module]:
    """{"unet": UNet}; the size must halve cleanly down to the lowest level."""
    size, factor = cfg["image_size"], 2 ** (len(MULTS) - 1)
    if size % factor:
        raise GancliError(f"ddpm needs --image-size divisible by {factor}, not {size}")
    if cfg["conditional"] and not info.get("num_classes"):
        raise GancliError(f"--conditional needs a labelled dataset; {cfg['dataset']} has "
                          "no classes")
    return {"unet": UNet(info["channels"], cfg["width"], cfg["blocks"], cfg["attention"],
                         info["num_classes"] if cfg["conditional"] else 0)}
