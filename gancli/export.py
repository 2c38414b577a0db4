"""`gancli export`: a trained run as a small, sample-only copy in a new folder."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import torch
from rich.console import Console

from gancli import checkpoint, rundir
from gancli.errors import GancliError
from gancli.runs import first_line, restore

console = Console(stderr=True, soft_wrap=True)  # paths stay whole in logs


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
        reason = exc.strerror or first_line(exc)
        raise GancliError(f"cannot write {exc.filename or out}: {reason}; the run {src} is "
                          "untouched and the partial export was removed") from None
    size = (out / checkpoint.FILENAME).stat().st_size / 1e6
    console.print(f"exported {', '.join(keep)} ({'fp16' if half else 'fp32'}, {size:.1f} MB) "
                  f"-> {out}")

