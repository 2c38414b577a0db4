"""Noise-to-image GANs: a generator maps z (and a class, if conditional) to images.

gan, dcgan, cgan, cdcgan, acgan and wgan-gp are one adversarial recipe that differs in two
named strategies: whether G gets a class (`spec.conditional`) and the `Head`, i.e. what D
outputs and which losses are computed on those outputs. Each model's trainer class below
only picks its head.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import nn

from gancli import losses
from gancli.ema import recalibrate_bn
from gancli.latent import slerp
from gancli.trainers.base import Trainer, evaluating

PREVIEW = 64  # images in the per-epoch grid of an unconditional model
# G_ema's BatchNorm statistics are averaged over this many noise batches (about a second)
CALIBRATION_BATCHES, CALIBRATION_BATCH = 16, 256
Tensor = torch.Tensor
Labels = torch.Tensor | None
Stats = dict[str, torch.Tensor]


class Head(ABC):
    """What D outputs and the losses on those outputs (no D calls, so each is testable)."""

    metrics: dict[str, str] = {"loss_d": "D loss", "loss_g": "G loss", "d_real": "D(x)",
                               "d_fake": "D(G(z))"}
    d_labels = False  # D is told the class of the image it judges

    @abstractmethod
    def d_loss(self, real: Tensor, fake: Tensor, y_real: Labels, y_fake: Labels
               ) -> tuple[Tensor, Stats]:
        """D's loss on its outputs for real and (detached) fake images, and its statistics."""

    @abstractmethod
    def g_loss(self, fake: Tensor, y_fake: Labels) -> Tensor:
        """G's loss on D's outputs for fakes of the classes G was asked for."""


class RealFake(Head):
    """One logit, real vs fake (GAN, DCGAN; with `d_labels`, cGAN and cDCGAN's D)."""

    def __init__(self, loss: str = "bce", d_labels: bool = False) -> None:
        self.loss, self.d_labels = loss, d_labels

    def d_loss(self, real: Tensor, fake: Tensor, y_real: Labels, y_fake: Labels
               ) -> tuple[Tensor, Stats]:
        return losses.d_loss(real, fake, self.loss), {
            "d_real": torch.sigmoid(real.detach()).mean(),
            "d_fake": torch.sigmoid(fake.detach()).mean()}

    def g_loss(self, fake: Tensor, y_fake: Labels) -> Tensor:
        return losses.g_loss(fake, self.loss)


class Multiclass(Head):
    """K+1 logits: the K classes and "generated" (index K). D learns real -> its class and
    fake -> K by cross-entropy; G learns to have its fakes read as the class it was asked
    for, so a fake "3" that looks like a 7 is penalised even when it looks real."""

    metrics = {"loss_d": "D loss", "loss_g": "G loss", "d_real": "D(x)", "d_fake": "D(G(z))",
               "acc": "class acc"}

    def d_loss(self, real: Tensor, fake: Tensor, y_real: Labels, y_fake: Labels
               ) -> tuple[Tensor, Stats]:
        generated = torch.full_like(y_fake, real.shape[1] - 1)
        loss = F.cross_entropy(real, y_real) + F.cross_entropy(fake, generated)
        real, fake = real.detach(), fake.detach()
        return loss, {"d_real": 1 - real.softmax(1)[:, -1].mean(),
                      "d_fake": 1 - fake.softmax(1)[:, -1].mean(),
                      "acc": (real[:, :-1].argmax(1) == y_real).float().mean()}

    def g_loss(self, fake: Tensor, y_fake: Labels) -> Tensor:
        return F.cross_entropy(fake, y_fake)


class Auxiliary(Head):
    """AC-GAN: logit 0 is real/fake, the rest are class logits. D minimises the source and
    the class loss, G the non-saturating source loss plus the class loss of its fakes.

    With `fake_classes` (the paper) D's class loss also covers fakes. Early on, D can then
    learn a class convention of its own for fakes that G follows, and whole classes come out
    permuted (asked for 0, drawn 7); without it D's classes are only ever the data's."""

    metrics = {"loss_d": "D loss", "loss_g": "G loss", "d_real": "D(x)", "d_fake": "D(G(z))",
               "acc": "class acc"}

    def __init__(self, fake_classes: bool = True) -> None:
        self.fake_classes = fake_classes

    def d_loss(self, real: Tensor, fake: Tensor, y_real: Labels, y_fake: Labels
               ) -> tuple[Tensor, Stats]:
        loss = losses.d_loss(real[:, 0], fake[:, 0]) + F.cross_entropy(real[:, 1:], y_real)
        if self.fake_classes:
            loss = loss + F.cross_entropy(fake[:, 1:], y_fake)
        real, fake = real.detach(), fake.detach()
        return loss, {"d_real": torch.sigmoid(real[:, 0]).mean(),
                      "d_fake": torch.sigmoid(fake[:, 0]).mean(),
                      "acc": (real[:, 1:].argmax(1) == y_real).float().mean()}

    def g_loss(self, fake: Tensor, y_fake: Labels) -> Tensor:
        return losses.g_loss(fake[:, 0]) + F.cross_entropy(fake[:, 1:], y_fake)


class Critic(Head):
    """WGAN: one unbounded score; the critic maximises E[D(real)] - E[D(fake)], the
    Wasserstein-1 estimate shown as `wdist`, and G maximises E[D(fake)]."""

    metrics = {"loss_d": "D loss", "loss_g": "G loss", "wdist": "W estimate"}

    def d_loss(self, real: Tensor, fake: Tensor, y_real: Labels, y_fake: Labels
               ) -> tuple[Tensor, Stats]:
        wdist = real.mean() - fake.mean()
        return -wdist, {"wdist": wdist.detach()}

    def g_loss(self, fake: Tensor, y_fake: Labels) -> Tensor:
        return -fake.mean()


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[(||grad D(x_hat)|| - 1)^2] on random interpolates x_hat of real and fake images
    (Gulrajani et al. 2017); differentiable in D's weights, so it can be minimised."""
    eps = torch.rand(len(real), *[1] * (real.dim() - 1), device=real.device, dtype=real.dtype)
    x = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square().mean()


class NoiseGAN(Trainer):
    """The shared recipe; with the default head, the DCGAN / vanilla GAN (BCE) one."""

    curves = ("loss_d", "loss_g")
    penalty_metrics: dict[str, str] = {}  # statistics of `penalty`, shown after the head's

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.head = self.make_head()
        self.metrics = {**self.head.metrics, **self.penalty_metrics}
        self.steps = 0  # optimizer steps so far; G moves every `n_critic`-th
        self.n_critic = self.cfg.get("n_critic", 1)
        # Fixed noise from its own generator: drawing it must not move the training RNG.
        # Conditional models show one row per class; each column keeps its noise.
        g = torch.Generator().manual_seed(self.cfg["seed"])
        if self.conditional:
            classes = self.info["num_classes"]
            per_class = max(1, min(10, 100 // classes))
            z = torch.randn(per_class, self.cfg["nz"], generator=g).repeat(classes, 1)
            self.fixed_labels = torch.arange(classes).repeat_interleave(per_class).to(
                self.device)
            self.preview_nrow = per_class
        else:
            z = torch.randn(PREVIEW, self.cfg["nz"], generator=g)
            self.fixed_labels = None
            self.preview_nrow = 8
        self.fixed_z = z.to(self.device)

    def make_head(self) -> Head:
        return RealFake(self.cfg.get("loss") or "bce")

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        betas = (self.cfg["beta1"], self.cfg["beta2"])
        return {k: self.adam(self.nets[k].parameters(), lr=self.cfg["lr"], betas=betas)
                for k in ("G", "D")}

    def judge(self, images: torch.Tensor, labels: torch.Tensor | None,
              frozen: bool = False) -> torch.Tensor:
        """D's outputs for images (DiffAugmented if --diffaug), told the class if it takes
        it; `frozen`: D as G's step uses it."""
        D = self.frozen("D") if frozen else self.nets["D"]
        return D(self.diffaug(images), labels if self.head.d_labels else None)

    def penalty(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        """A term added to D's loss, with its statistics; none here."""
        return torch.zeros((), device=self.device), {}

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        G = self.nets["G"]
        real = batch["image"]
        n = len(real)
        y_real = y_fake = None
        if self.conditional:
            y_real = batch["label"]
            y_fake = torch.randint(self.info["num_classes"], (n,), device=self.device)
        z = torch.randn(n, self.cfg["nz"], device=self.device)
        g_turn = (self.steps + 1) % self.n_critic == 0
        self.steps += 1
        with torch.set_grad_enabled(g_turn):
            fake = G(z, y_fake) if self.conditional else G(z)

        fake_out = self.judge(fake.detach(), y_fake)
        loss_d, stats = self.head.d_loss(self.judge(real, y_real), fake_out, y_real, y_fake)
        extra, extra_stats = self.penalty(real, fake.detach())
        self.optimize("D", loss_d + extra)

        if g_turn:
            loss_g = self.head.g_loss(self.judge(fake, y_fake, frozen=True), y_fake)
            self.optimize("G", loss_g)
        else:  # G rests (critic steps): its loss on the outputs D already gave, no extra pass
            loss_g = self.head.g_loss(fake_out.detach(), y_fake)
        return {"loss_d": (loss_d + extra).detach(), "loss_g": loss_g.detach(), **stats,
                **extra_stats}

    def calibrate_ema(self, name: str) -> None:
        """G_ema's BatchNorm statistics from its own activations on fresh noise (and
        uniform classes): the live G's running statistics belong to other weights, and
        sampling with them blurs and mis-draws digits. The noise has its own seed, so
        renewing never moves the training RNG."""
        g = torch.Generator().manual_seed(self.cfg["seed"] + 1)
        k = self.info.get("num_classes") or 1

        def inputs():
            for _ in range(CALIBRATION_BATCHES):
                z = torch.randn(CALIBRATION_BATCH, self.cfg["nz"], generator=g)
                y = torch.randint(k, (CALIBRATION_BATCH,), generator=g)
                yield ((z.to(self.device), y.to(self.device)) if self.conditional
                       else (z.to(self.device),))

        recalibrate_bn(self.nets[f"{name}_ema"], inputs())

    def class_rows(self, n: int) -> torch.Tensor:
        """Labels for n samples of a conditional model laid out one row per class."""
        per_row = self.sample_nrow(n, None)
        return torch.arange(n) // per_row

    def sample_nrow(self, n: int, labels: torch.Tensor | None) -> int:
        """Row length of a sample grid: with no class asked of a conditional model, one row
        per class; otherwise as square as possible."""
        if self.conditional and labels is None:
            return -(-n // self.info["num_classes"])
        return super().sample_nrow(n, labels)

    def render(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images from given noise (and classes, or class mixtures as float rows) with the
        sampling G in eval mode (BatchNorm running statistics), in chunks."""
        G = self.sampler("G")
        z = z.to(self.device)
        with evaluating(G):
            if not self.conditional:
                return torch.cat([G(chunk) for chunk in z.split(256)])
            y = labels.to(self.device)
            return torch.cat([G(zc, yc) for zc, yc in zip(z.split(256), y.split(256),
                                                            strict=True)])

    def generate(self, n: int, generator: torch.Generator | None = None,
                 labels: torch.Tensor | None = None, **options) -> torch.Tensor:
        """n images in [-1, 1]; a conditional model without `labels` gives class-ordered
        rows (see sample_nrow)."""
        z = torch.randn(n, self.cfg["nz"], generator=generator)
        if self.conditional and labels is None:
            labels = self.class_rows(n)
        return self.render(z, labels)

    def walk(self, pairs: int, steps: int, generator: torch.Generator | None = None,
             label: int | None = None, between: tuple[int, int] | None = None
             ) -> torch.Tensor:
        """(pairs, steps, C, H, W): each row walks from one random z to another along the
        great circle (slerp), or, with `between`, from class a to class b at fixed noise."""
        t = torch.linspace(0, 1, steps)
        nz = self.cfg["nz"]
        if between is not None:
            z = torch.randn(pairs, 1, nz, generator=generator).expand(-1, steps, -1)
            eye = torch.eye(self.info["num_classes"])
            mix = (1 - t)[:, None] * eye[between[0]] + t[:, None] * eye[between[1]]
            labels = mix.repeat(pairs, 1)
        else:
            a, b = (torch.randn(pairs, nz, generator=generator) for _ in range(2))
            z = slerp(a, b, t)
            labels = None
            if self.conditional:
                rows = (torch.full((pairs,), label) if label is not None
                        else torch.randint(self.info["num_classes"], (pairs,),
                                           generator=generator))
                labels = rows.repeat_interleave(steps)
        images = self.render(z.reshape(pairs * steps, nz), labels)
        return images.view(pairs, steps, *images.shape[1:])

    def preview(self) -> tuple[torch.Tensor, int]:
        return self.render(self.fixed_z, self.fixed_labels), self.preview_nrow

    def example_inputs(self) -> dict[str, tuple[torch.Tensor, ...]]:
        size, c = self.cfg["image_size"], self.info["channels"]
        z = torch.zeros(2, self.cfg["nz"], device=self.device)
        x = torch.zeros(2, c, size, size, device=self.device)
        y = torch.zeros(2, dtype=torch.long, device=self.device)
        return {"G": (z, y) if self.conditional else (z,),
                "D": (x, y) if self.head.d_labels else (x,)}

    def export_inputs(self, name: str, n: int, generator: torch.Generator
                      ) -> dict[str, torch.Tensor]:
        """G's noise (and class indices); `render` feeds it the same."""
        z = {"noise": torch.randn(n, self.cfg["nz"], generator=generator)}
        if not self.conditional:
            return z
        return {**z, "labels": torch.randint(self.info["num_classes"], (n,),
                                             generator=generator)}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict, optimizers: bool = True) -> None:
        super().load_state_dict(state, optimizers)
        self.steps = state.get("steps", 0)


class ConditionalGAN(NoiseGAN):
    """cGAN / cDCGAN: D is told the class (real/fake), or is an 11-way classifier
    (--discriminator multiclass)."""

    def make_head(self) -> Head:
        if self.cfg["discriminator"] == "multiclass":
            return Multiclass()
        return RealFake(self.cfg.get("loss") or "bce", d_labels=True)


class ACGAN(NoiseGAN):
    """AC-GAN (Odena et al. 2017): D predicts real/fake and the class from the image alone."""

    def make_head(self) -> Head:
        return Auxiliary(self.cfg["fake_classes"])


class WGANGP(NoiseGAN):
    """WGAN-GP (Gulrajani et al. 2017): a critic, a gradient penalty weighted by
    --gp-weight, and --n-critic critic steps (one real batch each) per G step."""

    curves = ("loss_d", "loss_g", "wdist")
    penalty_metrics = {"gp": "GP"}

    def make_head(self) -> Head:
        return Critic()

    def penalty(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, Stats]:
        # under --amp fp16 the inner gradients would underflow: the penalty runs in fp32
        fp16 = self.amp == torch.float16
        with torch.autocast(self.device.type, enabled=not fp16 and self.amp is not None,
                            dtype=self.amp or torch.bfloat16):
            gp = gradient_penalty(self.nets["D"], real, fake)
        return self.cfg["gp_weight"] * gp, {"gp": gp.detach()}
