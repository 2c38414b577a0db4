"""gancli's speed in one table: training, speed levers, FLOP rate, sampling, FID, start-up.

    python benchmarks/bench.py                      # everything, default variants (make bench)
    python benchmarks/bench.py --quick              # a rough pass in about a minute or two
    python benchmarks/bench.py --only 'dcgan-*,tutorial-64' --variants fp32,bf16+cl
    python benchmarks/bench.py --device cuda --variants fp32,bf16,fp16,bf16+cl+compile

Cases (--only takes names or shell patterns, comma-separated):
  training   dcgan-32 dcgan-64 cgan-28 wgan-gp-32 pix2pix-256 pix2pix-128 pix2pix-128-thin
             cyclegan-64 ddpm-28 ddpm-32
             (built and fed through gancli's engine: build_trainer, load_data, Batches with
             the recipe's batch transform, trainer.run_step), and tutorial-64 / tutorial-32:
             the PyTorch DCGAN tutorial's loop (DataLoader, per-sample PIL transforms)
  other      sample-dcgan-64 sample-ddpm-28 (DDIM, 50 steps) fid-classifier fid-inception
             startup-help startup-sample (`gancli --help`, `gancli sample` of the shipped
             DCGAN, as fresh processes)

Variants (--variants, comma-separated; levers joined by +, e.g. bf16+cl+compile):
  fp32 (amp off)  bf16 / fp16 (--amp)  cl (--channels-last)  compile (--compile)
  Default: fp32, cl, and bf16, bf16+cl where the device runs bf16 natively (a CPU with
  AVX512-BF16/AMX, a bf16 GPU), plus fp16 on CUDA. compile only when asked (slow warm-up).

A training step's time is split into data (the next batch, its transform included),
optimizer (inside optimizer.step(), timed by optimizer hooks) and forward+backward (the
rest: losses, autocast, EMA, the engine's running sums). Rows are medians over --repeats
blocks after warm-up; a block is --steps steps, or by default as many as fill about a second.
GFLOP/s: FLOPs of one step counted once by torch's FlopCounterMode, over the median step
time; % peak compares it with a large matmul in the variant's dtype on the same device.
Nothing here asserts a timing: the numbers are for people.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import platform
import re
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

import inference
import training
from gancli import accel, runs
from gancli.errors import GancliError

HERE = Path(__file__).resolve().parent
LEVERS: dict[str, dict[str, Any]] = {
    "fp32": {"amp": "off"}, "bf16": {"amp": "bf16"}, "fp16": {"amp": "fp16"},
    "cl": {"channels_last": True}, "compile": {"compile": True},
}
TUTORIALS = {"tutorial-64": 64, "tutorial-32": 32}
DEFAULT_OFF = {"tutorial-32"}  # selectable with --only
TARGET = "target: dcgan-64 >= 2.5x the tutorial loop's images/s, data <= 5% of a step"
console = Console(stderr=True)


@dataclass(frozen=True)
class Settings:
    """The run's knobs after --quick and the device have filled in the defaults."""

    device: torch.device
    variants: list[str]
    steps: int | None  # None: size each block by time
    block_s: float
    warmup: int
    repeats: int
    workers: int
    threads: int | None
    sample_n: dict[str, int]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.split("\n")[1:]))
    p.add_argument("--quick", action="store_true",
                   help="short blocks, 1 repeat, fp32 and the best amp only, small samples")
    p.add_argument("--only", default="", help="case names or patterns, comma-separated")
    p.add_argument("--variants", default="", help="e.g. fp32,bf16,cl,bf16+cl,compile")
    p.add_argument("--steps", type=int, help="steps per timed block (default: ~1 s of them)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default 2, quick 1)")
    p.add_argument("--repeats", type=int, help="timed blocks per row (default 3, quick 1)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the tutorial")
    p.add_argument("--json", type=Path, help="results file (default: benchmarks/results/"
                                             "<device>.json; partial runs: results/scratch/)")
    return p.parse_args(argv)


def default_variants(device: torch.device, quick: bool) -> list[str]:
    """The levers that can pay off here; bf16 on a CPU without native bf16 only slows."""
    bf16 = inference.native_bf16(device)
    if device.type == "mps":
        return ["fp32"]
    if quick:
        return ["fp32", "bf16+cl"] if bf16 else ["fp32"]
    names = ["fp32", "cl"] + (["bf16", "bf16+cl"] if bf16 else [])
    return names + (["fp16"] if device.type == "cuda" else [])


def levers(variant: str, device: torch.device) -> dict[str, Any]:
    """Config overrides of a variant name such as bf16+cl (no precision named: fp32; no
    cl: NCHW, whatever the model's default), so each row shows exactly its levers."""
    out: dict[str, Any] = {"amp": "off", "channels_last": False}
    for name in variant.split("+"):
        if name not in LEVERS:
            raise GancliError(f"unknown lever '{name}' in variant '{variant}' "
                              f"(levers: {', '.join(LEVERS)})")
        out.update(LEVERS[name])
    accel.amp_dtype(out["amp"], device)  # fp16 on a CPU: a clear error before any work
    return out


def settings(args: argparse.Namespace, device: torch.device) -> Settings:
    variants = [v for v in args.variants.split(",") if v] or default_variants(device,
                                                                               args.quick)
    for v in variants:
        levers(v, device)
    return Settings(
        device=device, variants=variants, steps=args.steps,
        block_s=0.3 if args.quick else 1.0,
        warmup=args.warmup if args.warmup is not None else (1 if args.quick else 2),
        repeats=args.repeats or (1 if args.quick else 3), workers=args.workers,
        threads=args.threads,
        sample_n={"dcgan": 64 if args.quick else 256, "ddpm": 16 if args.quick else 32},
    )


def selected(names: list[str], only: str) -> list[str]:
    """Cases matching --only's names or patterns; without --only, the default set."""
    patterns = [p for p in only.split(",") if p]
    if not patterns:
        return [n for n in names if n not in DEFAULT_OFF]
    unknown = [p for p in patterns if not fnmatch.filter(names, p)]
    if unknown:
        raise GancliError(f"--only: nothing matches {', '.join(unknown)} "
                          f"(cases: {', '.join(names)})")
    return [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]


def device_slug(device: torch.device, threads: int) -> str:
    """A file name for this machine: the GPU's name, or the CPU's model and thread count."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{device.type} {cpu_name()} {threads}t"
    name = re.sub(r"\((r|tm)\)|@.*?ghz", "", name.lower())  # Intel(R) ... CPU @ 2.10GHz
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def note(text: str) -> None:
    console.print(f"[dim]{text}[/]", highlight=False)


def guarded(name: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A case's results, or its error: one broken model must not cost the others' numbers."""
    try:
        return measure()
    except Exception as exc:
        traceback.print_exc()
        console.print(f"[red]{name} failed[/] (the other cases go on)")
        return {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}


def run_case(name: str, s: Settings, peaks: dict[str, float]) -> dict[str, Any]:
    """One case under each variant. FLOPs are counted on the first variant that is not
    compiled (its first warm-up steps; precision and layout do not change the count)."""
    flops: float | None = None
    rows: dict[str, dict] = {}
    info: dict[str, Any] = {}
    for variant in s.variants:
        lv = levers(variant, s.device)
        loop = training.gancli_loop(name, lv, s.device)
        info, warmup = loop.info, s.warmup + (3 * loop.cycle if lv.get("compile") else 0)
        if flops is None and not lv.get("compile"):
            flops = training.count_flops(loop)
            warmup -= loop.cycle
        rows[variant] = training.measure(loop, s.device, s.steps, warmup, s.repeats, s.block_s)
        note(f"{name} {variant}: {rows[variant]['images_per_s']:.0f} img/s, "
             f"{rows[variant]['ms_step']:.1f} ms/step")
    if flops is None:
        flops = training.count_flops(training.gancli_loop(name, {}, s.device))
    rows = {v: with_flops(r, flops, peaks.get(precision(levers(v, s.device), s.device)))
            for v, r in rows.items()}
    return {**info, "gflop_step": flops / 1e9, "variants": rows}


def run_tutorial(name: str, s: Settings, peaks: dict[str, float]) -> dict[str, Any]:
    """The tutorial loop in fp32 (FLOPs counted in its first warm-up step)."""
    loop = training.tutorial_loop(TUTORIALS[name], 128, s.device, s.workers)
    flops = training.count_flops(loop)
    r = training.measure(loop, s.device, s.steps, s.warmup - 1, s.repeats, s.block_s)
    note(f"{name}: {r['images_per_s']:.0f} img/s, {r['ms_step']:.1f} ms/step")
    return {**loop.info, "gflop_step": flops / 1e9,
            "variants": {"fp32": with_flops(r, flops, peaks["fp32"])}}


def precision(lv: dict[str, Any], device: torch.device) -> str:
    """The matmul peak a variant is compared with: its autocast dtype's, or fp32's."""
    dtype = accel.amp_dtype(lv.get("amp"), device)
    return next((k for k, v in inference.DTYPES.items() if v == dtype), "fp32")


def with_flops(r: dict[str, float], flops: float, peak: float | None) -> dict[str, Any]:
    """Achieved GFLOP/s, its fraction of the matmul peak (None: no peak measured for that
    dtype, e.g. bf16 on a CPU without native bf16), and data's share of a step."""
    gflops = flops / 1e9 / (r["ms_step"] / 1000)
    return {**r, "gflop_s": gflops, "peak_fraction": gflops / peak if peak else None,
            "data_fraction": r["ms_data"] / r["ms_step"]}


def other_jobs(s: Settings) -> dict[str, tuple[str, Callable[[], dict[str, Any]]]]:
    """Sampling, FID feature extraction and start-up: name -> (table label, measurement)."""
    n_gan, n_ddpm = s.sample_n["dcgan"], s.sample_n["ddpm"]

    def fid(kind: str) -> tuple[str, Callable[[], dict[str, Any]]]:
        label = f"FID features {kind}, batch {inference.fid_batch(kind, s.device)}"
        return label, lambda: inference.fid_features(kind, s.device, s.repeats)

    return {
        "sample-dcgan-64": (f"sample dcgan-64, n={n_gan}", lambda: inference.sampling(
            "dcgan-64", n_gan, s.device, s.repeats)),
        "sample-ddpm-28": (f"sample ddpm-28 DDIM 50, n={n_ddpm}", lambda: inference.sampling(
            "ddpm-28", n_ddpm, s.device, s.repeats, sampler="ddim", steps=50)),
        "fid-classifier": fid("classifier"),
        "fid-inception": fid("inception"),
        "startup-help": ("gancli --help", lambda: inference.startup(["--help"], s.repeats)),
        "startup-sample": ("gancli sample (16 images)", lambda: inference.startup(
            inference.sample_command(s.device, s.threads), s.repeats)),
    }


def run_other(label: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One sampling / FID / start-up measurement, labelled for the table."""
    r = {"label": label, **measure()}
    note(f"{label}: {r['ms_call']:.0f} ms")
    return r


COLUMNS = ["case", "variant", "img/s", "ms/step\n(or call)", "data", "fwd+bwd", "optim",
           "data %", "GFLOP/s", "% peak", "vs\ntutorial"]


def table(results: dict[str, Any], s: Settings) -> Table:
    """One table: training rows (case x variant), then sampling/FID/start-up, then peaks."""
    t = Table(title=f"gancli speed on {results['device']} (torch {torch.__version__}, "
                    f"{results['threads']} CPU thread{'s' if results['threads'] > 1 else ''})",
              caption=caption(results, s), caption_justify="left")
    for col in COLUMNS:
        left = col in ("case", "variant")
        t.add_column(col, justify="left" if left else "right", no_wrap=left)
    training_rows(t, results)
    other_rows(t, results)
    t.add_section()
    for dtype, g in results["matmul_gflops"].items():
        t.add_row(f"matmul {results['matmul_n']}² (peak)", dtype, *[""] * 6, f"{g:.0f}", "", "")
    return t


def add_ratios(training_results: dict[str, Any]) -> None:
    """vs_tutorial for every dcgan row whose size has a tutorial row (the issue's target)."""
    for case in training_results.values():
        tutorial = training_results.get(f"tutorial-{case.get('image_size')}", {})
        if case.get("model") != "dcgan" or "variants" not in tutorial:
            continue
        for r in case["variants"].values():
            r["vs_tutorial"] = r["images_per_s"] / tutorial["variants"]["fp32"]["images_per_s"]


def rate(x: float) -> str:
    """Three significant figures or so: 4321, 43.2, 4.32."""
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def training_rows(t: Table, results: dict[str, Any]) -> None:
    for name, case in results["training"].items():
        if "error" in case:
            t.add_row(name, "[red]failed[/]", *[""] * 9, end_section=True)
            continue
        for variant, r in case["variants"].items():
            ratio = f"{r['vs_tutorial']:.2f}x" if "vs_tutorial" in r else ""
            peak = r["peak_fraction"]
            t.add_row(name, variant, rate(r["images_per_s"]), f"{r['ms_step']:.1f}",
                      f"{r['ms_data']:.1f}", f"{r['ms_fwd_bwd']:.1f}", f"{r['ms_opt']:.1f}",
                      f"{100 * r['data_fraction']:.1f}", f"{r['gflop_s']:.0f}",
                      f"{100 * peak:.0f}" if peak is not None else "", ratio)
        t.add_section()


def other_rows(t: Table, results: dict[str, Any]) -> None:
    for name, r in results["other"].items():
        if "error" in r:
            t.add_row(name, "[red]failed[/]", *[""] * 9)
            continue
        images = "images_per_s" in r
        gflops = f"{r['gflop_call'] / (r['ms_call'] / 1000):.0f}" if "gflop_call" in r else ""
        t.add_row(r["label"], r.get("weights", "fp32" if images else "process"),
                  rate(r["images_per_s"]) if images else "", f"{r['ms_call']:.1f}",
                  *[""] * 4, gflops, "", "")


def caption(results: dict[str, Any], s: Settings) -> str:
    steps = f"{s.steps} steps" if s.steps else f"~{s.block_s:g} s"
    lines = [f"medians of {s.repeats} block(s) of {steps} (whole cycles) after warm-up",
             "ms columns: per training step (other rows: per call, per process)", TARGET]
    if results["device_type"] == "cuda":
        lines.append("CUDA: fp32 convolutions run in TF32 (cuDNN's default), the fp32 matmul "
                     "peak in strict fp32: fp32 rows can pass 100%")
    for name, r in {**results["training"], **results["other"]}.items():
        if "error" in r:
            lines.append(f"{name} failed: {r['error']}")
    for name, case in results["training"].items():
        if case.get("note"):
            lines.append(f"{name}: {case['note']}")
        if case.get("data") == "synthetic":
            lines.append(f"{name}: random stand-in data (../shared/data lacks it)")
    return "\n".join(lines)


def rounded(obj: Any) -> Any:
    """Floats to 4 significant figures: the noise is larger, and the file stays readable."""
    if isinstance(obj, float):
        return float(f"{obj:.4g}")
    if isinstance(obj, dict):
        return {k: rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [rounded(v) for v in obj]
    return obj


def json_path(args: argparse.Namespace, slug: str) -> Path:
    """The reference file for a full run; partial runs go to results/scratch/ (ignored)."""
    if args.json:
        return args.json
    partial = args.quick or args.only or args.variants or args.steps or args.repeats
    return HERE / "results" / ("scratch" if partial else "") / f"{slug}.json"


def run(s: Settings, wanted: list[str]) -> dict[str, Any]:
    """Every wanted case, after the machine's matmul peaks; a failed case keeps its error."""
    threads = torch.get_num_threads()
    peaks = inference.matmul_peaks(s.device)
    results: dict[str, Any] = {
        "device": device_slug(s.device, threads), "device_type": s.device.type,
        "threads": threads, "torch": torch.__version__, "argv": sys.argv[1:],
        "settings": {"variants": s.variants, "steps": s.steps, "warmup": s.warmup,
                     "repeats": s.repeats, "sample_n": s.sample_n},
        "matmul_n": inference.matmul_size(s.device), "matmul_gflops": peaks,
    }
    trainings = {**{n: partial(run_case, n, s, peaks) for n in training.CASES},
                 **{n: partial(run_tutorial, n, s, peaks) for n in TUTORIALS}}
    others = {n: partial(run_other, *job) for n, job in other_jobs(s).items()}
    results["training"] = {n: guarded(n, trainings[n]) for n in wanted if n in trainings}
    results["other"] = {n: guarded(n, others[n]) for n in wanted if n in others}
    add_ratios(results["training"])
    return results


def show(t: Table) -> None:
    """Print to stdout as wide as the table needs: a pipe or a CI log never squeezes it."""
    out = Console()
    wide = max(out.measure(t, options=out.options.update_width(1000)).maximum,
               *(len(line) for line in str(t.caption).splitlines()))
    out.width = max(out.width, wide)
    out.print(t)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        s = settings(args, runs.pick_device(args.device))
        wanted = selected([*training.CASES, *TUTORIALS, *other_jobs(s)], args.only)
    except GancliError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    results = run(s, wanted)
    show(table(results, s))
    path = json_path(args, results["device"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rounded(results), indent=1) + "\n")
    note(f"results: {path}")
    failed = [n for n, r in {**results["training"], **results["other"]}.items() if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
