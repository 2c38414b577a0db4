"""Gaussian diffusion (Ho et al. 2020) as pure tensor code: schedules, the forward process,
DDPM and DDIM reverse steps, classifier-free guidance. No networks, files or CLI here, so
every formula can be tested against its closed form.

Convention: images live in [-1, 1]; `t` runs 0..T-1 and indexes `alpha_bar`, the fraction
of signal variance left after step t (x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

# eps(x_t, t) -> predicted noise; t is a LongTensor (N,) of step indices
EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def linear_betas(T: int) -> torch.Tensor:
    """Ho et al.'s 1e-4 .. 0.02, rescaled by 1000/T so any T keeps the same total noise."""
    scale = 1000 / T
    return torch.linspace(scale * 1e-4, scale * 0.02, T, dtype=torch.float64).clamp(max=0.999)


def cosine_betas(T: int, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal 2021: alpha_bar follows cos^2, so less of the chain is spent on
    near-pure noise than with the linear schedule (better at low resolution)."""
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=0.999)


SCHEDULES = {"linear": linear_betas, "cosine": cosine_betas}


def _at(values: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """values[t] shaped to broadcast over a batch of images like x."""
    return values.to(x.device)[t].to(x.dtype).view(-1, *[1] * (x.dim() - 1))


class Schedule:
    """A noise schedule's constants (computed in float64, kept as float32)."""

    def __init__(self, betas: torch.Tensor) -> None:
        betas = betas.double()
        alpha_bar = torch.cumprod(1 - betas, 0)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        self.T = len(betas)
        self.betas = betas.float()
        self.alpha_bar = alpha_bar.float()
        # the true posterior q(x_{t-1} | x_t, x_0) variance, beta-tilde (0 at t=0)
        self.posterior_var = (betas * (1 - prev) / (1 - alpha_bar)).float()

    @classmethod
    def named(cls, name: str, T: int) -> Schedule:
        return cls(SCHEDULES[name](T))

    def q_mean_var(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_t | x_0) in closed form."""
        ab = _at(self.alpha_bar, t, x0)
        return ab.sqrt() * x0, (1 - ab).expand_as(x0)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t drawn from q(x_t | x_0) with the given standard normal noise."""
        ab = _at(self.alpha_bar, t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def alpha_bar_at(self, t: int) -> float:
        """alpha_bar_t, with alpha_bar_{-1} = 1 (the clean image after the last step)."""
        return 1.0 if t < 0 else float(self.alpha_bar[t])


def timesteps(T: int, steps: int, start: int | None = None) -> list[int]:
    """`steps` descending step indices from start-1 (default T-1) towards 0, evenly spaced
    and "trailing" (Lin et al. 2024): the first is always start-1, so sampling begins at the
    noise level it assumes; steps=T gives every step T-1..0."""
    start = T if start is None else start
    steps = max(1, min(steps, start))
    return sorted({round(start - i * start / steps) - 1 for i in range(steps)}, reverse=True)


def _x0_and_eps(x: torch.Tensor, eps: torch.Tensor, ab: float, clip: bool
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """x_0 implied by a noise prediction; when clipped to [-1, 1], the noise is recomputed to
    match, so the step stays consistent with the clipped x_0."""
    x0 = (x - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
    if clip:
        x0 = x0.clamp(-1, 1)
        eps = (x - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
    return x0, eps


def ddpm_step(x: torch.Tensor, eps: torch.Tensor, ab: float, ab_prev: float,
              noise: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """Ancestral step x_t -> x_{t'}: the posterior q(x_{t'} | x_t, x_0) at the predicted x_0,
    variance beta-tilde. With t' < t-1 the betas are those of the respaced chain."""
    x0, _ = _x0_and_eps(x, eps, ab, clip)
    beta = 1 - ab / ab_prev
    mean = (math.sqrt(ab_prev) * beta / (1 - ab) * x0
            + math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab) * x)
    var = beta * (1 - ab_prev) / (1 - ab)
    return mean + math.sqrt(var) * noise


def ddim_step(x: torch.Tensor, eps: torch.Tensor, ab: float, ab_prev: float,
              noise: torch.Tensor, eta: float = 0.0, clip: bool = True) -> torch.Tensor:
    """Song et al. 2021: x_{t'} = sqrt(ab') x_0 + sqrt(1 - ab' - sigma^2) eps + sigma z.
    eta=0 is deterministic; eta=1 has DDPM's variance (the same chain, another formula)."""
    x0, eps = _x0_and_eps(x, eps, ab, clip)
    sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
    direction = math.sqrt(max(1 - ab_prev - sigma**2, 0.0)) * eps
    return math.sqrt(ab_prev) * x0 + direction + sigma * noise


def guided(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022): 0 = unconditional, 1 = conditional,
    > 1 pushes further towards the class than the conditional model alone."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def sample(model: EpsModel, schedule: Schedule, x: torch.Tensor, steps: list[int],
           sampler: str = "ddim", eta: float = 0.0, generator: torch.Generator | None = None,
           clip: bool = True,
           on_step: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Run the reverse process from x at steps[0] through `steps` (descending) to x_0.

    Noise comes from `generator` on the CPU, then moves to x's device, so a seed gives the
    same images on every device. `on_step(i, x)` sees x after each step (progress, strips).
    """
    for i, t in enumerate(steps):
        ab = schedule.alpha_bar_at(t)
        ab_prev = schedule.alpha_bar_at(steps[i + 1] if i + 1 < len(steps) else -1)
        eps = model(x, torch.full((len(x),), t, dtype=torch.long, device=x.device))
        noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        if sampler == "ddpm":
            x = ddpm_step(x, eps, ab, ab_prev, noise, clip)
        else:
            x = ddim_step(x, eps, ab, ab_prev, noise, eta, clip)
        if on_step is not None:
            on_step(i, x)
    return x
