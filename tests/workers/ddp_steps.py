"""Run under torchrun by tests/test_distributed.py: a few DDP steps of a tiny DCGAN, with
each rank's weights and batch recorded after every step, so the test can compare ranks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from gancli import data, registry, runs
from gancli.distributed import World, plain


def main(out: Path, steps: int) -> None:
    torch.set_num_threads(1)
    world = World.from_env()
    device = world.start(torch.device("cpu"))
    cfg = registry.get("dcgan").config({"dataset": "mnist-mini", "image_size": 16, "ngf": 8,
                                        "ndf": 8, "nz": 8, "batch_size": 8, "ema": 0.9})
    info = {"channels": 1, "image_size": 16, "num_classes": 10, "num_images": 64,
            "classes": [str(i) for i in range(10)]}
    torch.manual_seed(world.rank)  # different init per rank: DDP must broadcast rank 0's
    trainer = runs.build_trainer(cfg, info, device)
    images = torch.randint(0, 256, (64, 1, 16, 16), dtype=torch.uint8)
    torch.manual_seed(0)
    batches = data.Batches({"image": images}, 8, seed=0, device=device,
                           rank=world.rank, world=world.size)
    world.wrap(trainer.nets, sync_bn=False)
    torch.manual_seed(100 + world.rank)
    records = []
    for step, batch in zip(range(steps), batches.epoch(0), strict=False):
        trainer.run_step(batch)
        weights = {name: torch.cat([p.detach().flatten() for p in plain(net).parameters()])
                   for name, net in trainer.nets.items()}
        records.append({"step": step,
                        "weights": {k: v.tolist() for k, v in weights.items()},
                        "batch_sum": float(batch["image"].sum())})
    (out / f"rank{world.rank}.json").write_text(json.dumps(records))
    world.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
