"""How close each translated image is to its target: L1, PSNR and SSIM, per image.

SSIM is Wang et al. 2004 as scikit-image computes it with `gaussian_weights=True,
use_sample_covariance=False` (the paper's settings): an 11-tap Gaussian window (sigma 1.5),
the mean over the positions where the window fits, per channel, then over channels.
gancli computes it in torch, batched, rather than calling scikit-image (NumPy, one image
at a time, and a heavy dependency) or torchmetrics (3 s to import, and 3e-4 away from
scikit-image); tests/test_evaluation.py checks it against scikit-image to 1e-6.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SIGMA = 1.5
RADIUS = int(3.5 * SIGMA + 0.5)  # scipy.ndimage's truncate = 3.5: an 11-tap window
K1, K2 = 0.01, 0.03


def l1(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference per image, in [-1, 1] units (as pix2pix's L1 loss) of
    uint8 batches (N, C, H, W)."""
    return (output.double() - target.double()).abs().mean((1, 2, 3)) / 127.5


def psnr(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image of uint8 batches (inf where identical)."""
    mse = (output.double() - target.double()).pow(2).mean((1, 2, 3))
    return 10 * torch.log10(255.0**2 / mse)


def ssim(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Structural similarity per image of uint8 batches (N, C, H, W) at least 11 pixels
    on a side."""
    x, y = output.double(), target.double()
    c = x.shape[1]
    taps = torch.arange(-RADIUS, RADIUS + 1, dtype=torch.float64)
    g = torch.exp(-taps**2 / (2 * SIGMA**2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).expand(c, 1, -1, -1).contiguous()

    def blur(z: torch.Tensor) -> torch.Tensor:  # only where the window fits: no padding
        return F.conv2d(z, window, groups=c)

    mx, my = blur(x), blur(y)
    vx, vy = blur(x * x) - mx * mx, blur(y * y) - my * my
    vxy = blur(x * y) - mx * my
    c1, c2 = (K1 * 255) ** 2, (K2 * 255) ** 2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean((2, 3)).mean(1)


def fits_ssim(size: int) -> bool:
    """SSIM's window needs images at least this large."""
    return size >= 2 * RADIUS + 1

