"""What the training engine calls besides a recipe's step: epoch hooks (work between
epochs that adds values to the epoch's row) and loggers (where those values go).

Both the engine and the recipes import this module, and it imports neither of them, so a
recipe can offer a hook without reaching up into the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from gancli.rundir import Run

if TYPE_CHECKING:
    from gancli.trainers.base import Trainer


class EpochHook:
    """Work between epochs (held-out accuracy, FID every N epochs). Its values join the
    epoch's row, so they reach every logger and the epoch table like the losses do."""

    columns: dict[str, str] = {}  # row key -> epoch table title

    def after_epoch(self, trainer: Trainer, row: dict) -> dict[str, float]:
        """Values for this epoch's row; none when there is nothing to measure this epoch."""
        return {}

    def after_save(self, run: Run, row: dict) -> None:
        """The epoch's checkpoint is written (e.g. keep a copy of the best one)."""

    def finish(self, run: Run) -> None:
        """Training stopped (e.g. summarise the values over all epochs)."""


@dataclass
class Pictures:
    """An epoch's pictures, drawn once by the engine for every logger: the fixed-input
    grid (images in [-1, 1], row length) and titled real/generated panels (None when the
    run has no data to compare with)."""

    samples: tuple[torch.Tensor, int]
    comparison: list[tuple[str, torch.Tensor]] | None


class Logger:
    """Where a run's values and pictures go (files, TensorBoard, an HTML page). Only the
    process that writes the run (rank 0 under torchrun) has loggers. Per epoch the engine
    calls `steps`, `epoch`, then `pictures`, so `pictures` can summarise the epoch."""

    name = ""  # what --log calls it

    def start(self, run: Run, trainer: Trainer, config: dict, step: int) -> None:
        """Training starts (`step` > 0: a resume from that step; anything logged after it
        by an earlier, interrupted invocation is to be dropped). `config` is config.json's
        content: the options, the data facts and every command that trained the run."""

    def steps(self, first: int, values: dict[str, list[float]]) -> None:
        """Per-step values (the recipe's curves) for steps first, first+1, ...; handed over
        once per epoch, because reading them every step would cost a host sync each."""

    def epoch(self, row: dict) -> None:
        """The epoch's row: epoch, step, mean losses, any hook's values, speed."""

    def pictures(self, row: dict, pictures: Pictures) -> None:
        """The epoch's pictures; the last call of an epoch."""

    def finish(self) -> None:
        """Training stopped, however it stopped: flush and close."""
