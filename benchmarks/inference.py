"""Everything bench.py times besides training: the machine's matmul rate (the ceiling the
achieved FLOP rates are compared with), sampling, FID feature extraction, and how long the
`gancli` command takes to start.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from gancli import accel, evaluate
from gancli.metrics import features
from training import build, flop_counter, sync

REPO = Path(__file__).resolve().parents[1]
PRETRAINED = REPO / "checkpoints" / "dcgan" / "pretrained-mnist"
FID_BATCH = evaluate.Options().batch_size  # what `gancli fid` feeds its extractor
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def native_bf16(device: torch.device) -> bool:
    """bf16 runs natively: a bf16 GPU, or a CPU with AVX512-BF16/AMX."""
    return (device.type == "cuda" and torch.cuda.is_bf16_supported()) or (
        device.type == "cpu" and accel.cpu_has_bf16())


def matmul_size(device: torch.device) -> int:
    return 8192 if device.type == "cuda" else 2048


def matmul_peaks(device: torch.device) -> dict[str, float]:
    """GFLOP/s of a large matmul per dtype worth a peak: fp32 always, bf16 where it runs
    natively, fp16 on GPUs."""
    names = ["fp32"] + (["bf16"] if native_bf16(device) else [])
    names += ["fp16"] if device.type == "cuda" else []
    return {name: matmul_gflops(device, DTYPES[name]) for name in names}


def matmul_gflops(device: torch.device, dtype: torch.dtype, min_s: float = 0.5) -> float:
    """A large square matmul's rate: the ceiling for conv-heavy training in that dtype.
    (On CUDA, fp32 matmuls follow torch's TF32 setting, off by default.)"""
    n = matmul_size(device)
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b
    sync(device)
    count, start = 0, time.perf_counter()
    while count < 3 or time.perf_counter() - start < min_s:
        a @ b
        count += 1
        if count % 4 == 0:
            sync(device)
    sync(device)
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def rate(fn: Callable[[], int], device: torch.device, repeats: int) -> dict[str, float]:
    """Median images/s and ms per call of `fn` (returns its image count), and the GFLOP it
    runs per call, counted in a first call that is also the warm-up."""
    with flop_counter() as counter:
        fn()
    times, images = [], 0
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        images = fn()
        sync(device)
        times.append(time.perf_counter() - t)
    s = statistics.median(times)
    return {"images_per_s": images / s, "ms_call": 1000 * s,
            "gflop_call": counter.get_total_flops() / 1e9}


def sampling(name: str, n: int, device: torch.device, repeats: int,
             **options: object) -> dict[str, float]:
    """trainer.generate(n) of a freshly built (untrained) model: what `gancli sample` runs
    after loading a checkpoint; weights do not change its speed."""
    trainer, _ = build(name, {}, device)
    trainer.train(False)

    def call() -> int:
        images = trainer.generate(n, generator=torch.Generator().manual_seed(0), **options)
        return len(images)

    return rate(call, device, repeats)


def random_inception_state() -> dict[str, torch.Tensor]:
    """FID Inception weights drawn at random (pytorch-fid's architecture, nothing loaded):
    extraction speed does not depend on weight values."""
    from pytorch_fid import inception as pf
    from torchvision.models import Inception3

    with mock.patch.object(pf, "load_state_dict_from_url", lambda *a, **k: None), \
            mock.patch.object(Inception3, "load_state_dict", lambda *a, **k: None):
        return pf.fid_inception_v3().state_dict()


def inception_extractor(device: torch.device) -> tuple[features.Extractor, str]:
    """gancli's Inception extractor (2048 dims), with random weights if none are cached."""
    opts = evaluate.Options(device=device)
    facts = evaluate.Facts("mnist", 1, 28)
    if features.inception_path().is_file():
        return evaluate.make_extractor("inception", facts, opts), "FID weights"
    state = random_inception_state()
    with mock.patch.object(features, "inception_state_dict", lambda _weights: state):
        return evaluate.make_extractor("inception", facts, opts), "random weights"


def fid_batch(kind: str, device: torch.device) -> int:
    """Images per timed call: gancli fid's batch, but 10 for Inception on a CPU (several
    seconds per batch there; per-image speed hardly depends on the batch on a CPU)."""
    return 10 if kind == "inception" and device.type == "cpu" else FID_BATCH


def fid_features(kind: str, device: torch.device, repeats: int) -> dict[str, Any]:
    """Images/s of `gancli fid`'s feature extraction on MNIST-shaped uint8 batches: the
    reference classifier (offline) or pytorch-fid's InceptionV3 (resizes to 299 px)."""
    if kind == "classifier":
        facts, opts = evaluate.Facts("mnist", 1, 28), evaluate.Options(device=device)
        extractor, weights = evaluate.make_extractor("classifier", facts, opts), "shipped"
    else:
        extractor, weights = inception_extractor(device)
    g = torch.Generator().manual_seed(0)
    shape = (fid_batch(kind, device), 1, 28, 28)
    images = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)

    def call() -> int:
        return len(extractor(images)["features"])

    return {**rate(call, device, repeats), "weights": weights}


def gancli_command() -> list[str]:
    """The installed `gancli` script (what users run), else `python -m gancli`."""
    exe = shutil.which("gancli")
    return [exe] if exe else [sys.executable, "-m", "gancli"]


def startup(args: list[str], repeats: int) -> dict[str, float]:
    """Median wall time of `gancli ARGS` as a fresh process (the benchmark itself has
    already brought torch and gancli into the file cache)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([*gancli_command(), *args], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return {"ms_call": 1000 * statistics.median(times)}


def sample_command(device: torch.device, threads: int | None) -> list[str]:
    """`gancli sample` of the shipped DCGAN: 16 images into a temporary PNG."""
    out = Path(tempfile.gettempdir()) / "gancli-bench-sample.png"
    args = ["sample", str(PRETRAINED), "--n", "16", "--out", str(out), "--device", device.type]
    return args + (["--num-threads", str(threads)] if threads else [])
