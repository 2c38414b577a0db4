"""The contract between a training recipe and the engine that runs it."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from gancli import accel
from gancli.augment import diffaugment, parse_policy
from gancli.distributed import plain
from gancli.ema import batch_norms, ema_update, make_ema, warmed_decay
from gancli.errors import GancliError
from gancli.nets.spectral import apply_spectral_norm
from gancli.registry import ModelSpec


@contextmanager
def evaluating(*nets: nn.Module) -> Iterator[None]:
    """Eval mode and no autograd for the block, then each net's previous mode back."""
    modes = [net.training for net in nets]
    try:
        with torch.no_grad():
            for net in nets:
                net.eval()
            yield
    finally:
        for net, mode in zip(nets, modes, strict=True):
            net.train(mode)


class Trainer(ABC):
    """Owns a model's networks and optimizers and knows one optimisation step.

    The engine owns everything else (epochs, progress, checkpoints, resume, grids, logs),
    so a recipe only says what a step does and what its metrics are called.
    """

    # metric key -> column title in the epoch table; every train_step returns these keys
    metrics: dict[str, str] = {}
    # metric keys drawn per step in loss_curves.png
    curves: tuple[str, ...] = ()
    # nets that judge images (--spectral-norm) and nets that make them (--ema)
    discriminators: tuple[str, ...] = ("D",)
    generators: tuple[str, ...] = ("G",)

    def __init__(self, spec: ModelSpec, cfg: dict, info: dict, device: torch.device,
                 optimizers: bool = True) -> None:
        self.spec, self.cfg, self.info, self.device = spec, cfg, info, device
        nets = spec.build_nets(cfg, info)
        if cfg.get("spectral_norm"):
            for name in self.discriminators:
                apply_spectral_norm(nets[name])
        if cfg.get("ema"):
            nets.update({f"{name}_ema": make_ema(nets[name]) for name in self.generators})
        self.nets: dict[str, nn.Module] = {k: v.to(device) for k, v in nets.items()}
        if cfg.get("channels_last"):
            accel.channels_last(self.nets.values())
        self.diffaug_policy = parse_policy(cfg.get("diffaug") or "")
        self.amp = accel.amp_dtype(cfg.get("amp"), device)
        # fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == torch.float16)
        # sampling needs none, and creating one imports torch._dynamo (1 s of start-up)
        self.opts: dict[str, torch.optim.Optimizer] = (self.make_optimizers() if optimizers
                                                       else {})
        self.ema_updates = 0  # for the EMA warm-up
        self.ema_stale: set[str] = set()  # EMA copies whose BatchNorm statistics are old

    def adam(self, params, **kwargs) -> torch.optim.Adam:
        """The optimizer every recipe uses, with the device's fastest implementation."""
        return accel.adam(params, self.device, **kwargs)

    def run_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What the engine calls per batch: train_step under --amp's autocast, then
        after_step (EMA) in full precision."""
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            out = self.train_step(batch)
        self.scaler.update()  # once per iteration, after every optimizer stepped
        self.after_step()
        return out

    def optimize(self, name: str, loss: torch.Tensor, clip: float | None = None) -> None:
        """Backward `loss` into optimizer `name`'s parameters and step it (loss-scaled under
        --amp fp16; gradients clipped to norm `clip` if given)."""
        opt = self.opts[name]
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if clip is not None:
            self.scaler.unscale_(opt)
            params = [p for group in opt.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, clip)
        self.scaler.step(opt)

    def diffaug(self, x: torch.Tensor) -> torch.Tensor:
        """DiffAugment (--diffaug) for every image a discriminator sees, real or fake."""
        return diffaugment(x, self.diffaug_policy) if self.diffaug_policy else x

    def after_step(self) -> None:
        """Called by the engine after each train_step: moves the EMA copies (--ema), with
        warm-up, and marks their BatchNorm statistics for renewal."""
        if self.cfg.get("ema"):
            decay = warmed_decay(self.cfg["ema"], self.ema_updates)
            for name in self.generators:
                ema_update(self.nets[f"{name}_ema"], plain(self.nets[name]), decay)
                self.ema_stale.add(name)
            self.ema_updates += 1

    def calibrate_ema(self, name: str) -> None:
        """Give EMA copy `name` BatchNorm statistics that fit its weights. Recipes that can
        draw the generator's inputs recompute them (NoiseGAN); by default the live net's
        are copied, which is right only while the weights barely differ."""
        ema, net = self.nets[f"{name}_ema"], plain(self.nets[name])
        for e, b in zip(ema.buffers(), net.buffers(), strict=True):
            e.copy_(b)

    def fresh_ema(self) -> None:
        """Renew the statistics of every EMA copy that has moved since its last renewal."""
        for name in sorted(self.ema_stale):
            if batch_norms(self.nets[f"{name}_ema"]):
                with torch.no_grad():
                    self.calibrate_ema(name)
        self.ema_stale.clear()

    def epoch_hooks(self) -> list:
        """`hooks.EpochHook`s this recipe wants run between epochs (e.g. test accuracy)."""
        return []

    def frozen(self, name: str) -> nn.Module:
        """A discriminator as a generator's step calls it: outside DDP, because its
        gradients are not wanted there and DDP would all-reduce them every step."""
        return plain(self.nets[name])

    def sampler(self, name: str = "G") -> nn.Module:
        """The network to sample from: its EMA copy when --ema is on (never a DDP wrapper:
        only rank 0 samples)."""
        if name in self.ema_stale:
            self.fresh_ema()
        return plain(self.nets.get(f"{name}_ema", self.nets[name]))

    @abstractmethod
    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Each recipe chooses its optimizers."""

    @abstractmethod
    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One optimisation step; returns detached 0-d tensors (no host sync)."""

    @abstractmethod
    def preview(self) -> tuple[torch.Tensor, int]:
        """Images in [-1, 1] for the per-epoch grid, from fixed inputs, and the row length."""

    def comparison(self, real: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
        """Titled image batches shown side by side in real_vs_fake.png."""
        fake, _ = self.preview()
        return [("real", real["image"][: len(fake)]), ("generated", fake)]

    def batch_transform(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Random jitter this recipe wants on every real batch, or None. The engine applies
        it to all images of a batch at once (`data.jointly`), so pairs stay aligned."""
        return None

    def use_data(self, tensors: dict[str, torch.Tensor]) -> None:
        """Called once with the loaded dataset (uint8): recipes whose previews start from
        real inputs (image-to-image) keep a fixed few here."""
        return None

    def summaries(self) -> list[tuple[str, list[str], list[list[str]]]]:
        """Extra tables for `inspect`, as (title, column names, rows of cells)."""
        return []

    @abstractmethod
    def example_inputs(self) -> dict[str, tuple[torch.Tensor, ...]]:
        """One input per network, so `inspect` can trace output shapes."""

    # what an exported sampling network's output is called (gancli export --format onnx)
    export_output = "images"

    def export_inputs(self, name: str, n: int, generator: torch.Generator
                      ) -> dict[str, torch.Tensor]:
        """Named inputs of network `name` for a batch of n, with values it meets when
        sampling: ONNX export traces with them and checks onnxruntime against PyTorch on
        them. By default one image in [-1, 1] (image-to-image generators, classifiers)."""
        (x,) = self.example_inputs()[name]
        return {"image": torch.rand(n, *x.shape[1:], generator=generator) * 2 - 1}

    def export_notes(self) -> dict:
        """What else a user of the exported networks needs (e.g. a diffusion schedule),
        written into onnx.json."""
        return {}

    @property
    def conditional(self) -> bool:
        """Whether generate() takes class labels (a recipe may decide from its config)."""
        return self.spec.conditional

    def generate(self, n: int, generator: torch.Generator | None = None,
                 labels: torch.Tensor | None = None, **options) -> torch.Tensor:
        """n new images in [-1, 1]; `options` are the spec's sample_options."""
        raise GancliError(f"{self.spec.name} does not generate images from noise")

    def sample_nrow(self, n: int, labels: torch.Tensor | None) -> int:
        """Row length of `sample`'s grid of n images: as square as possible unless a recipe
        lays its samples out in meaningful rows (e.g. one per class)."""
        return math.ceil(math.sqrt(n))

    def extra_grids(self) -> dict[str, tuple[torch.Tensor, int]]:
        """Further pictures the last generate() drew (e.g. a denoising trajectory) as
        {file suffix: (images, row length)}; `sample` writes each next to its grid."""
        return {}

    def translate(self, images: torch.Tensor, **options) -> tuple[torch.Tensor, dict]:
        """Map input images in [-1, 1] to outputs; `options` are the spec's translate_options.

        Returns the outputs and numbers worth printing (e.g. PSNR), possibly empty.
        """
        raise GancliError(f"{self.spec.name} does not translate images")

    def train(self, mode: bool = True) -> None:
        for net in self.nets.values():
            net.train(mode)

    def state_dict(self) -> dict:
        self.fresh_ema()  # a checkpoint (and its export) samples as it is
        return {
            "nets": {k: plain(v).state_dict() for k, v in self.nets.items()},
            "opts": {k: v.state_dict() for k, v in self.opts.items()},
            "scaler": self.scaler.state_dict(),
            "ema_updates": self.ema_updates,
        }

    def load_state_dict(self, state: dict, optimizers: bool = True) -> None:
        """Load weights (and optimizer state); an exported checkpoint holds only the
        networks that sample, so the others keep their fresh initialisation."""
        for k, net in self.nets.items():
            if k in state["nets"] or not state.get("exported"):
                plain(net).load_state_dict(state["nets"][k])
        if optimizers:
            for k, opt in self.opts.items():
                opt.load_state_dict(state["opts"][k])
            if state.get("scaler") and self.scaler.is_enabled():
                self.scaler.load_state_dict(state["scaler"])
        # runs saved before the base class counted them: DDPM counted its steps
        self.ema_updates = state.get("ema_updates", state.get("steps", 0))
        self.ema_stale.clear()
