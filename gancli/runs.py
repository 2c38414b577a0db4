"""A run on disk -> a ready Trainer: the device, networks (and optimizers) from a config,
a checkpoint's weights and training state, the run's data. Every command that works on a
trained run (sample, translate, fid, inspect, export, a resumed train) comes through here;
the training loop itself is gancli.engine.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from gancli import checkpoint, data, pairs, registry
from gancli.distributed import World
from gancli.errors import GancliError
from gancli.trainers.base import Trainer


def pick_device(name: str = "auto") -> torch.device:
    """`auto` prefers CUDA, then Apple's MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GancliError("--device cuda: no CUDA GPU is visible to PyTorch")
    if name == "mps" and not (getattr(torch.backends, "mps", None)
                              and torch.backends.mps.is_available()):
        raise GancliError("--device mps: Apple's Metal backend is not available here")
    if name not in ("cpu", "cuda", "mps"):
        raise GancliError(f"unknown device '{name}' (choose from auto, cpu, cuda, mps)")
    return torch.device(name)



def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def build_trainer(cfg: dict, info: dict, device: torch.device,
                  optimizers: bool = True) -> Trainer:
    """Networks (and optimizers) from a config and data info alone (no flags, no data)."""
    spec = registry.get(cfg["model"])
    # Options added to gancli after a checkpoint was written take their defaults.
    cfg = {**spec.config({}), **cfg}
    check_size(spec, cfg, info, device, optimizers)
    return spec.trainer_class()(spec, cfg, info, device, optimizers)


def check_size(spec: registry.ModelSpec, cfg: dict, info: dict, device: torch.device,
               training: bool) -> None:
    """Refuse networks that cannot fit before allocating them (a config from elsewhere may
    ask for terabytes): built on PyTorch's meta device, which holds shapes but no memory,
    their size is known from the config alone."""
    try:
        with torch.device("meta"):
            nets = spec.build_nets(cfg, info)
    except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
        raise GancliError(f"no networks can be built from this config ({first_line(exc)})"
                          ) from None
    tensors = [t for net in nets.values() for t in (*net.parameters(), *net.buffers())]
    count = sum(t.numel() for t in tensors)
    size = sum(t.numel() * t.element_size() for t in tensors)
    need = size * (4 if training else 1)  # training: weights, gradients, two Adam moments
    memory = memory_of(device)
    if memory and need > memory:
        train = f", about {_bytes(need)} to train" if training else ""
        gpu = "GPU " if device.type == "cuda" else ""
        raise GancliError(f"the networks of this config would have {count:,} parameters "
                          f"({_bytes(size)}{train}), more than the {_bytes(memory)} of {gpu}"
                          "memory here; refusing to allocate them")


def memory_of(device: torch.device) -> int | None:
    """Total memory of the device (the machine's RAM for CPU and MPS); None if unknown."""
    try:
        if device.type == "cuda":
            return torch.cuda.get_device_properties(device).total_memory
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError, RuntimeError):
        return None


def _bytes(n: float) -> str:
    """1.5 GB, 700 PB."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000:
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


@contextlib.contextmanager
def about(path: Path) -> Iterator[None]:
    """One-line errors about a checkpoint's contents name the file first."""
    try:
        yield
    except GancliError as exc:
        raise GancliError(f"{path}: {exc}") from None


def load_state(trainer: Trainer, ckpt: dict, world: World | None = None) -> None:
    """A checkpoint's weights into networks rebuilt from its config; with `world` (a
    resume) also the optimizers, the recipe's training state and this rank's RNG. Weights
    that do not fit are one line naming the first tensor that differs."""
    checkpoint.check_weights(trainer.nets, ckpt["nets"], bool(ckpt.get("exported")),
                             trainer.spec.name)
    try:
        trainer.load_state_dict(ckpt, optimizers=world is not None)
        if world is not None:
            set_rng_state(_own_rng(ckpt, world))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise GancliError(f"its training state does not fit its networks ({first_line(exc)})"
                          ) from None


def describe_data(spec: registry.ModelSpec, cfg: dict) -> dict:
    """Dataset facts (channels, size, classes) without decoding: nets are built first."""
    if spec.data == "images":
        return data.describe(cfg["dataset"], cfg["image_size"])
    return pairs.describe(cfg, paired=spec.data == "paired")


def load_data(spec: registry.ModelSpec, cfg: dict
              ) -> tuple[dict[str, torch.Tensor], dict, data.Skipped]:
    """The whole dataset as tensors for `Batches` ({"image", "label"} or {"A", "B"}), its
    info, and the files left out as unreadable, by the spec's kind of data."""
    if spec.data != "images":
        return pairs.load(cfg, paired=spec.data == "paired")
    images = data.load(cfg["dataset"], Path(cfg["data_root"]), cfg["image_size"])
    tensors = {"image": images.images}
    if images.labels is not None:
        tensors["label"] = images.labels
    return tensors, images.info(cfg["dataset"]), images.skipped


def restore(target: str, device: torch.device, root: Path | None = None,
            model: str | None = None) -> tuple[Trainer, dict]:
    """Rebuild a trained model from its checkpoint's own config: no training flags needed."""
    path = checkpoint.resolve(target, root or checkpoint.default_dir(), registry.MODELS)
    ckpt = checkpoint.load(path)
    if model and ckpt["config"]["model"] != model:
        raise GancliError(f"{path} is a {ckpt['config']['model']} checkpoint, not {model}")
    with about(path):
        trainer = build_trainer(ckpt["config"], ckpt["info"], device, optimizers=False)
        load_state(trainer, ckpt)
    trainer.train(False)
    ckpt["path"] = path
    return trainer, ckpt


def _own_rng(ckpt: dict, world: World) -> dict:
    """This rank's RNG state from a checkpoint; a run resumed with another process count
    gets fresh per-rank streams (all ranks drawing rank 0's noise would waste them)."""
    ranks = ckpt.get("rng_ranks") or [ckpt["rng"]]
    if len(ranks) == world.size:
        return ranks[world.rank]
    torch.manual_seed(ckpt["config"]["seed"] * 1_000 + 1 + world.rank + ckpt["state"]["step"])
    return {"torch": torch.get_rng_state()}


def counted(n: int, noun: str) -> str:
    """'1 step', '2 steps'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
