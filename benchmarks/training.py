"""Training cases for bench.py: each model built and fed exactly as `gancli train` builds and
feeds it, the plain-PyTorch DCGAN-tutorial loop it is compared with, and the timing loop
that splits a step into data / forward+backward / optimizer.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from gancli import accel, data, engine, pairs, registry, runs
from gancli.nets.dcgan import Discriminator, Generator, init_weights
from gancli.trainers.base import Trainer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SYNTHETIC_IMAGES = 512  # stand-in dataset size when a shared dataset is absent


@dataclass(frozen=True)
class Case:
    """One model at one size: config overrides, and the shared dataset it needs (a random
    stand-in of the same shape is used when ../shared/data lacks it: speed does not
    depend on pixel values)."""

    model: str
    options: dict[str, Any]
    needs: Path | None = None
    note: str = ""


CASES: dict[str, Case] = {
    "dcgan-32": Case("dcgan", {"dataset": "mnist-mini", "image_size": 32, "batch_size": 128}),
    "dcgan-64": Case("dcgan", {"dataset": "mnist-mini", "image_size": 64, "batch_size": 128}),
    "cgan-28": Case("cgan", {"dataset": "mnist-mini", "batch_size": 128}),
    "wgan-gp-32": Case("wgan-gp", {"dataset": "mnist-mini", "image_size": 32,
                                   "batch_size": 128},
                       note="a step is one critic step; G steps once per n_critic (5) steps"),
    "pix2pix-256": Case("pix2pix", {"dataset": "facades", "data_root": str(SHARED),
                                    "image_size": 256, "ngf": 64, "ndf": 64},
                        needs=SHARED / "facades", note="the paper's size and width"),
    "pix2pix-128": Case("pix2pix", {"dataset": "facades", "data_root": str(SHARED),
                                    "image_size": 128, "ngf": 64, "ndf": 64},
                        needs=SHARED / "facades"),
    "pix2pix-128-thin": Case("pix2pix", {"dataset": "facades", "data_root": str(SHARED),
                                         "image_size": 128, "ngf": 32, "ndf": 32},
                             needs=SHARED / "facades", note="the shipped facades recipe's width"),
    "cyclegan-64": Case("cyclegan", {"dataset": "grumpy_cats", "data_root": str(SHARED),
                                     "image_size": 64}, needs=SHARED / "grumpy_cats"),
    "ddpm-28": Case("ddpm", {"dataset": "mnist-mini"}),
    "ddpm-32": Case("ddpm", {"dataset": f"folder:{SHARED / 'cifar10_sample'}",
                             "image_size": 32}, needs=SHARED / "cifar10_sample"),
}


def config(name: str, levers: dict[str, Any] | None = None) -> dict[str, Any]:
    """The merged config `gancli train` would use for this case and speed levers."""
    case = CASES[name]
    cfg = registry.get(case.model).config({**case.options, **(levers or {})})
    cfg["data_root"] = cfg["data_root"] or str(data.default_root())
    return cfg


@cache
def case_data(name: str) -> tuple[dict[str, torch.Tensor], dict, str]:
    """The case's whole dataset as uint8 tensors (runs.load_data), its info, and what it
    is; decoded once per run, since speed levers do not change the data."""
    case, cfg = CASES[name], config(name)
    spec = registry.get(case.model)
    if case.needs is None or case.needs.is_dir():
        tensors, info, _ = runs.load_data(spec, cfg)
        return tensors, info, cfg["dataset"].rsplit("/", 1)[-1]
    return (*synthetic(spec, cfg), "synthetic")


def synthetic(spec: registry.ModelSpec, cfg: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Random uint8 RGB images shaped like the real data (pairs stored at their jitter size)."""
    g = torch.Generator().manual_seed(0)
    size = pairs.load_size(cfg) if spec.data != "images" else cfg["image_size"]
    shape = (SYNTHETIC_IMAGES, 3, size, size)
    keys = ("image",) if spec.data == "images" else ("A", "B")
    tensors = {k: torch.randint(0, 256, shape, generator=g, dtype=torch.uint8) for k in keys}
    info = {"dataset": "synthetic", "channels": 3, "image_size": cfg["image_size"],
            "num_classes": 0, "classes": [], "num_images": SYNTHETIC_IMAGES}
    return tensors, info


def build(name: str, levers: dict[str, Any], device: torch.device
          ) -> tuple[Trainer, data.Batches]:
    """Trainer and batches as engine._train makes them (seed, tune, build, use_data, the
    recipe's batch transform or --augment, --compile), without a run folder."""
    cfg = config(name, levers)
    tensors, info, _ = case_data(name)
    cfg["image_size"] = info["image_size"]
    torch.manual_seed(cfg["seed"])
    accel.tune(device)
    trainer = runs.build_trainer(cfg, info, device)
    trainer.use_data(tensors)
    augment = engine.AUGMENTS[cfg.get("augment") or "none"]
    batches = data.Batches(tensors, cfg["batch_size"], cfg["seed"], device,
                           transform=trainer.batch_transform() or augment)
    if cfg.get("compile"):
        accel.compile_nets(trainer.nets)
    trainer.train(True)
    return trainer, batches


@dataclass
class Loop:
    """A training loop to time: an endless batch iterator, a step that trains on one batch
    and returns its image count, the optimizers (timed through their hooks), and how many
    steps make one repeating cycle (WGAN-GP: n_critic critic steps, one of them with G)."""

    batches: Iterator[Any]
    step: Callable[[Any], int]
    opts: list[torch.optim.Optimizer]
    cycle: int = 1
    info: dict[str, Any] = field(default_factory=dict)


def endless(make_epoch: Callable[[int], Any]) -> Iterator[Any]:
    epoch = 0
    while True:
        yield from make_epoch(epoch)
        epoch += 1


def gancli_loop(name: str, levers: dict[str, Any], device: torch.device) -> Loop:
    """The engine's per-batch work: run_step (autocast + train_step + after_step) and the
    running sums and loss history fit() keeps (a few tiny ops, but the engine pays them)."""
    trainer, batches = build(name, levers, device)
    keys = list(trainer.metrics)
    sums = {k: torch.zeros((), device=device) for k in keys}
    history: list[torch.Tensor] = []

    def step(batch: dict[str, torch.Tensor]) -> int:
        out = trainer.run_step(batch)
        for k in keys:
            sums[k] += out[k]
        history.append(torch.stack([out[k] for k in trainer.curves]))
        if len(history) > 1000:
            history.clear()
        return len(batch["image"] if "image" in batch else next(iter(batch.values())))

    cfg = trainer.cfg
    info = {"model": cfg["model"], "data": case_data(name)[2], "image_size": cfg["image_size"],
            "batch_size": batches.batch_size, "note": CASES[name].note}
    return Loop(endless(batches.epoch), step, list(trainer.opts.values()),
                cfg.get("n_critic", 1), info)


def tutorial_loop(size: int, batch: int, device: torch.device, workers: int) -> Loop:
    """The PyTorch DCGAN tutorial's loop: a torchvision-style dataset of PIL images,
    DataLoader workers, per-sample Resize/ToTensor/Normalize, the same architecture."""
    import torchvision.transforms as T
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    mini = data.load("mnist-mini")
    tf = T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), T.Normalize(0.5, 0.5)])

    class Digits(Dataset):
        """MNIST images as PIL, transformed one by one like torchvision.datasets.MNIST."""

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return tf(Image.fromarray(mini.images[i, 0].numpy())), 0

        def __len__(self) -> int:
            return len(mini.images)

    loader = DataLoader(Digits(), batch_size=batch, shuffle=True, num_workers=workers,
                        drop_last=True, persistent_workers=workers > 0)
    torch.manual_seed(0)
    G, D = Generator(100, 1, size, 64).to(device), Discriminator(1, size, 64).to(device)
    G.apply(init_weights)
    D.apply(init_weights)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = torch.nn.BCEWithLogitsLoss()

    def step(b: tuple[torch.Tensor, torch.Tensor]) -> int:
        real = b[0].to(device)
        n = real.size(0)
        D.zero_grad()
        bce(D(real).view(-1), torch.ones(n, device=device)).backward()
        fake = G(torch.randn(n, 100, device=device))
        bce(D(fake.detach()).view(-1), torch.zeros(n, device=device)).backward()
        opt_d.step()
        G.zero_grad()
        bce(D(fake).view(-1), torch.ones(n, device=device)).backward()
        opt_g.step()
        return n

    info = {"model": "dcgan (tutorial loop)", "data": f"mnist-mini, DataLoader x{workers}",
            "image_size": size, "batch_size": batch, "note": ""}
    return Loop(endless(lambda _: loader), step, [opt_g, opt_d], 1, info)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class OptimizerClock:
    """Time inside optimizer.step(), through the optimizers' own pre/post hooks (they
    fire under GradScaler too); off, it costs nothing and adds no device sync."""

    def __init__(self, opts: list[torch.optim.Optimizer], device: torch.device) -> None:
        self.seconds, self.device, self.on, self._t0 = 0.0, device, False, 0.0
        for opt in opts:
            opt.register_step_pre_hook(self._pre)
            opt.register_step_post_hook(self._post)

    def _pre(self, *_: Any) -> None:
        if self.on:
            sync(self.device)
            self._t0 = time.perf_counter()

    def _post(self, *_: Any) -> None:
        if self.on:
            sync(self.device)
            self.seconds += time.perf_counter() - self._t0


def run_block(loop: Loop, clock: OptimizerClock, steps: int, split: bool) -> dict[str, float]:
    """`steps` steps; with `split`, a device sync after each batch and around each optimizer
    step measures the phases (on a GPU the syncs cost overlap, so throughput comes from a
    block without them)."""
    clock.seconds, clock.on = 0.0, split
    data_s, images = 0.0, 0
    sync(clock.device)
    start = time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        batch = next(loop.batches)
        if split:
            sync(clock.device)
        data_s += time.perf_counter() - t
        images += loop.step(batch)
    sync(clock.device)
    total = time.perf_counter() - start
    clock.on = False
    ms = 1000 / steps
    return {"images_per_s": images / total, "ms_step": total * ms, "ms_data": data_s * ms,
            "ms_opt": clock.seconds * ms, "ms_fwd_bwd": (total - data_s - clock.seconds) * ms}


def block_size(loop: Loop, clock: OptimizerClock, steps: int | None, target_s: float) -> int:
    """Steps per timed block, a whole number of cycles: `steps`, or enough for `target_s`
    seconds (at least 2) judged from one more warm-up cycle."""
    if not steps:
        t = run_block(loop, clock, loop.cycle, split=False)["ms_step"] / 1000
        steps = min(10_000, max(2, math.ceil(target_s / max(t, 1e-6))))
    return math.ceil(steps / loop.cycle) * loop.cycle


def measure(loop: Loop, device: torch.device, steps: int | None, warmup: int, repeats: int,
            target_s: float) -> dict[str, float]:
    """Medians over `repeats` blocks after at least `warmup` untimed steps and a whole cycle
    (the steps that size the blocks included); `steps` None sizes blocks by time."""
    clock = OptimizerClock(loop.opts, device)
    for _ in range(max(warmup, loop.cycle) - (0 if steps else loop.cycle)):
        loop.step(next(loop.batches))
    n = block_size(loop, clock, steps, target_s)
    blocks = [run_block(loop, clock, n, split=True) for _ in range(repeats)]
    result = {k: statistics.median(b[k] for b in blocks) for k in blocks[0]}
    if device.type == "cuda":  # throughput without the phase syncs
        clean = [run_block(loop, clock, n, split=False) for _ in range(repeats)]
        for k in ("images_per_s", "ms_step"):
            result[k] = statistics.median(b[k] for b in clean)
    result["steps"] = n
    return result


class TotalOnly:
    """Stands in for FlopCounterMode's per-module tracker, whose backward hooks break
    autograd.grad with respect to an input (WGAN-GP's penalty); only the total is needed."""

    parents = {"Global"}

    def __enter__(self) -> TotalOnly:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def flop_counter() -> FlopCounterMode:
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = TotalOnly()
    return counter


def count_flops(loop: Loop) -> float:
    """FLOPs of one step (averaged over a cycle), counted by torch's FlopCounterMode on an
    fp32 loop: matmuls and convolutions, forward and backward (double backward of the
    gradient penalty included); autocast and memory format do not change the count."""
    batches = [next(loop.batches) for _ in range(loop.cycle)]
    with flop_counter() as counter:
        for batch in batches:
            loop.step(batch)
    return counter.get_total_flops() / loop.cycle
