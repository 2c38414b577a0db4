"""pix2pix (Isola et al. 2017): a conditional GAN on aligned pairs. G maps the input to the
output; D judges (input, output) pairs patch by patch; L1 to the target keeps the layout."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from gancli import pairs
from gancli.data import to_float
from gancli.errors import GancliError
from gancli.nets.patchgan import output_size, patchgan, receptive_field
from gancli.nets.unet import block_shapes
from gancli.trainers.base import Trainer, evaluating

PREVIEW = 8  # inputs in the per-epoch grid
CHUNK = 16  # images per forward pass when translating


def adversarial(pred: torch.Tensor, real: bool, kind: str) -> torch.Tensor:
    """The pix2pix/CycleGAN GAN loss on raw D outputs: BCE with logits, or least squares
    (LSGAN) towards 1 for real and 0 for fake. G uses the real target (non-saturating)."""
    target = torch.full_like(pred, 1.0 if real else 0.0)
    if kind == "lsgan":
        return F.mse_loss(pred, target)
    return F.binary_cross_entropy_with_logits(pred, target)


def trainable(on: bool, *nets: nn.Module) -> None:
    """Switch parameter gradients: off for D while G steps (they would be thrown away)."""
    for net in nets:
        net.requires_grad_(on)


def receptive_field_table(cin: int, cfg: dict) -> tuple[str, list[str], list[list[str]]]:
    """Receptive field and patch grid of a PatchGAN with 1..6 stride-2 layers, computed
    from the convs `patchgan` builds (width does not change the geometry, so ndf=1)."""
    size, current = cfg["image_size"], cfg["disc_layers"]
    rows = []
    for n in range(1, 7):
        net = patchgan(cin, 1, n)
        grid = output_size(net, size)
        rows.append([str(n), f"{receptive_field(net)}x{receptive_field(net)}",
                     f"{grid}x{grid}" if grid > 0 else "input too small",
                     "<- this model" if n == current else ""])
    return (f"PatchGAN receptive field by --disc-layers ({size}x{size} input)",
            ["--disc-layers", "receptive field", "output patches", ""], rows)


class Pix2Pix(Trainer):
    """GAN (BCE or LSGAN) + lambda * L1, Adam for G and D, as in the paper."""

    metrics = {"loss_d": "D loss", "g_gan": "G GAN", "l1": "L1", "d_real": "D(real)",
               "d_fake": "D(fake)"}
    curves = ("loss_d", "g_gan", "l1")

    @property
    def keys(self) -> tuple[str, str]:
        """(input, target) names in a batch of {"A", "B"}."""
        return ("A", "B") if self.cfg["direction"] == "AtoB" else ("B", "A")

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        betas = (self.cfg["beta1"], self.cfg["beta2"])
        return {k: torch.optim.Adam(net.parameters(), lr=self.cfg["lr"], betas=betas)
                for k, net in self.nets.items()}

    def batch_transform(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        return partial(pairs.jitter, size=self.cfg["image_size"]) if self.cfg["jitter"] else None

    def use_data(self, tensors: dict[str, torch.Tensor]) -> None:
        """The first pairs, centre-cropped (un-jittered), are the preview inputs."""
        self.fixed = tuple(to_float(pairs.center_crop(tensors[k][:PREVIEW],
                                                      self.cfg["image_size"])).to(self.device)
                           for k in self.keys)

    def _score(self, pred: torch.Tensor) -> torch.Tensor:
        """D's mean verdict: a probability for BCE, the raw output for LSGAN."""
        pred = pred.detach()
        return (torch.sigmoid(pred) if self.cfg["gan_loss"] == "bce" else pred).mean()

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        G, D, kind = self.nets["G"], self.nets["D"], self.cfg["gan_loss"]
        x, y = (batch[k] for k in self.keys)
        fake = G(x)

        real_pred = D(torch.cat([x, y], 1))
        fake_pred = D(torch.cat([x, fake.detach()], 1))
        loss_d = 0.5 * (adversarial(real_pred, True, kind) + adversarial(fake_pred, False, kind))
        self.opts["D"].zero_grad(set_to_none=True)
        loss_d.backward()
        self.opts["D"].step()

        trainable(False, D)
        g_gan = adversarial(D(torch.cat([x, fake], 1)), True, kind)
        l1 = F.l1_loss(fake, y)
        self.opts["G"].zero_grad(set_to_none=True)
        (g_gan + self.cfg["l1_weight"] * l1).backward()
        self.opts["G"].step()
        trainable(True, D)

        return {"loss_d": loss_d.detach(), "g_gan": g_gan.detach(), "l1": l1.detach(),
                "d_real": self._score(real_pred), "d_fake": self._score(fake_pred)}

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        with evaluating(self.nets["G"]):
            return torch.cat([self.nets["G"](chunk) for chunk in x.split(CHUNK)])

    def preview(self) -> tuple[torch.Tensor, int]:
        """Rows: inputs, outputs, targets."""
        x, y = self.fixed
        return torch.cat([x, self._run(x), y]), len(x)

    def comparison(self, real: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
        x, y = (real[k][:PREVIEW] for k in self.keys)
        return [("input", x), ("output", self._run(x)), ("target", y)]

    def translate(self, images: torch.Tensor, direction: str | None = None,
                  **options) -> tuple[torch.Tensor, dict]:
        if direction and direction != self.cfg["direction"]:
            raise GancliError(f"this pix2pix run translates {self.cfg['direction']} (its "
                              f"training --direction); it cannot translate {direction}")
        return self._run(images.to(self.device)), {}

    def example_inputs(self) -> dict[str, tuple[torch.Tensor, ...]]:
        size, c = self.cfg["image_size"], self.info["channels"]
        return {"G": (torch.zeros(1, c, size, size, device=self.device),),
                "D": (torch.zeros(1, 2 * c, size, size, device=self.device),)}

    def summaries(self) -> list[tuple[str, list[str], list[list[str]]]]:
        size, c = self.cfg["image_size"], self.info["channels"]
        with evaluating(self.nets["G"]):
            blocks = block_shapes(self.nets["G"], torch.zeros(1, c, size, size,
                                                              device=self.device))
        unet = (f"U-Net blocks of G for a {size}x{size} input (decoder outputs are joined "
                "with the encoder output of the same size)",
                ["block", "output (C, H, W)", "then"],
                [[name, str(shape), join] for name, shape, join in blocks])
        return [unet, receptive_field_table(2 * c, self.cfg)]
