"""Multi-process training under torchrun: 2 CPU processes with gloo (slow-ish: ~10 s each)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gancli import checkpoint, data
from gancli.distributed import World
from tests.test_image_to_image import CYC, P2P, make_domains, make_pairs

WORKER = Path(__file__).parent / "workers" / "ddp_steps.py"
TINY_DDP = ["--dataset", "mnist-mini", "--image-size", "16", "--ngf", "8", "--ndf", "8",
            "--nz", "8", "--batch-size", "16", "--num-threads", "1"]


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                           "2", "--standalone", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_ranks_hold_identical_weights_after_every_step(tmp_path):
    result = torchrun(str(WORKER), str(tmp_path), "4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert len(r0) == len(r1) == 4
    for a, b in zip(r0, r1, strict=True):
        assert a["batch_sum"] != b["batch_sum"]  # each rank trains on its own shard
        for name in a["weights"]:  # G, D and the EMA copy of G
            assert a["weights"][name] == b["weights"][name], (a["step"], name)
    assert r0[0]["weights"]["G"] != r0[-1]["weights"]["G"]  # and they did train


def test_torchrun_run_folder_is_complete_and_resume_is_exact(tmp_path):
    env_root = tmp_path / "checkpoints"
    os.environ["GANCLI_CHECKPOINTS"] = str(env_root)  # restored by the autouse fixture
    train = ["-m", "gancli", "train", "dcgan", *TINY_DDP]
    straight = torchrun(*train, "--name", "straight", "--max-steps", "6",
                        "--loggers", "tensorboard,html", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert straight.stderr.count("done:") == 1  # rank 0 alone prints
    run = env_root / "dcgan" / "straight"
    for name in ("checkpoint.pt", "config.json", "metrics.jsonl", "losses.csv",
                 "loss_curves.png", "real_vs_fake.png", "samples/epoch_001.png", "index.html"):
        assert (run / name).exists(), name
    assert len(list((run / "tensorboard").iterdir())) == 1  # one event file: rank 0 alone
    ckpt = checkpoint.load(run / "checkpoint.pt")
    assert ckpt["state"]["step"] == 6 and len(ckpt["rng_ranks"]) == 2
    assert ckpt["state"]["commands"][0].startswith("torchrun --nproc_per_node=2 -m gancli train")
    assert all(not k.startswith("module.") for k in ckpt["nets"]["G"])

    first = torchrun(*train, "--name", "split", "--max-steps", "3", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    again = torchrun("-m", "gancli", "train", "dcgan", "--resume", "split", "--max-steps", "6",
                     "--num-threads", "1", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = checkpoint.load(env_root / "dcgan" / "split" / "checkpoint.pt")
    assert resumed["state"]["step"] == 6
    for net in ("G", "D"):
        for k, v in ckpt["nets"][net].items():
            assert torch.equal(v, resumed["nets"][net][k]), (net, k)


@pytest.mark.parametrize("model", ["pix2pix", "cyclegan"])
def test_image_to_image_models_train_under_torchrun(model, tmp_path):
    """Their discriminators' parameters are switched off during G's step, their generators
    have dropout (pix2pix) and two nets share an optimizer (CycleGAN): DDP copes with all."""
    os.environ["GANCLI_CHECKPOINTS"] = str(tmp_path / "checkpoints")
    folder = (make_pairs(tmp_path / "pairs") if model == "pix2pix"
              else make_domains(tmp_path / "domains"))
    result = torchrun("-m", "gancli", "train", model, "--dataset", f"folder:{folder}",
                      *(P2P if model == "pix2pix" else CYC), "--batch-size", "2",
                      "--max-steps", "3", "--name", "r", "--num-threads", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = checkpoint.load(tmp_path / "checkpoints" / model / "r" / "checkpoint.pt")
    assert ckpt["state"]["step"] == 3


def test_batches_shard_one_permutation_without_overlap():
    images = torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1)
    shards = [data.Batches({"image": images}, 2, seed=3, device=torch.device("cpu"),
                           rank=r, world=2) for r in (0, 1)]
    seen = [torch.cat([b["image"].flatten() for b in s.epoch(0)]) for s in shards]
    assert len(shards[0]) == len(shards[1]) == 2  # 5 images each, drop_last
    assert not set(seen[0].tolist()) & set(seen[1].tolist())
    single = data.Batches({"image": images}, 2, seed=3, device=torch.device("cpu"))
    assert torch.equal(single.order(0)[0::2][:5], shards[0].order(0))


def test_single_process_world_is_a_no_op_and_sync_bn_needs_torchrun():
    world = World()
    assert not world.enabled and world.main
    assert world.share(lambda: 7) == 7 and world.gather("x") == ["x"]
    assert world.any(True, torch.device("cpu")) is True
    from gancli.errors import GancliError

    with pytest.raises(GancliError, match="torchrun"):
        world.wrap({}, sync_bn=True)
