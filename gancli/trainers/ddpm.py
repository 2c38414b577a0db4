"""DDPM (Ho et al. 2020): learn to predict the noise added to an image at a random step
(MSE), then generate by running the reverse process from pure noise (DDPM or DDIM,
optionally with classifier-free guidance), or denoise by starting part-way (SDEdit).

The formulas live in gancli.diffusion; this recipe wires them to the U-Net, the EMA copy
it samples from, labels and guidance, progress bars and the per-epoch grids.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from gancli import diffusion
from gancli.errors import GancliError
from gancli.trainers.base import Trainer, evaluating

console = Console(stderr=True)
PREVIEW_STEPS = 50  # DDIM steps of the per-epoch grid
PREVIEW = 64  # images in the grid of an unconditional model
TRAJECTORY_ROWS = 8  # images shown by --show-steps
TRAJECTORY_COLUMNS = 10  # snapshots of each, noise to image
CHUNK = 256  # images denoised at once
TRANSLATE_STEPS = 50  # SDEdit steps over the whole chain without --steps


class DDPM(Trainer):
    """eps-prediction with MSE on a U-Net; an EMA copy of it (`--ema`) samples."""

    metrics = {"loss": "loss"}
    curves = ("loss",)
    discriminators = ()
    generators = ("unet",)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.schedule = diffusion.Schedule.named(self.cfg["schedule"], self.cfg["timesteps"])
        self.steps = 0  # optimizer steps so far
        self.null_label = self.info.get("num_classes") or 0
        self.trajectory: tuple[torch.Tensor, int] | None = None  # --show-steps strip, row
        self.translate_rng: torch.Generator | None = None
        self._preview: tuple[int, torch.Tensor] | None = None

    @property
    def conditional(self) -> bool:
        return bool(self.cfg["conditional"])

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"unet": self.adam(self.nets["unet"].parameters(), lr=self.cfg["lr"])}

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x0 = batch["image"]
        n = len(x0)
        t = torch.randint(self.schedule.T, (n,), device=self.device)
        noise = torch.randn_like(x0)
        y = None
        if self.conditional:  # label dropout: the same net also learns "no class"
            drop = torch.rand(n, device=self.device) < self.cfg["label_drop"]
            y = batch["label"].masked_fill(drop, self.null_label)
        loss = F.mse_loss(self.nets["unet"](self.schedule.q_sample(x0, t, noise), t, y), noise)
        self.optimize("unet", loss, clip=1.0)  # clipped as Ho et al.
        self.steps += 1
        return {"loss": loss.detach()}

    def eps_model(self, labels: torch.Tensor | None, guidance: float) -> diffusion.EpsModel:
        """The (EMA) U-Net as eps(x, t), conditioned and guided as asked."""
        net = self.sampler("unet")
        if labels is None or guidance == 1:
            return lambda x, t: net(x, t, labels)
        null = torch.full_like(labels, self.null_label)
        if guidance == 0:
            return lambda x, t: net(x, t, null)

        def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            cond, uncond = net(torch.cat([x, x]), torch.cat([t, t]),
                               torch.cat([labels, null])).chunk(2)
            return diffusion.guided(cond, uncond, guidance)

        return guided

    def _labels(self, n: int, labels: torch.Tensor | None, guidance: float
                ) -> torch.Tensor | None:
        if not self.conditional:
            if guidance != 1:
                raise GancliError("--guidance needs a model trained with --conditional")
            return None
        return (self.class_rows(n) if labels is None else labels).to(self.device)

    def denoise(self, x: torch.Tensor, labels: torch.Tensor | None, steps: list[int],
                sampler: str, eta: float, guidance: float, generator: torch.Generator | None,
                describe: str, show_steps: bool = False) -> torch.Tensor:
        """The reverse process over `steps` for x (any number of images, in chunks) under a
        progress bar titled `describe`, keeping the --show-steps strip if asked."""
        keep = {round(i * (len(steps) - 1) / (TRAJECTORY_COLUMNS - 2))
                for i in range(TRAJECTORY_COLUMNS - 1)} if show_steps else set()
        snapshots = [x[:TRAJECTORY_ROWS].cpu()] if show_steps else []
        chunks = x.split(CHUNK)
        label_chunks = labels.split(CHUNK) if labels is not None else [None] * len(chunks)
        progress = Progress(TextColumn(describe), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), console=console, transient=True)
        out = []
        with progress, evaluating(self.sampler("unet")):
            task = progress.add_task("steps", total=len(steps) * len(chunks))

            def on_step(i: int, xi: torch.Tensor) -> None:
                progress.advance(task)
                if i in keep and len(out) == 0:
                    snapshots.append(xi[:TRAJECTORY_ROWS].cpu())

            for xc, yc in zip(chunks, label_chunks, strict=True):
                out.append(diffusion.sample(self.eps_model(yc, guidance), self.schedule, xc,
                                            steps, sampler, eta, generator, on_step=on_step))
        if show_steps:
            self.trajectory = (torch.stack(snapshots, 1).flatten(0, 1).clamp(-1, 1),
                               len(snapshots))
        return torch.cat(out)

    def generate(self, n: int, generator: torch.Generator | None = None,
                 labels: torch.Tensor | None = None, steps: int | None = None,
                 sampler: str = "ddim", eta: float = 0.0, guidance: float = 1.0,
                 show_steps: bool = False) -> torch.Tensor:
        """n images from pure noise; without --steps, DDIM takes 50 and DDPM all T."""
        if sampler == "ddpm" and eta:
            raise GancliError(f"--eta {eta} is DDIM noise; it does not apply to --sampler ddpm "
                              "(which always adds DDPM's own noise): drop it or use "
                              "--sampler ddim")
        T = self.schedule.T
        self._check_steps(steps)
        y = self._labels(n, labels, guidance)
        count = steps or (T if sampler == "ddpm" else PREVIEW_STEPS)
        x = torch.randn(n, self.info["channels"], self.cfg["image_size"],
                        self.cfg["image_size"], generator=generator).to(self.device)
        return self.denoise(x, y, diffusion.timesteps(T, count), sampler, eta, guidance,
                            generator, f"{sampler.upper()} {min(count, T)} steps", show_steps)

    def _check_steps(self, steps: int | None) -> None:
        """More denoising steps than the run's T would silently run only T of them."""
        if steps is not None and steps > self.schedule.T:
            raise GancliError(f"--steps {steps} is more than this run's {self.schedule.T} "
                              f"diffusion steps (--timesteps); use at most {self.schedule.T}")

    def extra_grids(self) -> dict[str, tuple[torch.Tensor, int]]:
        """--show-steps: rows of images, noise (left) to result (right)."""
        return {} if self.trajectory is None else {"steps": self.trajectory}

    def translate(self, images: torch.Tensor, strength: float = 0.5, steps: int | None = None,
                  sampler: str = "ddim", digit: int | None = None, add_noise: float = 0.0,
                  seed: int = 0) -> tuple[torch.Tensor, dict]:
        """SDEdit (Meng et al. 2022): noise the inputs to step strength*T, run the reverse
        process back. With --add-noise, clean inputs are corrupted first and both the
        corrupted and the denoised images are scored against them (PSNR). Without --steps,
        50 over the whole chain (at most T)."""
        self._check_steps(steps)
        if steps is None:
            steps = TRANSLATE_STEPS
        if not 0 < strength <= 1:
            raise GancliError(f"--strength must be in (0, 1], not {strength}")
        if add_noise < 0:
            raise GancliError(f"--add-noise must be >= 0, not {add_noise}")
        if self.translate_rng is None:  # one stream over all batches of a folder
            self.translate_rng = torch.Generator().manual_seed(seed)
        g = self.translate_rng
        y = None  # a conditional model without --digit denoises as "no class"
        if digit is not None:
            if not self.conditional:
                raise GancliError("--digit needs a model trained with --conditional")
            if not 0 <= digit < self.info["num_classes"]:
                raise GancliError(f"--digit must be in 0..{self.info['num_classes'] - 1}")
            y = torch.full((len(images),), digit, dtype=torch.long, device=self.device)
        clean = images.to(self.device)
        noisy = clean
        if add_noise:  # sigma on the 0..1 intensity scale, i.e. 2*sigma in [-1, 1]
            noisy = (clean + 2 * add_noise * torch.randn(clean.shape, generator=g).to(
                self.device)).clamp(-1, 1)
        T = self.schedule.T
        start = max(1, round(strength * T))
        t = torch.full((len(noisy),), start - 1, dtype=torch.long, device=self.device)
        x = self.schedule.q_sample(noisy, t, torch.randn(noisy.shape, generator=g).to(
            self.device))
        out = self.denoise(x, y, diffusion.timesteps(T, max(1, round(steps * strength)), start),
                           sampler, 0.0, 1.0, g, f"SDEdit from step {start}")
        numbers = {}
        if add_noise:
            numbers = {"PSNR noisy (dB)": psnr(noisy, clean),
                       "PSNR denoised (dB)": psnr(out.clamp(-1, 1), clean)}
        return out, numbers

    def class_rows(self, n: int) -> torch.Tensor:
        """Labels for n samples laid out one row per class."""
        return torch.arange(n) // self.sample_nrow(n, None)

    def sample_nrow(self, n: int, labels: torch.Tensor | None) -> int:
        if self.conditional and labels is None:
            return -(-n // self.info["num_classes"])
        return super().sample_nrow(n, labels)

    def preview(self) -> tuple[torch.Tensor, int]:
        """A fixed-noise DDIM grid (one row per class if conditional), computed once per
        training step count: the engine asks for it twice per epoch."""
        if self._preview is None or self._preview[0] != self.steps:
            classes = self.info["num_classes"] if self.conditional else 0
            n = classes * 8 if classes else PREVIEW
            images = self.generate(n, torch.Generator().manual_seed(self.cfg["seed"]))
            self._preview = (self.steps, images)
        images = self._preview[1]
        return images, self.sample_nrow(len(images), None)

    def example_inputs(self) -> dict[str, tuple[torch.Tensor, ...]]:
        size, c = self.cfg["image_size"], self.info["channels"]
        x = torch.zeros(2, c, size, size, device=self.device)
        t = torch.zeros(2, dtype=torch.long, device=self.device)
        y = torch.zeros(2, dtype=torch.long, device=self.device)
        return {"unet": (x, t, y) if self.conditional else (x, t)}

    export_output = "eps"

    def export_inputs(self, name: str, n: int, generator: torch.Generator
                      ) -> dict[str, torch.Tensor]:
        """The denoiser's noisy images, step indices (and classes, num_classes meaning
        none), as `eps_model` calls it."""
        size, c = self.cfg["image_size"], self.info["channels"]
        inputs = {"x": torch.randn(n, c, size, size, generator=generator),
                  "t": torch.randint(self.schedule.T, (n,), generator=generator)}
        if not self.conditional:
            return inputs
        return {**inputs, "labels": torch.randint(self.null_label + 1, (n,),
                                                  generator=generator)}

    def export_notes(self) -> dict:
        """The schedule and the sampler a user of the exported denoiser runs around it."""
        return {
            "sampler": "DDIM, eta 0 (gancli's default): x = N(0, 1) noise of shape (n, "
                       f"{self.info['channels']}, {self.cfg['image_size']}, "
                       f"{self.cfg['image_size']}); for t in 50 evenly spaced steps from "
                       "T-1 down to 0: eps = unet(x, t[, labels]); x0 = clip((x - sqrt(1 - "
                       "ab[t]) eps) / sqrt(ab[t]), -1, 1); eps = (x - sqrt(ab[t]) x0) / "
                       "sqrt(1 - ab[t]); x = sqrt(ab_prev) x0 + sqrt(1 - ab_prev) eps, with "
                       "ab_prev = ab[next t] (1 after the last). Classifier-free guidance s: "
                       "eps = eps(labels=num_classes) + s (eps(labels) - eps(labels="
                       "num_classes)). gancli/diffusion.py is the reference.",
            "timesteps": self.schedule.T,
            "null_label": self.null_label if self.conditional else None,
            "alpha_bar": self.schedule.alpha_bar.tolist(),
        }

    def state_dict(self) -> dict:
        return {**super().state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict, optimizers: bool = True) -> None:
        super().load_state_dict(state, optimizers)
        self.steps = state.get("steps", 0)


def psnr(x: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean per-image PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = (x.float() - reference.float()).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return (10 * torch.log10(4 / mse)).mean().item()
