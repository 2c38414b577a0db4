"""The noise-to-image family: gan, cgan (+ multiclass D), cdcgan, acgan, wgan-gp."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from torch import nn

from gancli import checkpoint, registry, runs
from gancli.trainers.noise_gan import Multiclass, gradient_penalty
from tests.conftest import TINY

# (model, extra options, D outputs for 3 classes, D is told the class)
VARIANTS = {
    "gan": ("gan", [], 1, False),
    "dcgan": ("dcgan", [], 1, False),
    "cgan": ("cgan", [], 1, True),
    "cgan-multiclass": ("cgan", ["--discriminator", "multiclass"], 4, False),
    "cdcgan": ("cdcgan", [], 1, True),
    "cdcgan-multiclass": ("cdcgan", ["--discriminator", "multiclass"], 4, False),
    "acgan": ("acgan", [], 4, False),
    "wgan-gp": ("wgan-gp", [], 1, False),
}
INFO = {"dataset": "folder:x", "channels": 1, "image_size": 16, "num_classes": 3,
        "classes": ["a", "b", "c"], "num_images": 0}


def tiny_trainer(model: str, extra: list[str]):
    spec = registry.get(model)
    opts = spec.parse_options([*TINY[2:6], "--nz", "8", *extra])
    cfg = spec.config({**opts, "image_size": 16})
    return runs.build_trainer(cfg, INFO, torch.device("cpu"))


@pytest.mark.parametrize("variant", VARIANTS)
def test_network_shapes(variant):
    model, extra, outputs, d_labels = VARIANTS[variant]
    trainer = tiny_trainer(model, extra)
    G, D = trainer.nets["G"], trainer.nets["D"]
    z, y = torch.randn(5, 8), torch.tensor([0, 1, 2, 2, 0])
    fake = G(z, y) if trainer.conditional else G(z)
    assert fake.shape == (5, 1, 16, 16) and fake.abs().max() <= 1
    assert D(fake, y if d_labels else None).shape == (5, outputs)
    assert trainer.conditional == (model in ("cgan", "cdcgan", "acgan"))
    assert trainer.head.d_labels == d_labels
    if model == "wgan-gp":  # the critic must treat images independently
        assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())


@pytest.mark.parametrize("variant", VARIANTS)
def test_trains_and_samples_through_the_cli(variant, cli, folder, tmp_path):
    model, extra, _, _ = VARIANTS[variant]
    result = cli("train", model, "--dataset", f"folder:{folder}", *TINY, "--name", "r",
                 "--max-steps", "2", *extra)
    assert result.exit_code == 0, result.output
    run = tmp_path / "checkpoints" / model / "r"
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"loss_d", "loss_g"} <= row.keys()
    if model == "wgan-gp":  # the epoch table shows the Wasserstein estimate and the penalty
        assert {"wdist", "gp"} <= row.keys() and "GP" in result.stderr
    assert ("acc" in row) == ("multiclass" in variant or model == "acgan")
    preview = Image.open(run / "samples" / "epoch_001.png").size
    out = tmp_path / "s.png"
    result = cli("sample", model, "--n", "6", "--out", out)
    assert result.exit_code == 0, result.output
    if model in ("cgan", "cdcgan", "acgan"):
        assert preview == (10 * 18 + 2, 2 * 18 + 2)  # 2 classes: one row each, 10 columns
        assert Image.open(out).size == (3 * 18 + 2, 2 * 18 + 2)  # one row per class
    else:
        assert preview == (8 * 18 + 2, 8 * 18 + 2)
        assert Image.open(out).size == (3 * 18 + 2, 2 * 18 + 2)  # square-ish


def test_conditional_sampling_asks_g_for_the_requested_class(cli, folder, tmp_path):
    assert cli("train", "cdcgan", "--dataset", f"folder:{folder}", *TINY, "--name", "r",
               "--max-steps", "1").exit_code == 0
    trainer, _ = runs.restore("cdcgan", torch.device("cpu"), tmp_path / "checkpoints")
    seen: list[torch.Tensor] = []
    trainer.sampler("G").register_forward_pre_hook(lambda mod, args: seen.append(args[1]))
    images = trainer.generate(5, torch.Generator().manual_seed(0),
                              labels=torch.full((5,), 1, dtype=torch.long))
    assert images.shape == (5, 3, 16, 16) and seen[-1].tolist() == [1] * 5
    trainer.generate(5, torch.Generator().manual_seed(0))  # no label: one row per class
    assert seen[-1].tolist() == [0, 0, 0, 1, 1] and trainer.sample_nrow(5, None) == 3

    out = tmp_path / "ones.png"
    result = cli("sample", "cdcgan", "--label", "class1", "--n", "4", "--out", out)
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (2 * 18 + 2, 2 * 18 + 2)


def test_label_errors_are_one_line_with_exit_code_2(cli, folder):
    for model in ("dcgan", "cgan"):
        assert cli("train", model, "--dataset", f"folder:{folder}", *TINY,
                   "--max-steps", "1").exit_code == 0
    result = cli("sample", "dcgan", "--digit", "3")
    assert result.exit_code == 2 and "not conditional" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    for wanted in ("--digit", "2"), ("--label", "dog"):
        result = cli("sample", "cgan", *wanted)
        assert result.exit_code == 2, result.output
        assert result.stderr.strip().splitlines() == [
            f"error: no class '{wanted[1]}' (valid: 0=class0, 1=class1)"]


def test_conditional_model_needs_labels(cli, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(4):
        Image.new("L", (16, 16), 40 * i).save(flat / f"{i}.png")
    result = cli("train", "acgan", "--dataset", f"folder:{flat}", *TINY, "--max-steps", "1")
    assert result.exit_code == 2 and "needs a labelled dataset" in result.stderr


def test_multiclass_targets_real_to_class_fake_to_generated_g_to_requested():
    head, k = Multiclass(), 10
    y_real, y_fake = torch.tensor([3, 7]), torch.tensor([7, 3])
    real = torch.zeros(2, k + 1, requires_grad=True)
    fake = torch.zeros(2, k + 1, requires_grad=True)
    loss, stats = head.d_loss(real, fake, y_real, y_fake)
    loss.backward()
    # A cross-entropy target is the one logit that gradient descent raises.
    assert real.grad.argmin(1).tolist() == [3, 7]
    assert fake.grad.argmin(1).tolist() == [10, 10]
    assert (real.grad < 0).sum() == 2 and (fake.grad < 0).sum() == 2
    fake_g = torch.zeros(2, k + 1, requires_grad=True)
    head.g_loss(fake_g, y_fake).backward()
    assert fake_g.grad.argmin(1).tolist() == [7, 3]
    # Confident, correct D: loss ~0; "generated" read as real: P(real) of fakes ~1.
    sure = torch.full((2, k + 1), -20.0)
    real_ok, fake_ok = sure.clone(), sure.clone()
    real_ok[[0, 1], y_real] = 20.0
    fake_ok[:, k] = 20.0
    loss, stats = head.d_loss(real_ok, fake_ok, y_real, y_fake)
    assert loss < 1e-6 and stats["acc"] == 1 and stats["d_fake"] < 1e-6
    assert head.g_loss(fake_ok, y_fake) > 30


def test_gradient_penalty_zero_for_unit_linear_critic_and_differentiable():
    torch.manual_seed(0)
    real, fake = torch.randn(8, 1, 4, 4), torch.randn(8, 1, 4, 4)
    linear = nn.Linear(16, 1)
    with torch.no_grad():
        linear.weight /= linear.weight.norm()
    critic = nn.Sequential(nn.Flatten(), linear)
    assert gradient_penalty(critic, real, fake).item() < 1e-10
    with torch.no_grad():
        linear.weight *= 3  # gradient norm 3 everywhere: penalty (3 - 1)^2
    gp = gradient_penalty(critic, real, fake)
    assert gp.item() == pytest.approx(4.0, rel=1e-5)
    gp.backward()
    assert linear.weight.grad is not None and linear.weight.grad.norm() > 0


def test_gradient_penalty_is_taken_at_interpolates():
    critic = nn.Sequential(nn.Flatten(), nn.Identity())

    class HalfSquare(nn.Module):  # D(x) = |x|^2 / 2, so grad D(x) = x
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 0.5 * critic(x).square().sum(1)

    real, fake = torch.zeros(64, 1, 2, 2), torch.full((64, 1, 2, 2), 2.0)  # |fake| = 4
    torch.manual_seed(1)
    gp = gradient_penalty(HalfSquare(), real, fake)
    torch.manual_seed(1)
    eps = torch.rand(64, 1, 1, 1)
    assert gp.item() == pytest.approx(((1 - eps.flatten()) * 4 - 1).square().mean().item())


@pytest.mark.parametrize("model,extra", [("wgan-gp", ["--n-critic", "2"]),
                                         ("cgan", ["--discriminator", "multiclass"])])
def test_resume_is_exact(model, extra, cli, folder, tmp_path):
    def train(name: str, *more: str):
        return cli("train", model, "--dataset", f"folder:{folder}", *TINY, *extra,
                   "--name", name, *more)

    assert train("straight", "--epochs", "2").exit_code == 0  # 3 steps per epoch
    assert train("split", "--epochs", "2", "--max-steps", "3").exit_code == 0
    runs = tmp_path / "checkpoints" / model
    assert cli("train", model, "--resume", runs / "split", "--epochs", "2").exit_code == 0
    a, b = (checkpoint.load(runs / r / "checkpoint.pt") for r in ("straight", "split"))
    assert [a["state"][k] for k in ("epoch", "step")] == [b["state"][k] for k in ("epoch", "step")]
    for net in a["nets"]:
        assert all(torch.equal(v, b["nets"][net][k]) for k, v in a["nets"][net].items()), net
    losses = [(runs / r / "losses.csv").read_text() for r in ("straight", "split")]
    assert losses[0] == losses[1]


def test_wgan_gp_moves_g_every_n_critic_steps():
    trainer = tiny_trainer("wgan-gp", ["--n-critic", "3"])
    batch = {"image": torch.rand(4, 1, 16, 16) * 2 - 1}
    moved = []
    for _ in range(6):
        before = [p.clone() for p in trainer.nets["G"].parameters()]
        out = trainer.train_step(batch)
        moved.append(any(not torch.equal(p, q) for p, q in
                         zip(before, trainer.nets["G"].parameters(), strict=True)))
        assert set(out) == set(trainer.metrics) and out["gp"].requires_grad is False
    assert moved == [False, False, True, False, False, True]

