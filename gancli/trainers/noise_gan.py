"""Noise-to-image GANs: a generator maps z to images, a discriminator judges them."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gancli.trainers.base import Trainer, evaluating

PREVIEW = 64  # images in the per-epoch grid


class NoiseGAN(Trainer):
    """Adversarial training with the non-saturating BCE-with-logits loss (DCGAN recipe)."""

    metrics = {"loss_d": "D loss", "loss_g": "G loss", "d_real": "D(x)", "d_fake": "D(G(z))"}
    curves = ("loss_d", "loss_g")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Fixed noise from its own generator: drawing it must not move the training RNG.
        g = torch.Generator().manual_seed(self.cfg["seed"])
        self.fixed_z = torch.randn(PREVIEW, self.cfg["nz"], generator=g).to(self.device)

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        betas = (self.cfg["beta1"], self.cfg["beta2"])
        return {k: torch.optim.Adam(net.parameters(), lr=self.cfg["lr"], betas=betas)
                for k, net in self.nets.items()}

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        G, D = self.nets["G"], self.nets["D"]
        real = batch["image"]
        z = torch.randn(len(real), self.cfg["nz"], device=self.device)
        fake = G(z)

        real_logits, fake_logits = D(real), D(fake.detach())
        loss_d = (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                  + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
        self.opts["D"].zero_grad(set_to_none=True)
        loss_d.backward()
        self.opts["D"].step()

        g_logits = D(fake)
        loss_g = F.binary_cross_entropy_with_logits(g_logits, torch.ones_like(g_logits))
        self.opts["G"].zero_grad(set_to_none=True)
        loss_g.backward()
        self.opts["G"].step()

        return {
            "loss_d": loss_d.detach(), "loss_g": loss_g.detach(),
            "d_real": torch.sigmoid(real_logits.detach()).mean(),
            "d_fake": torch.sigmoid(fake_logits.detach()).mean(),
        }

    def generate(self, n: int, generator: torch.Generator | None = None,
                 labels: torch.Tensor | None = None, **options) -> torch.Tensor:
        """n images in [-1, 1] with G in eval mode (BatchNorm running statistics)."""
        z = torch.randn(n, self.cfg["nz"], generator=generator).to(self.device)
        with evaluating(self.nets["G"]):
            return torch.cat([self.nets["G"](chunk) for chunk in z.split(256)])

    def preview(self) -> tuple[torch.Tensor, int]:
        with evaluating(self.nets["G"]):
            return self.nets["G"](self.fixed_z), 8

    def example_inputs(self) -> dict[str, tuple[torch.Tensor, ...]]:
        size, c = self.cfg["image_size"], self.info["channels"]
        return {"G": (torch.zeros(2, self.cfg["nz"], device=self.device),),
                "D": (torch.zeros(2, c, size, size, device=self.device),)}
