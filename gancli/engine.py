"""The training engine shared by every model: epochs, progress, checkpoints, resume.

A recipe (gancli.trainers) only knows one optimisation step; everything a user sees while
training, and everything that makes a run resumable, lives here once. What a run writes
about itself goes through its loggers (gancli.loggers); how a run on disk becomes a
Trainer is gancli.runs.
"""

from __future__ import annotations

import contextlib
import json
import math
import shlex
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from gancli import accel, augment, checkpoint, data, loggers, registry, rundir
from gancli.distributed import World
from gancli.errors import GancliError
from gancli.hooks import EpochHook, Logger, Pictures
from gancli.rundir import Run
from gancli.runs import (
    about,
    build_trainer,
    counted,
    describe_data,
    load_data,
    load_state,
    pick_device,
    rng_state,
)
from gancli.trainers.base import Trainer

console = Console(stderr=True, soft_wrap=True)  # paths stay whole in logs

# --augment: applied to real batches on the device ("basic" is the resize + scaling that
# loading always does)
AUGMENTS = {"none": None, "basic": None, "deluxe": augment.deluxe}

# Options that may change when a run is resumed (when and how fast it trains, where its
# data is, how it is evaluated and logged); everything else (networks, data, losses) is the
# run's own.
RESUMABLE = ("epochs", "max_steps", "save_every_steps", "amp", "channels_last", "compile",
             "sync_bn", "data_root", "fid_every", "fid_samples", "fid_features", "eval_metrics",
             "log")


class Diverged(Exception):
    """A loss became NaN or infinite: training stops without overwriting the checkpoint."""


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


def epoch_hooks(cfg: dict, trainer: Trainer) -> list[EpochHook]:
    """The recipe's own hooks, and the --metrics every N epochs when --eval-every asks for
    it (built before training, so a missing feature extractor fails at once)."""
    hooks = list(trainer.epoch_hooks())
    if cfg.get("fid_every"):
        from gancli.evaluate import TrainingEval

        hooks.append(TrainingEval(cfg, trainer))
    return hooks


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
    loggers.parse(overrides.get("log") or loggers.ALWAYS)
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
    world.wrap(trainer.nets, bool(cfg.get("sync_bn")))
    if cfg.get("compile"):
        accel.compile_nets(trainer.nets)
    launcher = (["torchrun", f"--nproc_per_node={world.size}", "-m", "gancli"]
                if world.enabled else ["gancli"])
    state.commands.append(shlex.join([*launcher, *sys.argv[1:]]))
    logs: list[Logger] = []
    if world.main:
        config = {**cfg, "info": trainer.info, "commands": state.commands}
        logs = loggers.make(cfg.get("log") or loggers.ALWAYS)
        with run.writing():
            for logger in logs:
                logger.start(run, trainer, config, state.step)
            checkpoint.atomic_write(run.dir / "config.json",
                                    json.dumps(config, indent=2).encode())
    procs = f" x {world.size} processes" if world.enabled else ""
    amp = {torch.bfloat16: ", amp bf16", torch.float16: ", amp fp16"}.get(trainer.amp, "")
    console.print(f"[bold]{cfg['model']}[/] on {cfg['dataset']} ({trainer.info['num_images']} "
                  f"images, {cfg['image_size']}px) on {dev}{procs}{amp} -> {run.dir}"
                  + (f"  [dim](resumed at {where(state)})[/]" if ckpt else ""))
    hooks = epoch_hooks(cfg, trainer) if world.main else []
    try:
        return fit(trainer, batches, run, cfg, state, hooks, world, logs)
    finally:
        for logger in logs:
            logger.finish()


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


def where(state: RunState) -> str:
    """'step 120 (epoch 3 of the run, 20 steps in)': the same words when a run stops and
    when it resumes."""
    into = f", {counted(state.step_in_epoch, 'step')} in" if state.step_in_epoch else ""
    return f"step {state.step} (epoch {state.epoch + 1}{into})"


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
        hooks: list[EpochHook] | None = None, world: World | None = None,
        logs: list[Logger] | None = None) -> int:
    """Train until `epochs` (or `max_steps`) are done, Ctrl-C, or a loss diverges. Every
    rank runs this loop in step; only rank 0 (`world.main`), the one with loggers, writes
    files."""
    hooks, logs = hooks or [], logs or []
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
            if logs:
                with run.writing():
                    log_epoch(trainer, logs, row, history, real)
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


def log_epoch(trainer: Trainer, logs: list[Logger], row: dict, history: list[torch.Tensor],
              real: dict | None) -> None:
    """Hand the epoch's per-step losses, its row and its pictures (drawn once) to every
    logger."""
    if history:
        values = torch.stack(history).float().cpu().T.tolist()
        first = row["step"] - len(history) + 1
        for logger in logs:
            logger.steps(first, dict(zip(trainer.curves, values, strict=True)))
    for logger in logs:
        logger.epoch(row)
    images, nrow = trainer.preview()
    pictures = Pictures((images, nrow), trainer.comparison(real) if real is not None else None)
    for logger in logs:
        logger.pictures(row, pictures)
