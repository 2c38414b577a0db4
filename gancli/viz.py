"""Pictures people would rather look at than read: sample grids, comparisons, loss curves."""

from __future__ import annotations

import io
from pathlib import Path

import torch
import torch.nn.functional as F

from gancli.checkpoint import atomic_write, write_output
from gancli.data import to_uint8
from gancli.errors import GancliError


def grid(images: torch.Tensor, nrow: int = 8, pad: int = 2) -> torch.Tensor:
    """Images in [-1, 1] (N, C, H, W) -> one uint8 (3, H', W') grid."""
    x = to_uint8(images.float().cpu())
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return tile(x, nrow, pad)


def tile(x: torch.Tensor, nrow: int, pad: int, value: int = 255) -> torch.Tensor:
    """torchvision's make_grid layout (pad around every cell, rows of nrow) without
    importing torchvision: that import alone is ~40% of `gancli sample`'s start-up."""
    n, c, h, w = x.shape
    if n == 1:  # as make_grid: a lone image is not framed
        return x[0]
    cols = min(nrow, n)
    rows = -(-n // cols)
    out = torch.full((c, rows * (h + pad) + pad, cols * (w + pad) + pad), value,
                     dtype=x.dtype)
    for i in range(n):
        top, left = (i // cols) * (h + pad) + pad, (i % cols) * (w + pad) + pad
        out[:, top:top + h, left:left + w] = x[i]
    return out


# Formats a picture may be written in, by file suffix (anything else is refused rather than
# PNG bytes under a .jpg name)
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
           ".tif": "TIFF", ".tiff": "TIFF"}


def image_format(path: Path) -> str:
    """PIL's format name for `path`'s suffix; checked before slow work that ends in a save."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise GancliError(f"cannot write {path}: name it .png, .jpg, .webp, .bmp or .tif")
    return fmt


def save_image(image: torch.Tensor, path: Path) -> None:
    """Save a uint8 (C, H, W) tensor in the format its suffix names, atomically (a grid is
    never half-written)."""
    from PIL import Image

    fmt = image_format(path)
    arr = image.permute(1, 2, 0).contiguous().numpy()
    buf = io.BytesIO()
    Image.fromarray(arr.squeeze(-1) if arr.shape[-1] == 1 else arr).save(
        buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    write_output(path, buf.getvalue())


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> None:
    save_image(grid(images, nrow), path)


def side_by_side(panels: list[tuple[str, torch.Tensor]], path: Path, nrow: int = 8) -> None:
    """Grids of several batches next to each other, titled (e.g. real | generated)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.8), squeeze=False)
    for ax, (title, images) in zip(axes[0], panels, strict=True):
        ax.imshow(grid(images, nrow).permute(1, 2, 0).numpy())
        ax.set_title(title)
        ax.axis("off")
    _save_figure(fig, path)


def loss_curves(steps: list[int], series: dict[str, list[float]], path: Path) -> None:
    """One line per loss over optimizer steps, with a moving average to see the trend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    window = max(1, len(steps) // 100)
    for name, values in series.items():
        v = torch.tensor(values, dtype=torch.float64)
        line = ax.plot(steps, values, alpha=0.25, linewidth=0.8)[0]
        if window > 1:
            smooth = F.avg_pool1d(v[None, None], window, 1).flatten().tolist()
            ax.plot(steps[window - 1:], smooth, color=line.get_color(), label=name)
        else:
            line.set_label(name)
            line.set_alpha(1.0)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    _save_figure(fig, path)


def _save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write(Path(path), buf.getvalue())
