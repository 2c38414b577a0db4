"""Training throughput of gancli's models, against the plain PyTorch DCGAN-tutorial loop.

    python benchmarks/bench.py [--steps 20] [--repeats 3] [--device auto] [--json out.json]
                               [--only dcgan-64,baseline-64]

Each case trains for `--steps` optimizer steps after warm-up, `--repeats` times; the
table shows medians. A step's time is split into data (getting the batch), optimizer
(Adam's .step(), timed with optimizer hooks) and forward+backward (the rest).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from gancli import data, engine, registry
from gancli.nets.dcgan import Discriminator, Generator, init_weights

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

# name -> (model, dataset, image size, batch size, extra options)
CASES: dict[str, tuple[str, str, int, int, dict]] = {
    "dcgan-32": ("dcgan", "mnist-mini", 32, 128, {}),
    "dcgan-64": ("dcgan", "mnist-mini", 64, 128, {}),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class PhaseTimer:
    """Accumulates optimizer.step() time through the optimizers' own hooks."""

    def __init__(self, opts, device: torch.device) -> None:
        self.opt_seconds, self.device, self._t0 = 0.0, device, 0.0
        for opt in opts:
            opt.register_step_pre_hook(self._pre)
            opt.register_step_post_hook(self._post)

    def _pre(self, *_) -> None:
        _sync(self.device)
        self._t0 = time.perf_counter()

    def _post(self, *_) -> None:
        _sync(self.device)
        self.opt_seconds += time.perf_counter() - self._t0


def time_loop(batches, step, opts, steps: int, warmup: int, device: torch.device) -> dict:
    """Run warm-up then `steps` steps; returns ms per step by phase and images/s."""
    timer = PhaseTimer(opts, device)
    it = iter(batches())
    for _ in range(warmup):
        step(next(it))
    timer.opt_seconds, data_s, n_images = 0.0, 0.0, 0
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        batch = next(it)
        _sync(device)
        data_s += time.perf_counter() - t
        n_images += step(batch)
    _sync(device)
    total = time.perf_counter() - start
    return {"images_per_s": n_images / total, "ms_step": 1000 * total / steps,
            "ms_data": 1000 * data_s / steps, "ms_opt": 1000 * timer.opt_seconds / steps,
            "ms_fwd_bwd": 1000 * (total - data_s - timer.opt_seconds) / steps}


def endless(make_epoch):
    epoch = 0
    while True:
        yield from make_epoch(epoch)
        epoch += 1


def gancli_case(model: str, dataset: str, size: int, batch: int, extra: dict,
                device: torch.device, steps: int, warmup: int) -> dict:
    cfg = registry.get(model).config({"dataset": dataset, "image_size": size,
                                      "batch_size": batch, **extra})
    images = data.load(dataset, SHARED, size)
    trainer = engine.build_trainer(cfg, images.info(dataset), device)
    tensors = {"image": images.images}
    if images.labels is not None:
        tensors["label"] = images.labels
    batches = data.Batches(tensors, batch, 0, device)

    def step(b) -> int:
        trainer.train_step(b)
        return len(b["image"])

    return time_loop(lambda: endless(batches.epoch), step, trainer.opts.values(), steps,
                     warmup, device)


def baseline_case(size: int, batch: int, device: torch.device, steps: int, warmup: int,
                  workers: int) -> dict:
    """The DCGAN tutorial's loop: torchvision dataset, DataLoader, per-sample transforms."""
    import torchvision.transforms as T
    from torch.utils.data import DataLoader, TensorDataset

    mini = data.load("mnist-mini")

    class Digits(TensorDataset):
        """MNIST images as PIL, transformed one by one like torchvision.datasets.MNIST."""

        tf = T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), T.Normalize(0.5, 0.5)])

        def __getitem__(self, i):
            from PIL import Image

            return self.tf(Image.fromarray(mini.images[i, 0].numpy(), mode="L")), 0

        def __len__(self):
            return len(mini.images)

    loader = DataLoader(Digits(), batch_size=batch, shuffle=True, num_workers=workers,
                        drop_last=True, persistent_workers=workers > 0)
    G, D = Generator(100, 1, size, 64).to(device), Discriminator(1, size, 64).to(device)
    G.apply(init_weights)
    D.apply(init_weights)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = torch.nn.BCEWithLogitsLoss()

    def step(b) -> int:
        real = b[0].to(device)
        n = real.size(0)
        D.zero_grad()
        err_real = bce(D(real).view(-1), torch.ones(n, device=device))
        err_real.backward()
        fake = G(torch.randn(n, 100, device=device))
        err_fake = bce(D(fake.detach()).view(-1), torch.zeros(n, device=device))
        err_fake.backward()
        opt_d.step()
        G.zero_grad()
        bce(D(fake).view(-1), torch.ones(n, device=device)).backward()
        opt_g.step()
        return n

    return time_loop(lambda: endless(lambda e: loader), step, [opt_g, opt_d], steps, warmup,
                     device)


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """The machine's fp32 matrix-multiply rate, the ceiling for conv-heavy training."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t) / 1e9


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the baseline")
    p.add_argument("--only", default="", help="comma-separated case names")
    p.add_argument("--json", type=Path, default=Path("benchmarks/results.json"))
    args = p.parse_args(argv)
    device = engine.pick_device(args.device)
    torch.manual_seed(0)

    cases = {name: (lambda c=c: gancli_case(*c, device, args.steps, args.warmup))
             for name, c in CASES.items()}
    for size in (32, 64):
        cases[f"baseline-{size}"] = (lambda s=size: baseline_case(
            s, 128, device, args.steps, args.warmup, args.workers))
    wanted = [n for n in args.only.split(",") if n] or list(cases)
    results: dict[str, dict] = {}
    for name in wanted:
        runs = [cases[name]() for _ in range(args.repeats)]
        results[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{name}: {results[name]['images_per_s']:.0f} img/s", file=sys.stderr)

    table = Table(title=f"training throughput on {device} ({torch.get_num_threads()} threads), "
                        f"median of {args.repeats} x {args.steps} steps")
    for col in ("case", "img/s", "ms/step", "data", "fwd+bwd", "optimizer", "vs baseline"):
        table.add_column(col, justify="right" if col != "case" else "left")
    for name, r in results.items():
        size = name.rsplit("-", 1)[-1]
        base = results.get(f"baseline-{size}")
        ratio = f"{r['images_per_s'] / base['images_per_s']:.2f}x" if base else ""
        table.add_row(name, f"{r['images_per_s']:.0f}", f"{r['ms_step']:.1f}",
                      f"{r['ms_data']:.1f}", f"{r['ms_fwd_bwd']:.1f}", f"{r['ms_opt']:.1f}", ratio)
    Console().print(table)
    gflops = matmul_gflops(device)
    print(f"fp32 matmul: {gflops:.0f} GFLOP/s", file=sys.stderr)
    args.json.write_text(json.dumps({"device": str(device), "matmul_gflops": gflops,
                                     "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
