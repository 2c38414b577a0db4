"""pix2pix (Isola et al. 2017): a conditional GAN on aligned pairs. G maps the input to the
output; D judges (input, output) pairs patch by patch; L1 to the target keeps the layout."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gancli import pairs
from gancli.augment import diffaugment
from gancli.data import to_float
from gancli.errors import GancliError
from gancli.nets.patchgan import output_size, patchgan, receptive_field
from gancli.nets.unet import block_shapes
from gancli.registry import ModelSpec
from gancli.trainers.base import Trainer, evaluating

PREVIEW = 8  # inputs in the per-epoch grid
CHUNK = 16  # images per forward pass when translating


def _towards(pred: torch.Tensor, target: float, kind: str) -> torch.Tensor:
    """BCE with logits, or least squares (LSGAN), of raw D outputs towards a 0/1 target."""
    full = torch.full_like(pred, target)
    if kind == "lsgan":
        return F.mse_loss(pred, full)
    return F.binary_cross_entropy_with_logits(pred, full)


def d_adversarial(real: torch.Tensor, fake: torch.Tensor, kind: str) -> torch.Tensor:
    """The pix2pix/CycleGAN D loss (--loss) on raw outputs for real and fake images, halved
    as in both papers so D learns more slowly than G: bce, lsgan or hinge."""
    if kind == "hinge":
        return 0.5 * (F.relu(1 - real).mean() + F.relu(1 + fake).mean())
    return 0.5 * (_towards(real, 1.0, kind) + _towards(fake, 0.0, kind))


def g_adversarial(fake: torch.Tensor, kind: str) -> torch.Tensor:
    """G's side: D's outputs for fakes towards "real" (non-saturating), or -D for hinge."""
    return -fake.mean() if kind == "hinge" else _towards(fake, 1.0, kind)


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
    """GAN (--loss) + lambda * L1, Adam for G and D, as in the paper."""

    metrics = {"loss_d": "D loss", "g_gan": "G GAN", "l1": "L1", "d_real": "D(real)",
               "d_fake": "D(fake)"}
    curves = ("loss_d", "g_gan", "l1")

    def __init__(self, spec: ModelSpec, cfg: dict, info: dict, device: torch.device,
                 optimizers: bool = True) -> None:
        if "gan_loss" in cfg:  # a run from before --loss replaced --gan-loss keeps its loss
            cfg = {**{k: v for k, v in cfg.items() if k != "gan_loss"}, "loss": cfg["gan_loss"]}
        super().__init__(spec, cfg, info, device, optimizers)

    @property
    def keys(self) -> tuple[str, str]:
        """(input, target) names in a batch of {"A", "B"}."""
        return ("A", "B") if self.cfg["direction"] == "AtoB" else ("B", "A")

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        betas = (self.cfg["beta1"], self.cfg["beta2"])
        return {k: self.adam(self.nets[k].parameters(), lr=self.cfg["lr"], betas=betas)
                for k in ("G", "D")}

    def batch_transform(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        return pairs.real_transform(self.cfg, paired=True, channels=self.info["channels"])

    def use_data(self, tensors: dict[str, torch.Tensor]) -> None:
        """The first pairs, centre-cropped (un-jittered), are the preview inputs."""
        self.fixed = tuple(to_float(pairs.center_crop(tensors[k][:PREVIEW],
                                                      self.cfg["image_size"])).to(self.device)
                           for k in self.keys)

    def _score(self, pred: torch.Tensor) -> torch.Tensor:
        """D's mean verdict: a probability for BCE, the raw output for LSGAN and hinge."""
        pred = pred.detach()
        return (torch.sigmoid(pred) if self.cfg["loss"] == "bce" else pred).mean()

    def diffaug(self, x: torch.Tensor) -> torch.Tensor:
        """DiffAugment of (input, output) pairs stacked along channels: one draw per pair,
        so translation and cutout keep the two aligned, colour statistics per image."""
        return (diffaugment(x, self.diffaug_policy, self.info["channels"])
                if self.diffaug_policy else x)

    def judge(self, x: torch.Tensor, y: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """D's patch outputs for (input, output) pairs, DiffAugmented as one image (D as
        G's step uses it when `frozen`)."""
        D = self.frozen("D") if frozen else self.nets["D"]
        return D(self.diffaug(torch.cat([x, y], 1)))

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        G, D, kind = self.nets["G"], self.nets["D"], self.cfg["loss"]
        x, y = (batch[k] for k in self.keys)
        fake = G(x)

        real_pred, fake_pred = self.judge(x, y), self.judge(x, fake.detach())
        loss_d = d_adversarial(real_pred, fake_pred, kind)
        self.optimize("D", loss_d)

        trainable(False, D)
        g_gan = g_adversarial(self.judge(x, fake, frozen=True), kind)
        l1 = F.l1_loss(fake, y)
        self.optimize("G", g_gan + self.cfg["l1_weight"] * l1)
        trainable(True, D)

        return {"loss_d": loss_d.detach(), "g_gan": g_gan.detach(), "l1": l1.detach(),
                "d_real": self._score(real_pred), "d_fake": self._score(fake_pred)}

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """G's outputs (its EMA copy with --ema) in eval mode, in chunks."""
        G = self.sampler("G")
        with evaluating(G):
            return torch.cat([G(chunk) for chunk in x.split(CHUNK)])

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
