"""The training engine shared by every model: epochs, progress, checkpoints, resume, logs.

A recipe (gancli.trainers) only knows one optimisation step; everything a user sees while
training, and everything that makes a run resumable, lives here once.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from gancli import accel, augment, checkpoint, data, pairs, registry, rundir, viz
from gancli.distributed import World
from gancli.errors import GancliError, WriteError
from gancli.trainers.base import Trainer

console = Console(stderr=True, soft_wrap=True)  # paths stay whole in logs

# --augment: applied to real batches on the device ("basic" is the resize + scaling that
# loading always does)
AUGMENTS = {"none": None, "basic": None, "deluxe": augment.deluxe}

# Options that may change when a run is resumed (when and how fast it trains, where its
# data is, how it is evaluated); everything else (networks, data, losses) is the run's own.
RESUMABLE = ("epochs", "max_steps", "save_every_steps", "amp", "channels_last", "compile",
             "sync_bn", "data_root", "fid_every", "fid_samples", "fid_features", "eval_metrics")


class Diverged(Exception):
    """A loss became NaN or infinite: training stops without overwriting the checkpoint."""


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


@dataclass
class RunState:
    """Where a run stands (epochs, steps, steps into this epoch) and how it got there."""

    epoch: int = 0
    step: int = 0
    step_in_epoch: int = 0
    seconds: float = 0.0  # training wall time over all invocations
    commands: list[str] = field(default_factory=list)  # every command that trained this run

    def as_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "step_in_epoch": self.step_in_epoch,
                "seconds": self.seconds, "commands": list(self.commands)}


@dataclass
class Run:
    """A run folder and the files the engine keeps in it."""

    dir: Path
    log: list[str] = field(default_factory=list)
    saved: int | None = None  # the step of the checkpoint on disk (None: none written yet)

    @property
    def checkpoint(self) -> Path:
        return self.dir / checkpoint.FILENAME

    @property
    def metrics(self) -> Path:
        return self.dir / "metrics.jsonl"

    @property
    def losses(self) -> Path:
        return self.dir / "losses.csv"

    def sample_path(self, epoch: int) -> Path:
        return self.dir / "samples" / f"epoch_{epoch:03d}.png"

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """A write of the run that fails (disk full, no permission, a file-size limit) ends
        in one line: what could not be written, the OS's reason, and what is intact."""
        try:
            yield
        except (OSError, WriteError) as exc:
            failed = exc if isinstance(exc, WriteError) else WriteError.of(exc, self.dir)
            kept = (f"the checkpoint of step {self.saved} is intact ({self.checkpoint})"
                    if self.saved is not None else
                    "no checkpoint had been written yet, so nothing of the run is kept")
            raise GancliError(f"{failed}; {kept}") from None


class EpochHook:
    """Work between epochs (held-out accuracy, FID every N epochs). Its values join the
    epoch's row, so they reach metrics.jsonl and the epoch table like the losses do."""

    columns: dict[str, str] = {}  # row key -> epoch table title

    def after_epoch(self, trainer: Trainer, row: dict) -> dict[str, float]:
        """Values for this epoch's row; none when there is nothing to measure this epoch."""
        return {}

    def after_save(self, run: Run, row: dict) -> None:
        """The epoch's checkpoint is written (e.g. keep a copy of the best one)."""

    def finish(self, run: Run) -> None:
        """Training stopped (e.g. summarise the values over all epochs)."""


def epoch_hooks(cfg: dict, trainer: Trainer) -> list[EpochHook]:
    """The recipe's own hooks, and the --metrics every N epochs when --eval-every asks for
    it (built before training, so a missing feature extractor fails at once)."""
    hooks = list(trainer.epoch_hooks())
    if cfg.get("fid_every"):
        from gancli.evaluate import TrainingEval

        hooks.append(TrainingEval(cfg, trainer))
    return hooks


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
        raise GancliError(f"no networks can be built from this config ({_first_line(exc)})"
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


def _first_line(exc: BaseException) -> str:
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
        raise GancliError(f"its training state does not fit its networks ({_first_line(exc)})"
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


def export_run(target: str, out: Path, half: bool = True, root: Path | None = None) -> None:
    """Copy a run as generator-only (fp16) weights plus its config, logs and pictures."""
    trainer, ckpt = restore(target, torch.device("cpu"), root)
    # only what samples: the discriminators go, and so does a generator whose EMA copy
    # samples in its place (half the size)
    keep = [k for k in trainer.nets
            if k not in trainer.discriminators and f"{k}_ema" not in trainer.nets]
    src: Path = ckpt["path"].parent
    out = Path(out)
    holder = rundir.held_by(out)
    if holder:
        raise GancliError(f"cannot export into {out}: {rundir.busy(out, holder)}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GancliError(f"export writes a new folder; {out} already exists"
                          + ("" if out.is_dir() else " as a file") + " (pick another name)")
    slim = checkpoint.export(ckpt, keep, half)
    slim["state"] = {**slim["state"], "commands": [*slim["state"].get("commands", []),
                                                   shlex.join(["gancli", *sys.argv[1:]])]}
    existed = out.exists()
    try:
        checkpoint.save(out / checkpoint.FILENAME, slim)
        for name in ("config.json", "metrics.jsonl", "losses.csv", "loss_curves.png",
                     "real_vs_fake.png", "samples"):
            if (src / name).is_dir():
                shutil.copytree(src / name, out / name, dirs_exist_ok=True)
            elif (src / name).exists():
                shutil.copy2(src / name, out / name)
    except OSError as exc:
        shutil.rmtree(out, ignore_errors=True)  # no half export is left to be mistaken
        if existed:
            out.mkdir(exist_ok=True)
        reason = exc.strerror or _first_line(exc)
        raise GancliError(f"cannot write {exc.filename or out}: {reason}; the run {src} is "
                          "untouched and the partial export was removed") from None
    size = (out / checkpoint.FILENAME).stat().st_size / 1e6
    console.print(f"exported {', '.join(keep)} ({'fp16' if half else 'fp32'}, {size:.1f} MB) "
                  f"-> {out}")


def _prepare_run(model: str, overrides: dict, name: str | None, resume: str | None,
                 root: Path, held: contextlib.ExitStack) -> tuple[dict, Path, Path | None]:
    """The run's config, folder and the checkpoint to resume from: a new folder, or the
    resumed run's config with the options that may change on resume. The run's lock goes
    into `held` before anything in the folder is read or changed."""
    if resume:
        if name:
            raise GancliError("--resume continues a run in its own folder; it takes no --name")
        path = checkpoint.resolve(resume, root, registry.MODELS)
        if path.name != checkpoint.FILENAME and (path.parent / checkpoint.FILENAME).exists():
            raise GancliError(
                f"{path} is not the run's latest state ({path.parent / checkpoint.FILENAME}"
                "); resuming from it would overwrite that. To go on from it, copy it as "
                f"{checkpoint.FILENAME} into a new folder and --resume that")
        held.enter_context(contextlib.closing(rundir.lock(path.parent)))
        ckpt = checkpoint.load(path)
        cfg = dict(ckpt["config"])
        if cfg["model"] != model:
            raise GancliError(f"--resume {resume} is a {cfg['model']} run, not {model}")
        if ckpt.get("exported"):
            raise GancliError(f"{path} is an exported (sample-only) checkpoint without "
                              "optimizer state; resume from the original run instead")
        fixed = [k for k, v in overrides.items()
                 if v is not None and k not in RESUMABLE and cfg.get(k) != v]
        if fixed:
            flag = registry.flag_of
            raise GancliError(
                f"{flag(fixed[0])} is fixed by the run ({cfg.get(fixed[0])}); on --resume "
                f"only {', '.join(map(flag, RESUMABLE))} may change")
        cfg.update({k: overrides[k] for k in RESUMABLE if overrides.get(k) is not None})
        cfg["max_steps"] = overrides.get("max_steps")  # a stop condition for one invocation
        for stale in path.parent.glob(f".{checkpoint.FILENAME}.*.tmp"):  # a killed save's
            stale.unlink(missing_ok=True)
        return cfg, path.parent, path
    if name and (Path(name).name != name or name in (".", "..")):
        raise GancliError(f"--name is a folder name under {root / model}, not a path: '{name}'")
    cfg = registry.get(model).config(overrides)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    # a timestamp by default; runs started within the same second get -2, -3, ...
    names = [name] if name else [f"{stamp}{f'-{i}' if i > 1 else ''}" for i in range(1, 1000)]
    run = Run(root / model / names[0])
    try:
        run.dir.parent.mkdir(parents=True, exist_ok=True)
        for candidate in names:
            run = Run(root / model / candidate)
            try:
                run.dir.mkdir()  # atomic: of two starts with one name, the second fails here
                break
            except FileExistsError:
                if name:
                    raise GancliError(_exists(run)) from None
        held.enter_context(contextlib.closing(rundir.lock(run.dir)))
        (run.dir / "samples").mkdir()
    except OSError as exc:
        raise GancliError(f"cannot create run folder {run.dir}: {exc.strerror}") from None
    return cfg, run.dir, None


def _exists(run: Run) -> str:
    """Why a new run cannot take an existing folder, and what to do instead."""
    holder = rundir.held_by(run.dir)
    if holder:
        return f"run {run.dir} exists and is being trained by another process ({holder})"
    if run.checkpoint.exists():
        return f"run {run.dir} exists; pass --resume {run.dir} or another --name"
    return (f"run folder {run.dir} exists without a checkpoint (a start stopped before its "
            "first save?); remove it or pass another --name")


def train(model: str, overrides: dict, *, name: str | None = None, resume: str | None = None,
          device: str = "auto", num_threads: int | None = None,
          root: Path | None = None) -> int:
    """Everything `gancli train` does; returns the process exit code. Under torchrun each
    process runs this; rank 0 alone prepares the run folder and writes to it."""
    if num_threads:
        torch.set_num_threads(num_threads)
    world = World.from_env()
    console.quiet = not world.main
    dev = world.start(pick_device(device))
    accel.amp_dtype(overrides.get("amp"), dev)  # before a run folder is made
    try:
        with contextlib.ExitStack() as held:  # rank 0's lock on its run, for as long as it trains
            return _train(model, overrides, name, resume, dev, world,
                          Path(root or checkpoint.default_dir()), held)
    finally:
        world.stop()


def _train(model: str, overrides: dict, name: str | None, resume: str | None,
           dev: torch.device, world: World, root: Path, held: contextlib.ExitStack) -> int:
    cfg, run_dir, resume_from = world.share(
        lambda: _prepare_run(model, overrides, name, resume, root, held))
    code = 1
    try:
        code = _start(cfg, Run(run_dir), resume_from, dev, world)
        return code
    finally:
        # a new run that failed before its first checkpoint (missing data, a bad option, a
        # loss that diverged at once, Ctrl-C twice, a full disk) leaves no half-made folder
        # behind
        if (code and resume_from is None and world.main
                and not (run_dir / checkpoint.FILENAME).exists()):
            shutil.rmtree(run_dir, ignore_errors=True)
            with contextlib.suppress(OSError):  # the model's folder, if this was its first
                run_dir.parent.rmdir()


def _start(cfg: dict, run: Run, resume_from: Path | None, dev: torch.device,
           world: World) -> int:
    """Data, networks and the resumed state of a prepared run; then `fit`."""
    ckpt = checkpoint.load(resume_from) if resume_from else None
    done = RunState(**ckpt["state"]) if ckpt else None
    if done is not None and finished(done, cfg):  # before any data is loaded or file written
        limit = f"--max-steps {cfg['max_steps']}" if cfg["max_steps"] else ""
        console.print(f"nothing to do: the run has trained {counted(done.epoch, 'epoch')} "
                      f"({counted(done.step, 'step')}); raise --epochs {cfg['epochs']} "
                      + (f"or {limit} " if limit else "") + "to train on")
        return 0
    # absolute, so the run's data is found from any folder (fid, resume); a resumed run
    # whose folder is gone (another machine) falls back to the default
    root = data.run_root(cfg) if resume_from else cfg.get("data_root") or data.default_root()
    cfg["data_root"] = str(Path(root).expanduser().resolve())
    torch.manual_seed(cfg["seed"])
    spec = registry.get(cfg["model"])
    info = describe_data(spec, cfg)
    cfg["image_size"] = info["image_size"]
    accel.tune(dev)
    with about(resume_from) if resume_from else contextlib.nullcontext():
        trainer = build_trainer(cfg, info, dev)  # validates the size before loading any data
    tensors, trainer.info, skipped = load_data(spec, cfg)
    if world.main:
        _list_unreadable(run, skipped)
    trainer.use_data(tensors)
    augment = AUGMENTS[cfg.get("augment") or "none"]
    batches = data.Batches(tensors, cfg["batch_size"], cfg["seed"], dev,
                           transform=trainer.batch_transform() or augment,
                           rank=world.rank, world=world.size)

    state = RunState()
    if world.enabled:  # same initial weights (DDP broadcasts rank 0's), different noise
        torch.manual_seed(cfg["seed"] * 1_000 + 1 + world.rank)
    if ckpt is not None:
        with about(resume_from):
            load_state(trainer, ckpt, world)
        state = RunState(**ckpt["state"])
        run.saved = state.step
        if world.main:
            with run.writing():
                _truncate_logs(run, state.step)
    world.wrap(trainer.nets, bool(cfg.get("sync_bn")))
    if cfg.get("compile"):
        accel.compile_nets(trainer.nets)
    launcher = (["torchrun", f"--nproc_per_node={world.size}", "-m", "gancli"]
                if world.enabled else ["gancli"])
    state.commands.append(shlex.join([*launcher, *sys.argv[1:]]))
    if world.main:
        with run.writing():
            checkpoint.atomic_write(run.dir / "config.json", json.dumps(
                {**cfg, "info": trainer.info, "commands": state.commands}, indent=2).encode())
    procs = f" x {world.size} processes" if world.enabled else ""
    amp = {torch.bfloat16: ", amp bf16", torch.float16: ", amp fp16"}.get(trainer.amp, "")
    console.print(f"[bold]{cfg['model']}[/] on {cfg['dataset']} ({trainer.info['num_images']} "
                  f"images, {cfg['image_size']}px) on {dev}{procs}{amp} -> {run.dir}"
                  + (f"  [dim](resumed at {where(state)})[/]" if ckpt else ""))
    hooks = epoch_hooks(cfg, trainer) if world.main else []
    return fit(trainer, batches, run, cfg, state, hooks, world)


def _list_unreadable(run: Run, skipped: data.Skipped) -> None:
    """Files left out of the data: one warning line, every one listed in the run folder
    (a resume with them fixed removes the old list)."""
    listing = run.dir / "unreadable.txt"
    if not skipped:
        listing.unlink(missing_ok=True)
        return
    with run.writing():
        checkpoint.atomic_write(listing, data.skipped_listing(skipped))
    console.print(f"[yellow]warning:[/] {data.skipped_warning(skipped, listing)}")


def finished(state: RunState, cfg: dict) -> bool:
    """The run has its --epochs, or this invocation's --max-steps."""
    max_steps = cfg["max_steps"]
    return state.epoch >= cfg["epochs"] or (max_steps is not None and state.step >= max_steps)


def counted(n: int, noun: str) -> str:
    """'1 step', '2 steps'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def where(state: RunState) -> str:
    """'step 120 (epoch 3 of the run, 20 steps in)': the same words when a run stops and
    when it resumes."""
    into = f", {counted(state.step_in_epoch, 'step')} in" if state.step_in_epoch else ""
    return f"step {state.step} (epoch {state.epoch + 1}{into})"


def _own_rng(ckpt: dict, world: World) -> dict:
    """This rank's RNG state from a checkpoint; a run resumed with another process count
    gets fresh per-rank streams (all ranks drawing rank 0's noise would waste them)."""
    ranks = ckpt.get("rng_ranks") or [ckpt["rng"]]
    if len(ranks) == world.size:
        return ranks[world.rank]
    torch.manual_seed(ckpt["config"]["seed"] * 1_000 + 1 + world.rank + ckpt["state"]["step"])
    return {"torch": torch.get_rng_state()}


def _truncate_logs(run: Run, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from (a crash can leave some),
    and a last line that a kill cut short."""
    if run.metrics.exists():
        lines = [ln for ln in rundir.complete_lines(run.metrics) if json.loads(ln)["step"] <= step]
        checkpoint.atomic_write(run.metrics, "".join(ln + "\n" for ln in lines).encode())
    if run.losses.exists():
        head, *rows = rundir.complete_lines(run.losses) or [None]
        if head is None:  # not even the header was complete: the next append writes it
            run.losses.unlink()
            return
        rows = [r for r in rows if int(r.split(",")[0]) <= step]
        checkpoint.atomic_write(run.losses, "\n".join([head, *rows, ""]).encode())


class _Interrupt:
    """First Ctrl-C (or SIGTERM: a cluster's preemption, torchrun stopping its workers) asks
    the loop to save and stop; a second one stops at once."""

    signals = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _Interrupt:
        try:
            self.previous = {sig: signal.signal(sig, self._handle) for sig in self.signals}
        except ValueError:  # not the main thread (e.g. inside a test runner's worker)
            self.previous = {}
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        console.print(f"\n[yellow]{signal.Signals(signum).name}: finishing this step and "
                      "saving a checkpoint (Ctrl-C again aborts without saving)[/]")

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _epoch_table(trainer: Trainer, header: bool, columns: dict[str, str]) -> Table:
    table = Table(show_header=header, box=None, pad_edge=False)
    table.add_column("epoch", justify="right", width=7)
    table.add_column("step", justify="right", width=8)
    for title in [*trainer.metrics.values(), *columns.values()]:
        table.add_column(title, justify="right", width=max(9, len(title)))
    table.add_column("img/s", justify="right", width=8)
    table.add_column("sec", justify="right", width=7)
    return table


def _table_width(table: Table) -> int:
    return sum((c.width or 8) + 2 for c in table.columns)  # 2: the padding between columns


def fit(trainer: Trainer, batches: data.Batches, run: Run, cfg: dict, state: RunState,
        hooks: list[EpochHook] | None = None, world: World | None = None) -> int:
    """Train until `epochs` (or `max_steps`) are done, Ctrl-C, or a loss diverges. Every
    rank runs this loop in step; only rank 0 (`world.main`) writes files."""
    hooks = hooks or []
    world = world or World()
    columns = {k: title for hook in hooks for k, title in hook.columns.items()}
    rng_devices = [trainer.device] if trainer.device.type == "cuda" else []
    epochs = cfg["epochs"]
    save_every = cfg["save_every_steps"]
    per_epoch = len(batches)
    # The running losses cost a host sync: refresh them twice a second; under torchrun
    # every N steps instead, because all ranks must average them at the same step.
    log_every = max(1, min(25, per_epoch // 20))
    last_log = time.perf_counter()
    keys = list(trainer.metrics)
    with torch.random.fork_rng(devices=[trainer.device] if trainer.device.type == "cuda"
                               else []):  # a random transform must not move training's RNG
        real = next(batches.epoch(0)) if per_epoch else None
    first_row = True
    trainer.train(True)

    epoch_start: float | None = None  # while set, its time is not in state.seconds yet

    def save() -> None:
        rngs = world.gather(rng_state())  # each rank's own stream, for an exact resume
        seconds = state.seconds + (time.perf_counter() - epoch_start if epoch_start else 0.0)
        if world.main:
            with run.writing():
                checkpoint.save(run.checkpoint, {
                    "config": cfg, "info": trainer.info,
                    "state": {**state.as_dict(), "seconds": seconds},
                    "rng": rngs[0], "rng_ranks": rngs, **trainer.state_dict(),
                })
            run.saved = state.step

    halt = False  # Ctrl-C (or SIGTERM) reached some rank: every rank stops at this step
    with _Interrupt() as interrupt:
        while not finished(state, cfg) and not halt:
            epoch_no = state.epoch + 1
            sums = {k: torch.zeros((), device=trainer.device) for k in keys}
            history: list[torch.Tensor] = []
            steps_here, images_here = 0, 0
            start = epoch_start = time.perf_counter()
            progress = Progress(
                TextColumn(f"epoch {epoch_no}/{epochs}"), BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
                console=console, transient=True,
            )
            try:
                with progress:
                    task = progress.add_task("train", total=per_epoch,
                                             completed=state.step_in_epoch, status="")
                    for batch in batches.epoch(state.epoch, state.step_in_epoch):
                        out = trainer.run_step(batch)
                        for k in keys:
                            sums[k] += out[k]
                        history.append(torch.stack([out[k] for k in trainer.curves]))
                        steps_here += 1
                        images_here += world.size * len(batch["image"] if "image" in batch
                                                        else next(iter(batch.values())))
                        state.step += 1
                        state.step_in_epoch += 1
                        halt = world.any(interrupt.requested, trainer.device)
                        stop = halt or finished(state, cfg)
                        due = (steps_here % log_every == 0 if world.enabled
                               else time.perf_counter() - last_log >= 0.5)
                        if due or stop:
                            last_log = time.perf_counter()
                            means = _means(sums, steps_here, world)
                            progress.update(task, completed=state.step_in_epoch, status="  ".join(
                                f"{trainer.metrics[k]} {v:.3f}" for k, v in means.items()))
                        if save_every and state.step % save_every == 0 and not stop:
                            _means(sums, steps_here, world)
                            save()
                        if stop:
                            break
                means = _means(sums, max(steps_here, 1), world)  # the epoch's, before saving
            except Diverged as exc:
                kept = (f"The last good checkpoint is {run.checkpoint}"
                        if run.checkpoint.exists() else "No checkpoint was written")
                console.print(f"[red]error:[/] {exc} at step {state.step}; training stopped. "
                              f"{kept} (try a lower --lr).")
                return 1
            if state.step_in_epoch >= per_epoch:
                state.epoch += 1
                state.step_in_epoch = 0
            seconds = time.perf_counter() - start
            state.seconds += seconds
            epoch_start = None
            row = {"epoch": epoch_no, "step": state.step,
                   "complete": state.step_in_epoch == 0,
                   **means,
                   "images_per_s": images_here / seconds if seconds else 0.0,
                   "seconds": seconds}
            with torch.random.fork_rng(devices=rng_devices):  # hooks never move training's RNG
                for hook in hooks:
                    row.update(hook.after_epoch(trainer, row))
            if world.main:
                with run.writing():
                    _log_epoch(trainer, run, row, history, real)
            save()
            with run.writing():
                for hook in hooks:
                    hook.after_save(run, row)
            table = _epoch_table(trainer, first_row, columns)
            table.add_row(str(epoch_no) + ("" if row["complete"] else "*"), str(state.step),
                          *(f"{row[k]:.4f}" for k in keys),
                          *(f"{row[k]:.4f}" if k in row else "-" for k in columns),
                          f"{row['images_per_s']:.0f}", f"{seconds:.1f}")
            # never truncate a row: a pipe or CI log has an 80-column console
            width = console.width
            console.width = max(width, _table_width(table))
            console.print(table)
            console.width = width
            first_row = False

    for hook in hooks:
        hook.finish(run)
    if halt and not finished(state, cfg):
        launcher = (f"torchrun --nproc_per_node {world.size} -m gancli" if world.enabled
                    else "gancli")
        console.print(f"[yellow]Interrupted at {where(state)}; checkpoint saved. Resume "
                      f"with:[/] {launcher} train {cfg['model']} --resume {run.dir}")
        return 130
    console.print(f"[green]done:[/] {counted(state.step, 'step')}, "
                  f"{counted(state.epoch, 'epoch')} -> {run.dir}")
    return 0


def _means(sums: dict[str, torch.Tensor], n: int, world: World | None = None
           ) -> dict[str, float]:
    """The one host sync per log interval, averaged over ranks (so all ranks see the same
    values); also where a diverged loss is caught, on every rank at once."""
    world = world or World()
    means = {k: world.mean(v / n).item() for k, v in sums.items()}
    bad = [k for k, v in means.items() if not math.isfinite(v)]
    if bad:
        raise Diverged(f"{bad[0]} became {means[bad[0]]}")
    return means


def _log_epoch(trainer: Trainer, run: Run, row: dict, history: list[torch.Tensor],
               real: dict | None) -> None:
    """Append the epoch's metrics and per-step losses, redraw grids and curves."""
    rundir.append(run.metrics, json.dumps(row) + "\n")
    if history:
        values = torch.stack(history).float().cpu().tolist()
        first = row["step"] - len(values) + 1
        head = "" if run.losses.exists() else ",".join(["step", *trainer.curves]) + "\n"
        rundir.append(run.losses, head + "".join(
            f"{first + i}," + ",".join(f"{v:.6g}" for v in vals) + "\n"
            for i, vals in enumerate(values)))
    images, nrow = trainer.preview()
    viz.save_grid(images, run.sample_path(row["epoch"]), nrow)
    if real is not None:
        viz.side_by_side(trainer.comparison(real), run.dir / "real_vs_fake.png", nrow)
    steps, series = read_losses(run.losses)
    if steps:
        viz.loss_curves(steps, series, run.dir / "loss_curves.png")


def read_losses(path: Path) -> tuple[list[int], dict[str, list[float]]]:
    lines = rundir.complete_lines(path)
    if not lines:
        return [], {}
    head, *rows = lines
    names = head.split(",")[1:]
    cols = list(zip(*(r.split(",") for r in rows), strict=True)) if rows else []
    if not cols:
        return [], {}
    return [int(s) for s in cols[0]], {n: [float(v) for v in c] for n, c in zip(names, cols[1:],
                                                                               strict=True)}
