"""--log tensorboard: per-step losses, each epoch's row (losses, FID/KID when evaluated,
speed), the sample grid and the config into RUN/tensorboard/, so `tensorboard --logdir
checkpoints/` shows every run. A resume opens a new event file with purge_step, which makes
TensorBoard drop what an interrupted invocation logged after the checkpoint: steps are
never shown twice or out of order."""

from __future__ import annotations

import json
import numbers

from gancli import viz
from gancli.errors import GancliError
from gancli.hooks import Logger, Pictures
from gancli.rundir import Run
from gancli.trainers.base import Trainer

ROW_KEYS = ("epoch", "step", "complete")  # what places a row rather than measures it


class TensorBoardLogger(Logger):
    name = "tensorboard"

    def __init__(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise GancliError("--log tensorboard needs the tensorboard package (pip install "
                              "tensorboard)") from None
        self.make_writer = SummaryWriter
        self.writer: SummaryWriter | None = None

    def start(self, run: Run, trainer: Trainer, config: dict, step: int) -> None:
        self.writer = self.make_writer(log_dir=str(run.dir / "tensorboard"),
                                       purge_step=step + 1 if step else None)
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=2) + "\n```", step)

    def steps(self, first: int, values: dict[str, list[float]]) -> None:
        for key, series in values.items():
            for i, value in enumerate(series):
                self.writer.add_scalar(f"step/{key}", value, first + i)

    def epoch(self, row: dict) -> None:
        for key, value in row.items():
            if key not in ROW_KEYS and isinstance(value, numbers.Real):
                self.writer.add_scalar(f"epoch/{key}", value, row["step"])

    def pictures(self, row: dict, pictures: Pictures) -> None:
        images, nrow = pictures.samples
        self.writer.add_image("samples", viz.grid(images, nrow), row["step"])
        for title, panel in pictures.comparison or []:
            self.writer.add_image(f"real_vs_fake/{title}", viz.grid(panel, nrow), row["step"])
        self.writer.flush()  # an epoch is a natural point for `tensorboard` to see it

    def finish(self) -> None:
        if self.writer is not None:
            self.writer.close()
