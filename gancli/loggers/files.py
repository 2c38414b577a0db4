"""The default logger: the run's own record in plain files, which resume, inspect, export
and --eval-every's best.pt read back. metrics.jsonl (a line per epoch), losses.csv (a row
per step), samples/epoch_NNN.png, real_vs_fake.png and loss_curves.png."""

from __future__ import annotations

import json
from pathlib import Path

from gancli import checkpoint, rundir, viz
from gancli.hooks import Logger, Pictures
from gancli.rundir import Run
from gancli.trainers.base import Trainer


class FilesLogger(Logger):
    name = "files"

    def start(self, run: Run, trainer: Trainer, config: dict, step: int) -> None:
        self.run, self.curves = run, trainer.curves
        if step:
            truncate(run, step)

    def steps(self, first: int, values: dict[str, list[float]]) -> None:
        head = "" if self.run.losses.exists() else ",".join(["step", *self.curves]) + "\n"
        rows = zip(*(values[k] for k in self.curves), strict=True)
        rundir.append(self.run.losses, head + "".join(
            f"{first + i}," + ",".join(f"{v:.6g}" for v in vals) + "\n"
            for i, vals in enumerate(rows)))

    def epoch(self, row: dict) -> None:
        rundir.append(self.run.metrics, json.dumps(row) + "\n")

    def pictures(self, row: dict, pictures: Pictures) -> None:
        images, nrow = pictures.samples
        viz.save_grid(images, self.run.sample_path(row["epoch"]), nrow)
        if pictures.comparison is not None:
            viz.side_by_side(pictures.comparison, self.run.dir / "real_vs_fake.png", nrow)
        steps, series = read_losses(self.run.losses)
        if steps:
            viz.loss_curves(steps, series, self.run.dir / "loss_curves.png")


def truncate(run: Run, step: int) -> None:
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


def read_losses(path: Path) -> tuple[list[int], dict[str, list[float]]]:
    """losses.csv as steps and one series per curve (empty while it has no whole row)."""
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


def read_rows(run: Run) -> list[dict]:
    """metrics.jsonl's rows (whole lines only: the run may be training)."""
    return [json.loads(line) for line in rundir.complete_lines(run.metrics)]
