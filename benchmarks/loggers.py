"""What the loggers cost per training step: `gancli train` run for real (dcgan on the
embedded mnist-mini by default), with every logger's calls timed, against the training
time the run itself records (state.seconds: the epochs' steps, without logging).

    python benchmarks/loggers.py --log files,tensorboard,html --epochs 2 --num-threads 1

Each logger's share is its time over the training time of the same run, so a busy machine
slows both alike."""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from gancli import checkpoint, engine, loggers
from gancli.hooks import Logger

CALLS = ("start", "steps", "epoch", "pictures", "finish")


def timed(logger: Logger, spent: dict[str, float]) -> Logger:
    """`logger` with each call's time added to spent[logger.name]."""
    for call in CALLS:
        method = getattr(logger, call)

        def wrapper(*args, _method=method, **kwargs):
            start = time.perf_counter()
            try:
                return _method(*args, **kwargs)
            finally:
                spent[logger.name] += time.perf_counter() - start

        setattr(logger, call, wrapper)
    return logger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dcgan")
    parser.add_argument("--dataset", default="mnist-mini")
    parser.add_argument("--log", default="files,tensorboard,html")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-threads", type=int, default=1)
    args = parser.parse_args()

    spent: dict[str, float] = defaultdict(float)
    make = loggers.make
    loggers.make = lambda text: [timed(lg, spent) for lg in make(text)]
    with tempfile.TemporaryDirectory() as root:
        code = engine.train(args.model, {"dataset": args.dataset, "epochs": args.epochs,
                                         "batch_size": args.batch_size, "log": args.log},
                            name="bench", num_threads=args.num_threads, root=Path(root))
        assert code == 0, code
        state = checkpoint.load(Path(root) / args.model / "bench" / checkpoint.FILENAME)["state"]
    steps, seconds = state["step"], state["seconds"]
    print(f"\n{args.model} on {args.dataset}: {steps} steps, {seconds / steps * 1e3:.1f} ms a "
          f"step of training ({args.epochs} epochs of {steps // args.epochs})")
    print(f"{'logger':<12} {'total s':>8} {'ms/step':>8} {'% of a step':>12}")
    for name, total in spent.items():
        print(f"{name:<12} {total:8.3f} {total / steps * 1e3:8.2f} {100 * total / seconds:11.2f}%")


if __name__ == "__main__":
    main()
