"""The shared engine through the real CLI: run files, sampling, inspect, checkpoints, resume."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from PIL import Image

from gancli import checkpoint, engine, runs
from gancli.errors import GancliError
from gancli.trainers.noise_gan import NoiseGAN
from tests.conftest import TINY


def train_tiny(cli, folder: Path, name: str, *extra: str):
    return cli("train", "dcgan", "--dataset", f"folder:{folder}", *TINY, "--name", name, *extra)


def weights(run: Path) -> dict[str, torch.Tensor]:
    ckpt = checkpoint.load(run / "checkpoint.pt")
    return {f"{n}.{k}": v for n, sd in ckpt["nets"].items() for k, v in sd.items()}


def test_train_writes_a_complete_run_then_samples_and_inspects(cli, folder, tmp_path):
    result = train_tiny(cli, folder, "r1", "--epochs", "2")
    assert result.exit_code == 0, result.output
    run = tmp_path / "checkpoints" / "dcgan" / "r1"
    for f in ["checkpoint.pt", "config.json", "metrics.jsonl", "losses.csv",
              "real_vs_fake.png", "loss_curves.png", "samples/epoch_001.png",
              "samples/epoch_002.png"]:
        assert (run / f).is_file(), f
    umask = os.umask(0)
    os.umask(umask)
    assert (run / "checkpoint.pt").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 600
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"loss_d", "loss_g", "d_real", "d_fake", "images_per_s", "seconds"} <= rows[0].keys()
    assert "D(G(z))" in result.stderr  # the epoch table
    assert len((run / "losses.csv").read_text().splitlines()) == 1 + 2 * 3  # 24 images / 8

    out = tmp_path / "grid.png"
    result = cli("sample", "dcgan", "--n", "9", "--out", out, "--out-dir", tmp_path / "single")
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (3 * 16 + 4 * 2, 3 * 16 + 4 * 2)
    assert len(list((tmp_path / "single").glob("*.png"))) == 9
    assert Image.open(tmp_path / "single" / "00000.png").size == (16, 16)

    result = cli("inspect", run)
    assert result.exit_code == 0, result.output
    assert "2 epochs, 6 steps" in result.stdout and "ConvTranspose2d" in result.stdout


def test_sample_is_reproducible_and_needs_no_training_flags(cli, folder, tmp_path):
    assert train_tiny(cli, folder, "r", "--max-steps", "2").exit_code == 0
    a, b, c = (tmp_path / f"{x}.png" for x in "abc")
    for path, seed in ((a, 1), (b, 1), (c, 2)):
        run = tmp_path / "checkpoints" / "dcgan" / "r" / "checkpoint.pt"
        assert cli("sample", run, "--n", "4", "--out", path, "--seed", seed).exit_code == 0
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_inspect_model_lists_layer_shapes(cli):
    result = cli("inspect", "dcgan", "--image-size", "64", "--dataset", "cifar10")
    assert result.exit_code == 0, result.output
    assert "(3, 64, 64)" in result.stdout and "(512, 4, 4)" in result.stdout
    assert "total parameters" in result.stdout
    assert "dcgan options" in result.stdout and "DiffAugment policies" in result.stdout
    assert "spherically interpolated" in result.stdout  # sample's --interpolate


def test_resume_continues_exactly(cli, folder, tmp_path):
    assert train_tiny(cli, folder, "straight", "--epochs", "4").exit_code == 0
    assert train_tiny(cli, folder, "split", "--epochs", "2").exit_code == 0
    runs = tmp_path / "checkpoints" / "dcgan"
    result = cli("train", "dcgan", "--resume", runs / "split", "--epochs", "4")
    assert result.exit_code == 0, result.output
    a, b = weights(runs / "straight"), weights(runs / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ckpt = checkpoint.load(runs / "split" / "checkpoint.pt")
    state = ckpt["state"]
    assert (state["epoch"], state["step"], state["step_in_epoch"]) == (4, 12, 0)
    assert len(state["commands"]) == 2 and state["seconds"] > 0
    assert ckpt["opts"]["G"]["state"]  # Adam moments travel with the checkpoint
    rows = [json.loads(x) for x in (runs / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]


def test_resume_mid_epoch_is_exact(cli, folder, tmp_path):
    assert train_tiny(cli, folder, "straight", "--epochs", "2").exit_code == 0
    assert train_tiny(cli, folder, "split", "--epochs", "2", "--max-steps", "4").exit_code == 0
    runs = tmp_path / "checkpoints" / "dcgan"
    assert checkpoint.load(runs / "split" / "checkpoint.pt")["state"]["step_in_epoch"] == 1
    assert cli("train", "dcgan", "--resume", "split").exit_code == 0
    a, b = weights(runs / "straight"), weights(runs / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_crash_while_saving_keeps_the_previous_checkpoint(cli, folder, tmp_path, monkeypatch):
    assert train_tiny(cli, folder, "r", "--epochs", "1").exit_code == 0
    path = tmp_path / "checkpoints" / "dcgan" / "r" / "checkpoint.pt"
    before = path.read_bytes()

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        checkpoint.save(path, {"config": {}, "nets": {}})
    assert path.read_bytes() == before
    assert checkpoint.load(path)["state"]["epoch"] == 1
    assert not list(path.parent.glob(".checkpoint.pt.*"))  # no temp file left behind


def test_nan_loss_stops_and_keeps_last_good_checkpoint(cli, folder, tmp_path, monkeypatch):
    assert train_tiny(cli, folder, "r", "--epochs", "1").exit_code == 0
    path = tmp_path / "checkpoints" / "dcgan" / "r" / "checkpoint.pt"
    before = path.read_bytes()
    real_step = NoiseGAN.train_step

    def poisoned(self, batch):
        out = real_step(self, batch)
        out["loss_g"] = torch.tensor(float("nan"))
        return out

    monkeypatch.setattr(NoiseGAN, "train_step", poisoned)
    result = cli("train", "dcgan", "--resume", "r", "--epochs", "3")
    assert result.exit_code == 1
    assert "loss_g became nan" in result.stderr and "last good checkpoint" in result.stderr
    assert path.read_bytes() == before


def test_ctrl_c_saves_and_says_how_to_resume(cli, folder, tmp_path, monkeypatch):
    real_step = NoiseGAN.train_step
    calls = []

    def interrupting(self, batch):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self, batch)

    monkeypatch.setattr(NoiseGAN, "train_step", interrupting)
    result = train_tiny(cli, folder, "r", "--epochs", "3")
    assert result.exit_code == 130, result.output
    assert "--resume" in result.stderr
    run = tmp_path / "checkpoints" / "dcgan" / "r"
    assert checkpoint.load(run / "checkpoint.pt")["state"]["step"] == 2
    monkeypatch.setattr(NoiseGAN, "train_step", real_step)
    assert cli("train", "dcgan", "--resume", run).exit_code == 0
    assert checkpoint.load(run / "checkpoint.pt")["state"]["step"] == 9


def test_save_every_steps_writes_mid_epoch(cli, folder, tmp_path, monkeypatch):
    saved = []
    real_save = checkpoint.save
    monkeypatch.setattr(checkpoint, "save",
                        lambda path, payload: (saved.append(payload["state"]["step"]),
                                               real_save(path, payload)))
    assert train_tiny(cli, folder, "r", "--epochs", "1", "--save-every-steps", "2").exit_code == 0
    assert saved == [2, 3]


def test_restore_rebuilds_from_the_checkpoint_alone(cli, folder, tmp_path):
    assert train_tiny(cli, folder, "r", "--max-steps", "1").exit_code == 0
    trainer, ckpt = runs.restore("r", torch.device("cpu"))
    assert trainer.cfg["ngf"] == 8 and trainer.info["num_classes"] == 2
    out = trainer.generate(3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 3, 16, 16) and out.min() >= -1 and out.max() <= 1
    assert runs.restore("dcgan/r", torch.device("cpu"))[1]["path"] == ckpt["path"]
    for model in ("gan", "wgan-gp"):  # one run name under two models
        (tmp_path / "two" / model / "r").mkdir(parents=True)
        (tmp_path / "two" / model / "r" / checkpoint.FILENAME).touch()
    with pytest.raises(GancliError, match="ambiguous"):
        checkpoint.resolve("r", tmp_path / "two", {})


def test_export_is_small_samples_and_refuses_resume(cli, folder, tmp_path):
    assert train_tiny(cli, folder, "r", "--max-steps", "2").exit_code == 0
    run = tmp_path / "checkpoints" / "dcgan" / "r"
    out = tmp_path / "shipped"
    result = cli("export", run, out)
    assert result.exit_code == 0, result.output
    ckpt = checkpoint.load(out / "checkpoint.pt")
    assert list(ckpt["nets"]) == ["G"] and not ckpt["opts"]
    floats = [t for t in ckpt["nets"]["G"].values() if t.is_floating_point()]
    assert all(t.dtype == torch.float16 for t in floats)
    assert (out / "config.json").exists() and (out / "samples" / "epoch_001.png").exists()
    full = weights(run)
    trainer, _ = runs.restore(str(out), torch.device("cpu"))
    w = trainer.nets["G"].main[0].weight
    assert torch.allclose(w, full["G.main.0.weight"], atol=1e-3) and w.dtype == torch.float32
    assert cli("sample", out, "--n", "4", "--out", tmp_path / "s.png").exit_code == 0
    result = cli("train", "dcgan", "--resume", out)
    assert result.exit_code == 2 and "exported" in result.stderr


SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"


SHIPPED_MODELS = ["dcgan", "cgan", "cdcgan", "acgan", "ddpm"]  # gan and wgan-gp: none yet


@pytest.mark.parametrize("model", SHIPPED_MODELS)
def test_shipped_pretrained_runs_load_sample_and_draw_the_digit_asked_for(model):
    """A cheap regression guard, not the quality bar: each shipped run samples digits, and a
    conditional one draws the digit asked for (>= 90 of 100 by the reference classifier)."""
    from gancli.evaluate import sample_accuracy

    run = SHIPPED / model / "pretrained-mnist"
    trainer, ckpt = runs.restore(str(run), torch.device("cpu"))
    assert ckpt["exported"] and ckpt["info"]["dataset"] == "mnist"
    assert (run / "checkpoint.pt").stat().st_size < 8e6
    assert ckpt["state"]["commands"] and ckpt["state"]["seconds"] > 0
    n = 100 if trainer.conditional else 8
    labels = torch.full((n,), 8) if trainer.conditional else None  # 8: a hard digit
    fast = {"steps": 20} if model == "ddpm" else {}
    images = trainer.generate(n, generator=torch.Generator().manual_seed(0), labels=labels,
                              **fast)
    assert images.shape == (n, 1, 28, 28) and images.min() >= -1 and images.max() <= 1
    assert images.std() > 0.3  # digits on black, not a flat image
    if trainer.conditional:
        said = sample_accuracy(trainer, images, labels)
        assert int(said.split("(")[1].split("/")[0]) >= 90, said


def test_all_shipped_checkpoints_fit_the_budget():
    total = sum(p.stat().st_size for p in SHIPPED.glob("*/*/checkpoint.pt"))
    assert total < 60e6, f"{total / 1e6:.1f} MB of shipped checkpoints (budget 60 MB)"


def test_default_run_names_never_collide(cli, folder, tmp_path, monkeypatch):
    import datetime as dt

    class Frozen(dt.datetime):  # every run starts in the same second
        @classmethod
        def now(cls, tz=None):
            return dt.datetime(2026, 1, 2, 3, 4, 5)

    monkeypatch.setattr(engine, "datetime", Frozen)
    for _ in range(3):
        assert train_tiny(cli, folder, "", "--max-steps", "1").exit_code == 0
    names = sorted(p.parent.name for p in (tmp_path / "checkpoints" / "dcgan").glob("*/*.pt"))
    assert names == ["20260102-030405", "20260102-030405-2", "20260102-030405-3"]
