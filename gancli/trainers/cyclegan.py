"""CycleGAN (Zhu et al. 2017): two generators A -> B and B -> A, two discriminators, and a
cycle-consistency loss that makes unpaired translation keep the content of its input."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from gancli import pairs
from gancli.data import to_float
from gancli.trainers.base import Trainer, evaluating
from gancli.trainers.pix2pix import (
    CHUNK,
    PREVIEW,
    d_adversarial,
    g_adversarial,
    receptive_field_table,
    trainable,
)


class ImagePool:
    """The last `size` fakes of one generator. Each query returns, per image, either the new
    fake or (half the time, once full) an older one it replaces, so D keeps seeing past
    fakes and G cannot win by oscillating (Shrivastava et al. 2017). size 0: no pool."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        # Draws on the CPU RNG: no device sync, and restored with the checkpoint.
        swap = (torch.rand(len(images)) < 0.5).tolist()
        slots = torch.randint(0, self.size, (len(images),)).tolist()
        out = []
        for image, use_old, slot in zip(images.detach(), swap, slots, strict=True):
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif use_old:
                out.append(self.images[slot])
                self.images[slot] = image
            else:
                out.append(image)
        return torch.stack(out)


def lr_factor(step: int, total: int, decay_start: float) -> float:
    """CycleGAN's schedule: the full rate until `decay_start` of the run, then linearly
    down to 0 at its end (per step, so a resumed or --max-steps run follows the same line)."""
    start = int(total * decay_start)
    if step < start or total <= start:
        return 1.0
    return max(0.0, (total - step) / (total - start))


class CycleGAN(Trainer):
    """GAN (--loss, the paper's LSGAN by default) + lambda * cycle L1 (+ identity L1), pools
    of past fakes, decaying Adam rate."""

    metrics = {"d_a": "D_A", "d_b": "D_B", "adv_ab": "G_AB adv", "adv_ba": "G_BA adv",
               "cyc_a": "cyc ABA", "cyc_b": "cyc BAB", "idt_a": "idt A", "idt_b": "idt B"}
    curves = ("d_a", "d_b", "adv_ab", "adv_ba", "cyc_a", "cyc_b")
    discriminators = ("D_A", "D_B")
    generators = ("G_AB", "G_BA")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pools = {k: ImagePool(self.cfg["pool"]) for k in ("A", "B")}
        self.step = 0

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        betas = (self.cfg["beta1"], self.cfg["beta2"])
        return {k: self.adam([p for name in names for p in self.nets[name].parameters()],
                             lr=self.cfg["lr"], betas=betas)
                for k, names in (("G", self.generators), ("D", self.discriminators))}

    def batch_transform(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        return pairs.real_transform(self.cfg, paired=False, channels=self.info["channels"])

    def use_data(self, tensors: dict[str, torch.Tensor]) -> None:
        self.fixed = {k: to_float(pairs.center_crop(tensors[k][:PREVIEW],
                                                    self.cfg["image_size"])).to(self.device)
                      for k in ("A", "B")}

    def _schedule(self) -> None:
        n = self.info["num_images"]
        total = self.cfg["epochs"] * (n // min(self.cfg["batch_size"], n))
        lr = self.cfg["lr"] * lr_factor(self.step, total, self.cfg["decay_start"])
        for opt in self.opts.values():
            for group in opt.param_groups:
                group["lr"] = lr

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        G_AB, G_BA, D_A, D_B = (self.nets[k] for k in ("G_AB", "G_BA", "D_A", "D_B"))
        kind, aug = self.cfg["loss"], self.diffaug
        a, b = batch["A"], batch["B"]
        self._schedule()
        self.step += 1

        trainable(False, D_A, D_B)
        fake_b, fake_a = G_AB(a), G_BA(b)
        adv_ab = g_adversarial(self.frozen("D_B")(aug(fake_b)), kind)
        adv_ba = g_adversarial(self.frozen("D_A")(aug(fake_a)), kind)
        cycle = self.cfg["cycle_weight"]
        with torch.set_grad_enabled(cycle > 0):  # --cycle-weight 0: measured, not trained
            cyc_a, cyc_b = F.l1_loss(G_BA(fake_b), a), F.l1_loss(G_AB(fake_a), b)
        loss_g = adv_ab + adv_ba
        idt_a = idt_b = torch.zeros((), device=self.device)
        if cycle > 0:
            loss_g = loss_g + cycle * (cyc_a + cyc_b)
            if self.cfg["identity"]:  # G_AB should leave a B image alone, G_BA an A image
                idt_a, idt_b = F.l1_loss(G_BA(a), a), F.l1_loss(G_AB(b), b)
                loss_g = loss_g + self.cfg["identity"] * cycle * (idt_a + idt_b)
        self.optimize("G", loss_g)
        trainable(True, D_A, D_B)

        old_a, old_b = self.pools["A"].query(fake_a), self.pools["B"].query(fake_b)
        d_a = d_adversarial(D_A(aug(a)), D_A(aug(old_a)), kind)
        d_b = d_adversarial(D_B(aug(b)), D_B(aug(old_b)), kind)
        self.optimize("D", d_a + d_b)

        return {k: v.detach() for k, v in {
            "d_a": d_a, "d_b": d_b, "adv_ab": adv_ab, "adv_ba": adv_ba,
            "cyc_a": cyc_a, "cyc_b": cyc_b, "idt_a": idt_a, "idt_b": idt_b}.items()}

    def _run(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Generator `name`'s outputs (its EMA copy with --ema) in eval mode, in chunks."""
        G = self.sampler(name)
        with evaluating(G):
            return torch.cat([G(chunk) for chunk in x.split(CHUNK)])

    def preview(self) -> tuple[torch.Tensor, int]:
        """Rows: A, A -> B, A -> B -> A, then B, B -> A, B -> A -> B."""
        a, b = self.fixed["A"], self.fixed["B"]
        ab, ba = self._run("G_AB", a), self._run("G_BA", b)
        return torch.cat([a, ab, self._run("G_BA", ab), b, ba, self._run("G_AB", ba)]), len(a)

    def comparison(self, real: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
        a, b = real["A"][:PREVIEW], real["B"][:PREVIEW]
        return [("A", a), ("G_AB(A)", self._run("G_AB", a)),
                ("B", b), ("G_BA(B)", self._run("G_BA", b))]

    def translate(self, images: torch.Tensor, direction: str = "AtoB",
                  **options) -> tuple[torch.Tensor, dict]:
        """Also reports how well the other generator brings the outputs back (cycle L1)."""
        there, back = ("G_AB", "G_BA") if direction == "AtoB" else ("G_BA", "G_AB")
        x = images.to(self.device)
        out = self._run(there, x)
        return out, {"cycle L1": F.l1_loss(self._run(back, out), x).item()}

    def example_inputs(self) -> dict[str, tuple[torch.Tensor, ...]]:
        size, c = self.cfg["image_size"], self.info["channels"]
        return {k: (torch.zeros(1, c, size, size, device=self.device),)
                for k in (*self.generators, *self.discriminators)}

    def summaries(self) -> list[tuple[str, list[str], list[list[str]]]]:
        return ([receptive_field_table(self.info["channels"], self.cfg)]
                if self.cfg["disc"] == "patch" else [])

    def state_dict(self) -> dict:
        """Also the pools and the schedule's step, so a resumed run continues exactly."""
        pools = {k: torch.stack(p.images) if p.images else torch.empty(0)
                 for k, p in self.pools.items()}
        return {**super().state_dict(), "pools": pools, "step": self.step}

    def load_state_dict(self, state: dict, optimizers: bool = True) -> None:
        super().load_state_dict(state, optimizers)
        if optimizers:  # training state, like the optimizers: only a resume needs it
            for k, pool in self.pools.items():
                pool.images = list(state["pools"][k].to(self.device))
            self.step = state["step"]
