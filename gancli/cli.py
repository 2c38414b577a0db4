"""The command line: parse and validate options, then call into gancli. No logic lives here."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gancli import __version__, registry
from gancli.errors import GancliError

app = typer.Typer(
    name="gancli",
    help="Train, sample, translate and evaluate generative image models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
err = Console(stderr=True, soft_wrap=True)  # paths stay whole in logs


def friendly(fn):
    """Turn a GancliError into `error: ...` on stderr with exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except GancliError as exc:
            # under torchrun every process fails alike: the first one speaks for them
            if os.environ.get("RANK", "0") == "0":
                err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None
        except (MemoryError, RuntimeError) as exc:
            where = out_of_memory(exc)
            if where is None:
                raise
            err.print(f"[red]error:[/] out of {where}; try a smaller --image-size or "
                      "--batch-size", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def out_of_memory(exc: BaseException) -> str | None:
    """Which memory ran out, if this is torch.OutOfMemoryError (a RuntimeError, the GPU's),
    MemoryError or the CPU allocator's refusal; None for any other error."""
    if type(exc).__name__ == "OutOfMemoryError":
        return "GPU memory"
    text = str(exc).lower()
    if isinstance(exc, MemoryError) or "can't allocate memory" in text or "out of memory" in text:
        return "memory"
    return None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gancli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Train, sample, translate and evaluate generative image models."""


# Options shared by several commands, declared once.
Dataset = Annotated[str | None, typer.Option(
    "--dataset", "-d",
    help="mnist, fashion-mnist, cifar10, mnist-mini (embedded, offline), facades, "
         "grumpy_cats, apple2orange (image-to-image, under --data-root) or folder:PATH.")]
DataRoot = Annotated[Path | None, typer.Option(
    help="Where torchvision datasets are (or get downloaded). Default: $GANCLI_DATA or "
         "~/.cache/gancli/data.")]
ImageSize = Annotated[int | None, typer.Option(
    min=8, help="Square image size in pixels. Default: the dataset's own size.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")]
SEED_MAX = int(registry.COMMON_OPTIONS["seed"].high)  # per-process seeds are derived from it
Threads = Annotated[int | None, typer.Option(
    min=1, help="CPU threads for PyTorch (1 is fastest on a busy 2-core machine).")]


def set_threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)
Checkpoints = Annotated[Path | None, typer.Option(
    "--checkpoints-dir", help="Where runs are kept. Default: $GANCLI_CHECKPOINTS or "
                              "./checkpoints.")]


# Each model's own options (--nz, --ngf, ...) come from the registry, so a new model adds
# options without touching this file; they are listed under every command that takes them.
MODEL_OPTIONS = {"allow_extra_args": True, "ignore_unknown_options": True}
def options_epilog(title: str, kind: str) -> str:
    """Help text listing each model's `kind` options (options, sample_options, ...)."""
    return (f"{title} (--name VALUE, defaults in brackets; `gancli inspect MODEL` explains "
            "each):\n\n") + "\n\n".join(
        f"{name}: {spec.describe_options(getattr(spec, kind))}"
        for name, spec in registry.MODELS.items() if getattr(spec, kind)) + "\n"


OPTIONS_EPILOG = options_epilog("Model options", "options")


def model_options(model: str, ctx: typer.Context) -> dict:
    return registry.get(model).parse_options(list(ctx.args))


@app.command(context_settings=MODEL_OPTIONS, epilog=OPTIONS_EPILOG)
@friendly
def train(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model to train: "
                                              + ", ".join(registry.MODELS) + ".")],
    dataset: Dataset = None,
    data_root: DataRoot = None,
    image_size: ImageSize = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Total epochs (also when "
                                                           "resuming). Default 5.")] = None,
    batch_size: Annotated[int | None, typer.Option(
        min=1, help="Images per step (per process under torchrun). Default 128.")] = None,
    seed: Annotated[int | None, typer.Option(min=0, max=SEED_MAX,
                                             help="Random seed (init, noise, batch "
                                                  "order). Default 0.")] = None,
    max_steps: Annotated[int | None, typer.Option(
        min=1, help="Stop after this many optimizer steps in all (smoke runs, fixed "
                    "budgets).")] = None,
    save_every_steps: Annotated[int | None, typer.Option(
        min=1, help="Also checkpoint every N steps (always at each epoch's end).")] = None,
    fid_every: Annotated[int | None, typer.Option(
        "--eval-every", "--fid-every",
        min=1, help="Evaluate (--metrics) after every N-th complete epoch and the last one: "
                    "logged, shown in the epoch table, best checkpoint kept as best.pt.")] = None,
    fid_samples: Annotated[int | None, typer.Option(
        "--eval-samples", "--fid-samples",
        min=2, help="Samples (and real images) per evaluation. Default 2000.")] = None,
    features: Annotated[str | None, typer.Option(
        help="Evaluation features during training: inception (pytorch-fid) or classifier "
             "(reference CNN, offline). Default inception.")] = None,
    metrics: Annotated[str | None, typer.Option(
        help="What --eval-every measures: fid, kid, pr (precision, recall), dc (density, "
             "coverage), is, intra_fid, or all. Default fid.")] = None,
    name: Annotated[str | None, typer.Option(help="Run name. Default: a timestamp.")] = None,
    resume: Annotated[str | None, typer.Option(
        help="Continue a run (folder, checkpoint or model name for its newest run) "
             "exactly where it stopped, optimizer state and step count included.")] = None,
    amp: Annotated[str | None, typer.Option(
        help="Mixed precision: off, auto (bf16 on GPUs that have it, else fp16 with loss "
             "scaling; bf16 on CPUs with native bf16), bf16 or fp16. Default off.")] = None,
    channels_last: Annotated[bool | None, typer.Option(
        "--channels-last/--no-channels-last",
        help="NHWC memory format for the networks. Default on for dcgan, cdcgan, acgan, "
             "wgan-gp and ddpm (measured faster on CPUs); with --amp bf16, ddpm is faster "
             "with --no-channels-last.")] = None,
    compile: Annotated[bool | None, typer.Option(
        "--compile/--no-compile", help="torch.compile the networks (slow first steps, "
                                       "faster after).")] = None,
    sync_bn: Annotated[bool | None, typer.Option(
        "--sync-bn/--no-sync-bn", help="Under torchrun: BatchNorm statistics over all "
                                       "processes' batches (SyncBatchNorm, GPUs).")] = None,
    log: Annotated[str | None, typer.Option(
        "--log", "--loggers",
        help="Where the run records itself, comma-separated: files (always: metrics.jsonl, "
             "losses.csv, grids, loss curves), tensorboard (RUN/tensorboard/ for "
             "`tensorboard --logdir checkpoints`), html (RUN/index.html, one self-contained "
             "page rewritten each epoch). Default files. Under torchrun write --loggers: "
             "torchrun takes --log for its own options.")] = None,
    device: Device = "auto",
    num_threads: Threads = None,
    checkpoints_dir: Checkpoints = None,
) -> None:
    """Train a model; writes checkpoints, sample grids and loss curves to its run folder.

    Several processes (GPUs, or CPUs over gloo): torchrun --nproc_per_node N -m gancli train.
    """
    from gancli import engine

    overrides = {
        "dataset": dataset, "data_root": str(data_root) if data_root else None,
        "image_size": image_size, "epochs": epochs, "batch_size": batch_size, "seed": seed,
        "max_steps": max_steps, "save_every_steps": save_every_steps,
        "fid_every": fid_every, "fid_samples": fid_samples, "fid_features": features,
        "eval_metrics": metrics,
        "amp": amp, "channels_last": channels_last, "compile": compile, "sync_bn": sync_bn,
        "log": log, **model_options(model, ctx),
    }
    code = engine.train(model, overrides, name=name, resume=resume, device=device,
                        num_threads=num_threads, root=checkpoints_dir)
    raise typer.Exit(code)


@app.command(context_settings=MODEL_OPTIONS,
             epilog=options_epilog("Model options of sample", "sample_options"))
@friendly
def sample(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(
        help="Model name (its newest run), run folder, run name or checkpoint file.")],
    n: Annotated[int, typer.Option("--n", "-n", min=1, help="How many images.")] = 64,
    out: Annotated[Path, typer.Option("--out", "-o", help="Grid PNG to write.")] = Path(
        "samples.png"),
    out_dir: Annotated[Path | None, typer.Option(
        help="Also write each image as its own PNG into this folder.")] = None,
    digit: Annotated[int | None, typer.Option(
        help="Class to generate on digit datasets (conditional models).")] = None,
    label: Annotated[str | None, typer.Option(
        help="Class to generate, by name or index (conditional models).")] = None,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Seed for the noise.")] = 0,
    device: Device = "auto",
    num_threads: Threads = None,
    checkpoints_dir: Checkpoints = None,
) -> None:
    """Generate images from a trained model into a grid (and optionally single PNGs)."""
    set_threads(num_threads)
    from gancli import runs, sampling

    if label is not None and digit is not None:
        raise GancliError("give the class once: --digit or --label")
    sampling.sample(target, n, out, out_dir=out_dir,
                    wanted=label if label is not None else None if digit is None else str(digit),
                    seed=seed, device=runs.pick_device(device), root=checkpoints_dir,
                    args=list(ctx.args),
                    n_given=ctx.get_parameter_source("n").name == "COMMANDLINE")


@app.command(context_settings=MODEL_OPTIONS, epilog=OPTIONS_EPILOG)
@friendly
def inspect(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(
        help="Model name (shows its networks) or a run folder/checkpoint (also its config, "
             "progress and files).")],
    dataset: Dataset = None,
    image_size: ImageSize = None,
    checkpoints_dir: Checkpoints = None,
) -> None:
    """Show a model's layers with output shapes and parameter counts, or a run's state."""
    from gancli import inspect as inspection

    if target in registry.MODELS and not Path(target).exists():
        inspection.inspect_model(target, {"dataset": dataset, "image_size": image_size,
                                          **model_options(target, ctx)})
    elif dataset or image_size or ctx.args:
        raise GancliError(f"--dataset, --image-size and model options build a model to show; "
                          f"{target} is a run, shown with its own config (drop them)")
    else:
        inspection.inspect_run(target, checkpoints_dir)


@app.command(context_settings=MODEL_OPTIONS,
             epilog=options_epilog("Model options of translate", "translate_options"))
@friendly
def translate(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model that translates ("
                                              + ", ".join(name for name, spec in
                                                          registry.MODELS.items()
                                                          if spec.translate_options)
                                              + "; its newest run), or a run: MODEL/RUN, "
                                                "folder or checkpoint.")],
    input_dir: Annotated[Path, typer.Argument(help="Folder of images (searched recursively).")],
    checkpoint: Annotated[str | None, typer.Option(
        help="Run folder, run name or checkpoint. Default: the model's newest run.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the outputs (same "
                                                          "relative names).")] = Path(
        "translated"),
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 16,
    metrics: Annotated[str | None, typer.Option(
        "--metrics", "-m",
        help="Set metrics of the outputs against the reference images: fid, kid, pr, dc. "
             "Default fid,kid when the features need no download.")] = None,
    reference: Annotated[Path | None, typer.Option(
        help="Folder of images the outputs are compared with (FID, KID). Default: the "
             "targets of A|B pairs; for CycleGAN the other domain (the input folder's "
             "A/B twin, else the run's training images).")] = None,
    features: Annotated[str, typer.Option(
        help="inception (pytorch-fid) or classifier (a reference CNN: --classifier).")
    ] = "inception",
    inception_weights: Annotated[Path | None, typer.Option(
        help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth, for offline use.")] = None,
    classifier: Annotated[str | None, typer.Option(
        help="Classifier run for --features classifier.")] = None,
    device: Device = "auto",
    num_threads: Threads = None,
    checkpoints_dir: Checkpoints = None,
) -> None:
    """Translate every image in a folder with a trained model; A|B pairs are scored (L1,
    PSNR, SSIM) and the outputs compared with reference images (FID, KID)."""
    set_threads(num_threads)
    from gancli import evaluate, runs
    from gancli.translate import direction_of, inputs, translate_folder

    if model in registry.MODELS:
        target, expected = checkpoint or model, model
    elif checkpoint:
        raise GancliError(f"'{model}' is not a model ({', '.join(registry.MODELS)}); give a "
                          "run either as MODEL/RUN or with --checkpoint, not both")
    else:
        target, expected = model, None
    trainer, ckpt = runs.restore(target, runs.pick_device(device), checkpoints_dir,
                                 model=expected)
    if not trainer.spec.translate_options:
        from gancli.evaluate import can_generate

        hint = " (try `gancli sample`)" if can_generate(trainer) else ""
        raise GancliError(f"{ckpt['path']} is a {trainer.spec.name} run, which does not "
                          f"translate images{hint}")
    options = trainer.spec.parse_options(list(ctx.args), trainer.spec.translate_options)
    opts = evaluate.Options(device=trainer.device, features=features, classifier=classifier,
                            inception_weights=inception_weights, root=checkpoints_dir)
    inputs(input_dir, out)  # a bad folder is an error before any reference is measured
    scoring = evaluate.translation_scoring(trainer, input_dir, direction_of(trainer, options),
                                           metrics, opts, reference)
    translate_folder(trainer, input_dir, out, options, batch_size, ckpt["path"], scoring)


@app.command()
@friendly
def fid(
    a: Annotated[str | None, typer.Argument(
        help="Folder of images, statistics .npz, dataset (mnist, cifar10:test, folder:PATH) "
             "or run/checkpoint (sampled). Alone, a run is compared with its dataset; "
             "omitted, the newest run is.")] = None,
    b: Annotated[str | None, typer.Argument(help="The other side, same kinds.")] = None,
    n: Annotated[int, typer.Option("--n", "-n", min=2, help="Samples drawn from a run; at "
                                                            "most this many from data.")] = 10_000,
    features: Annotated[str, typer.Option(
        help="inception (pytorch-fid, comparable with papers) or classifier (the reference "
             "CNN's penultimate layer; offline).")] = "inception",
    dims: Annotated[int, typer.Option(help="Inception features: 64, 192, 768 or "
                                           "2048.")] = 2048,
    inception_weights: Annotated[Path | None, typer.Option(
        help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth, for offline use. Default: "
             "the torch hub cache, else downloaded.")] = None,
    classifier: Annotated[str | None, typer.Option(
        help="Classifier run for --features classifier and class accuracy. Default: one "
             "trained on the same dataset, or the shipped MNIST one.")] = None,
    metrics: Annotated[str, typer.Option(
        "--metrics", "-m",
        help="Comma-separated: fid, kid, pr (precision, recall), dc (density, coverage), is "
             "(Inception features), intra_fid (conditional runs: mean per-class FID), or "
             "all (every one that applies).")] = "all",
    bootstrap: Annotated[int, typer.Option(
        min=0, help="K resamples: a 95% interval for FID and KID (both sides redrawn) and "
                    "for precision, recall, density and coverage (the images each averages "
                    "over); 10 gives a rough one, 50 or more a steady one; 0: none.")] = 0,
    save_stats: Annotated[Path | None, typer.Option(
        help="Write the features of B (or of the only side) to a .npz that pytorch-fid "
             "also reads (mu, sigma).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass.")] = 50,
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX,
                                      help="Seed for the samples' noise.")] = 0,
    data_root: DataRoot = None,
    device: Device = "auto",
    num_threads: Threads = None,
    checkpoints_dir: Checkpoints = None,
) -> None:
    """FID, KID, precision/recall, density/coverage (and IS, intra-class FID) of B against A
    from one feature pass each (runs are sampled); per-class accuracy for conditional
    runs."""
    set_threads(num_threads)
    from gancli import evaluate, runs

    opts = evaluate.Options(n=n, batch_size=batch_size, device=runs.pick_device(device),
                            dims=dims, features=features, inception_weights=inception_weights,
                            classifier=classifier, data_root=data_root, seed=seed,
                            root=checkpoints_dir, metrics=metrics, bootstrap=bootstrap)
    evaluate.fid(a, b, opts, save_stats)


@app.command()
@friendly
def export(
    target: Annotated[str, typer.Argument(help="Run folder, run name, checkpoint or model.")],
    out: Annotated[Path, typer.Argument(help="Folder to write the exported run into.")],
    fmt: Annotated[str, typer.Option(
        "--format", help="pt: a sample-only checkpoint that sample, translate, fid and inspect "
                         "read. onnx: each sampling network as NAME.onnx (any batch size; "
                         "ddpm: the denoiser), refused unless onnxruntime matches PyTorch to "
                         "1e-4 on the same inputs; needs onnx, onnxscript and onnxruntime "
                         "(the onnx extra).")] = "pt",
    fp32: Annotated[bool, typer.Option(help="Keep fp32 weights (default: fp16, half the "
                                            "size; ONNX graphs are always fp32).")] = False,
    checkpoints_dir: Checkpoints = None,
) -> None:
    """Write a small sample-only copy of a run into a new folder: its sampling networks
    (PyTorch or ONNX), config, logs, grids."""
    from gancli.export import export_run

    export_run(target, out, half=not fp32, root=checkpoints_dir, fmt=fmt)


def main() -> None:
    """The `gancli` command: click's own usage errors (a missing argument, --epochs 0) are
    one `error:` line too, like gancli's."""
    try:  # newer typer carries its own copy of click
        from typer._click.exceptions import NoArgsIsHelpError, UsageError
    except ImportError:
        from click.exceptions import NoArgsIsHelpError, UsageError

    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:
        exc.show()  # bare `gancli`: the help
        raise SystemExit(2) from None
    except UsageError as exc:
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        err.print(f"[red]error:[/] {exc.format_message()}{where}", highlight=False,
                  soft_wrap=True)
        raise SystemExit(2) from None
    except typer.Abort:  # Ctrl-C outside a command's own handling
        raise SystemExit(130) from None
    raise SystemExit(code or 0)
