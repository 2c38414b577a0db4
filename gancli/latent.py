"""Latent walks: spherical interpolation between noise vectors, saved as a grid and a GIF."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from gancli.checkpoint import write_output


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of row vectors a, b (N, D) at fractions t (S,) -> (N, S, D).

    Gaussian noise lives near a sphere, so the straight line between two samples passes
    through unlikely, low-norm points; the great circle does not (White 2016).
    """
    a_n, b_n = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(1).clamp(-1 + 1e-7, 1 - 1e-7))[:, None, None]
    t = t.view(1, -1, 1).to(a)
    so = torch.sin(omega)
    linear = so.abs() < 1e-6  # (nearly) parallel vectors: fall back to lerp
    wa = torch.where(linear, 1 - t, torch.sin((1 - t) * omega) / so)
    wb = torch.where(linear, t, torch.sin(t * omega) / so)
    return wa * a[:, None] + wb * b[:, None]


def save_gif(frames: torch.Tensor, path: Path, ms: int = 80) -> None:
    """uint8 frames (S, 3, H, W) -> an animated GIF that plays forward then back."""
    from PIL import Image

    images = [Image.fromarray(f.permute(1, 2, 0).numpy()) for f in frames]
    images = images + images[-2:0:-1]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=ms,
                   loop=0)
    write_output(path, buf.getvalue())


def sample_walk(trainer, out: Path, pairs: int, steps: int, generator: torch.Generator,
                label: int | None, between: tuple[int, int] | None, gif: str) -> str:
    """`sample --interpolate`: a grid with one walk per row, and optionally an animated GIF
    whose frame s shows step s of every walk; returns what was written, in words."""
    from gancli import viz

    frames = trainer.walk(pairs, steps, generator, label=label, between=between)
    viz.save_grid(frames.flatten(0, 1), out, nrow=steps)
    said = f"{pairs} walks of {steps} steps -> {out}"
    if gif:
        save_gif(torch.stack([viz.grid(frames[:, s], nrow=pairs) for s in range(steps)]),
                 Path(gif))
        said += f" and {gif}"
    return said
