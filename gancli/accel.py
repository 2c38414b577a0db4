"""Speed levers of training: mixed precision, memory format, compilation, fused optimizers.

Each lever is a config value (`--amp`, `--channels-last`, `--compile`) so a run records how
it was trained; benchmarks/bench.py measures what each one is worth per model and device.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from torch import nn

from gancli.errors import GancliError

AMP_CHOICES = ("off", "auto", "bf16", "fp16")


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bf16 natively here (AVX512-BF16/AMX); without it bf16 is slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def amp_dtype(choice: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype `--amp` asks for on this device; None means full fp32.

    auto: bf16 on GPUs that have it (no loss scaling needed), fp16 with a grad scaler on
    older GPUs, bf16 on CPUs with native bf16 and fp32 elsewhere.
    """
    choice = choice or "off"
    if choice not in AMP_CHOICES:
        raise GancliError(f"--amp must be one of {', '.join(AMP_CHOICES)}, not '{choice}'")
    if choice == "off":
        return None
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        if choice == "auto":
            return torch.bfloat16 if bf16 else torch.float16
        if choice == "bf16" and not bf16:
            raise GancliError("--amp bf16: this GPU has no bf16; use --amp fp16")
        return torch.bfloat16 if choice == "bf16" else torch.float16
    if device.type == "cpu":
        if choice == "fp16":
            raise GancliError("--amp fp16 is for GPUs; on the CPU use --amp bf16")
        if choice == "auto":
            return torch.bfloat16 if cpu_has_bf16() else None
        return torch.bfloat16
    if choice == "auto":  # MPS: autocast coverage varies by macOS version
        return None
    return torch.bfloat16 if choice == "bf16" else torch.float16


def adam(params: Iterable, device: torch.device, **kwargs) -> torch.optim.Adam:
    """Adam with the fused kernel (one pass over all parameters). On this 2-core CPU the
    default per-tensor Adam took 80 ms per step for 44.6M parameters (pix2pix 128 px, 18%
    of its step) and fused 27 ms; 6.3M (DCGAN 64 px): 9.9 -> 2.5 ms."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.Adam(params, fused=fused or None, **kwargs)


def channels_last(nets: Iterable[nn.Module]) -> None:
    """NHWC weights: oneDNN and cuDNN convolutions skip layout reorders (a DCGAN step on
    the 2-core CPU: 14% faster in fp32 and bf16)."""
    for net in nets:
        net.to(memory_format=torch.channels_last)


def tune(device: torch.device) -> None:
    """Process-wide settings for training on `device`: cuDNN picks the fastest algorithm
    for the batch shapes, which stay fixed during training (drop_last)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def compile_nets(nets: dict[str, nn.Module]) -> None:
    """torch.compile every trained network in place (state_dict keys stay the same); EMA
    copies only sample once per epoch, not worth a compile."""
    # a CUDA build of torch on a machine without a GPU warns about CUDA_HOME while
    # compiling for the CPU: noise, not a problem
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    for name, net in nets.items():
        if not name.endswith("_ema"):
            net.compile()
