"""Multi-process training under torchrun: DistributedDataParallel, one process per device.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them `World` is a single process
and every method here is a no-op, so the engine has one code path for both.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from gancli.errors import GancliError

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> World:
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)),
                   int(env.get("LOCAL_RANK", 0)))

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0 alone writes checkpoints, grids and logs and prints progress."""
        return self.rank == 0

    def start(self, device: torch.device) -> torch.device:
        """Join the process group (NCCL between GPUs, gloo on CPUs); each process takes
        the GPU of its local rank."""
        if not self.enabled:
            return device
        if device.type == "cuda":
            if torch.cuda.device_count() <= self.local_rank:
                raise GancliError(f"process {self.local_rank} has no GPU of its own "
                                  f"({torch.cuda.device_count()} visible); use "
                                  "--nproc_per_node <= the GPU count")
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        elif device.type != "cpu":
            raise GancliError(f"multi-process training runs on CUDA or CPU, not {device.type}")
        if not dist.is_initialized():
            # rank 0 renders grids (and FID) between epochs while the others wait
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                    timeout=timedelta(minutes=60))
        return device

    def stop(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    def share(self, fn: Callable[[], T]) -> T:
        """fn's result on rank 0, given to every rank; its GancliError is raised on all, so
        no rank waits forever for a rank that failed."""
        if not self.enabled:
            return fn()
        box: list[Any] = [None]
        if self.main:
            try:
                box = [("ok", fn())]
            except GancliError as exc:
                box = [("error", str(exc))]
        dist.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            raise GancliError(value)
        return value

    def gather(self, obj: T) -> list[T]:
        """Every rank's obj, on every rank (e.g. the RNG states a checkpoint keeps)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj)
        return out

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """The average of x over ranks (logged losses describe all processes' batches)."""
        if self.enabled:
            x = x.clone()
            dist.all_reduce(x)
            x /= self.size
        return x

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank if it is true on one (Ctrl-C reaches ranks at different
        steps; all must stop at the same one)."""
        if not self.enabled:
            return flag
        t = torch.tensor([float(flag)], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def wrap(self, nets: dict[str, nn.Module], sync_bn: bool) -> None:
        """Wrap each trained network in DDP in place (gradients averaged over ranks during
        backward; rank 0's weights and buffers broadcast at the start). EMA copies are
        not trained: they stay plain, get rank 0's values once and then move identically."""
        if not self.enabled:
            if sync_bn:
                raise GancliError("--sync-bn only applies under torchrun with more than "
                                  "one process")
            return
        for name, net in list(nets.items()):
            if name.endswith("_ema") or not any(p.requires_grad for p in net.parameters()):
                for tensor in net.state_dict().values():
                    dist.broadcast(tensor, src=0)
                continue
            device = next(net.parameters()).device
            if sync_bn:
                if device.type != "cuda":
                    raise GancliError("--sync-bn needs GPUs: PyTorch's SyncBatchNorm has no "
                                      "CPU kernel")
                net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
            nets[name] = DistributedDataParallel(
                net, device_ids=[device.index] if device.type == "cuda" else None)


def plain(net: nn.Module) -> nn.Module:
    """The network inside a DDP wrapper (what is saved, sampled from and averaged into
    EMA), or the network itself."""
    return net.module if isinstance(net, DistributedDataParallel) else net
