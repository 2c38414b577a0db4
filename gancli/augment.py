"""Batch augmentations that run on the model's device, one random draw per image.

`deluxe` (random resized crop, horizontal flip, random autocontrast) helps GANs on a few
hundred images; DiffAugment (Zhao et al. 2020) is differentiable, so it can be applied to
real *and* fake images before every D call, in G's step too. Everything is vectorised:
one affine grid per batch instead of a PIL call per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gancli.errors import GancliError

DIFFAUG_POLICIES = ("color", "translation", "cutout")


def _rand(n: int, x: torch.Tensor, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    return torch.rand(n, device=x.device, dtype=x.dtype) * (high - low) + low


def deluxe(x: torch.Tensor, scale: tuple[float, float] = (0.8, 1.0),
           ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: float = 0.5,
           autocontrast: float = 0.5) -> torch.Tensor:
    """Random resized crop + horizontal flip + random autocontrast on a [-1, 1] batch.

    The crop covers `scale` of the area with aspect `ratio` and is resized back to the
    input size (bilinear), like torchvision's RandomResizedCrop, but per image in one call.
    """
    n = x.shape[0]
    area = _rand(n, x, *scale)
    log_r = _rand(n, x, torch.tensor(ratio[0]).log().item(), torch.tensor(ratio[1]).log().item())
    aspect = log_r.exp()
    w = (area * aspect).sqrt().clamp(max=1.0)  # crop width as a fraction of the image
    h = (area / aspect).sqrt().clamp(max=1.0)
    cx = (_rand(n, x) * 2 - 1) * (1 - w)  # centre, in [-1, 1] grid units
    cy = (_rand(n, x) * 2 - 1) * (1 - h)
    sign = torch.where(_rand(n, x) < flip, -1.0, 1.0).to(x.dtype)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = w * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                        align_corners=False)
    lo = out.amin(dim=(1, 2, 3), keepdim=True)
    hi = out.amax(dim=(1, 2, 3), keepdim=True)
    stretched = (out - lo) / (hi - lo).clamp(min=1e-3) * 2 - 1
    pick = (_rand(n, x) < autocontrast).view(n, 1, 1, 1)
    return torch.where(pick, stretched, out).clamp(-1, 1)


def parse_policy(text: str) -> tuple[str, ...]:
    """`color,translation` -> ('color', 'translation'), rejecting unknown names."""
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in names if p not in DIFFAUG_POLICIES]
    if bad:
        raise GancliError(f"unknown DiffAugment policy '{bad[0]}' "
                          f"(choose any of {', '.join(DIFFAUG_POLICIES)})")
    if len(set(names)) < len(names):
        raise GancliError(f"--diffaug names a policy twice: '{text}'")
    return names


def diffaugment(x: torch.Tensor, policy: tuple[str, ...],
                channels: int | None = None) -> torch.Tensor:
    """DiffAugment: differentiable colour, translation and cutout, per image.

    `channels`: each item of `x` is several images of this many channels stacked along
    dim 1 (a pix2pix (input, output) pair). They share one random draw, so they stay
    aligned, but colour statistics are taken per image, so saturation never blends one
    image of the pair into the other.
    """
    for name in policy:
        x = _color(x, channels) if name == "color" else _GEOMETRIC[name](x)
    return x


def _color(x: torch.Tensor, channels: int | None = None) -> torch.Tensor:
    n = x.shape[0]
    v = x.reshape(n, -1, channels or x.shape[1], *x.shape[2:])  # (N, images, C, H, W)
    v = v + (_rand(n, x) - 0.5).view(n, 1, 1, 1, 1)  # brightness: +-0.5 in [-1, 1] units
    mean = v.mean(dim=2, keepdim=True)
    v = (v - mean) * _rand(n, x, 0, 2).view(n, 1, 1, 1, 1) + mean  # saturation 0..2
    mean = v.mean(dim=(2, 3, 4), keepdim=True)
    v = (v - mean) * _rand(n, x, 0.5, 1.5).view(n, 1, 1, 1, 1) + mean  # contrast 0.5..1.5
    return v.reshape(x.shape)


def _translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to 1/8 of its size, zero-filled, via integer index gathers."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (n, 1, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (n, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1) - dy
    xs = torch.arange(w, device=x.device).view(1, 1, w) - dx
    valid = ((ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)).unsqueeze(1)
    ys, xs = ys.clamp(0, h - 1).expand(n, h, w), xs.clamp(0, w - 1).expand(n, h, w)
    idx = (ys * w + xs).view(n, 1, h * w).expand(-1, x.shape[1], -1)
    shifted = x.flatten(2).gather(2, idx).view_as(x)
    return shifted * valid.to(x.dtype)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero a random square of half the image's size in each image (clipped at the edges)."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(-(ch // 2), h - ch // 2 + 1, (n, 1, 1), device=x.device)
    left = torch.randint(-(cw // 2), w - cw // 2 + 1, (n, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1) - top
    xs = torch.arange(w, device=x.device).view(1, 1, w) - left
    inside = (ys >= 0) & (ys < ch) & (xs >= 0) & (xs < cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_GEOMETRIC = {"translation": _translation, "cutout": _cutout}
