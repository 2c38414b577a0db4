"""ddpm: the diffusion formulas against their closed forms, and the model through the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from gancli import checkpoint, diffusion, registry, runs
from gancli.errors import GancliError
from gancli.nets.ddpm_unet import UNet, timestep_embedding
from tests.test_foundation import one_line_error

TINY = ["--image-size", "16", "--width", "8", "--batch-size", "8"]
INFO = {"dataset": "folder:x", "channels": 1, "image_size": 16, "num_classes": 3,
        "classes": ["a", "b", "c"], "num_images": 0}


def tiny_trainer(*extra: str):
    spec = registry.get("ddpm")
    cfg = spec.config({**spec.parse_options(["--width", "8", *extra]), "image_size": 16})
    return runs.build_trainer(cfg, INFO, torch.device("cpu"))


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_forward_process_matches_its_closed_form(name):
    schedule = diffusion.Schedule.named(name, 1000)
    x0 = torch.tensor([0.8, -0.3]).repeat(20000, 1)
    for step in (0, 250, 999):
        t = torch.full((len(x0),), step)
        ab = torch.cumprod(1 - schedule.betas.double(), 0)[step].item()
        mean, var = schedule.q_mean_var(x0, t)
        assert torch.allclose(mean[0], math.sqrt(ab) * x0[0], atol=1e-6)
        assert torch.allclose(var[0], torch.full((2,), 1 - ab), atol=1e-6)
        xt = schedule.q_sample(x0, t, torch.randn_like(x0))
        assert torch.allclose(xt.mean(0), mean[0], atol=0.03)
        assert torch.allclose(xt.var(0), var[0], rtol=0.05, atol=1e-4)


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("T", [50, 1000])
def test_alpha_bar_falls_monotonically_from_one_to_almost_zero(name, T):
    schedule = diffusion.Schedule.named(name, T)
    ab = schedule.alpha_bar
    assert len(ab) == T and (ab[1:] < ab[:-1]).all()
    assert ab[0] > 0.98 and 0 <= ab[-1] < 1e-3
    assert ((schedule.betas > 0) & (schedule.betas < 1)).all()


def test_timesteps_are_trailing_and_cover_every_step_at_T():
    assert diffusion.timesteps(1000, 1000) == list(range(999, -1, -1))
    assert diffusion.timesteps(1000, 4) == [999, 749, 499, 249]
    assert diffusion.timesteps(1000, 5, start=500) == [499, 399, 299, 199, 99]


def gaussian_eps(schedule: diffusion.Schedule, mu: float, s: float) -> diffusion.EpsModel:
    """The exact noise predictor E[eps | x_t] for data x_0 ~ N(mu, s^2)."""
    def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = schedule.alpha_bar[t].view(-1, 1)
        return (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * s**2 + 1 - ab)
    return eps


def test_ddim_with_eta_one_over_all_steps_is_ddpm_sampling():
    schedule = diffusion.Schedule.named("linear", 1000)
    mu, s = 0.5, 0.3
    model = gaussian_eps(schedule, mu, s)
    noise = torch.randn(4000, 1, generator=torch.Generator().manual_seed(1))
    steps = diffusion.timesteps(1000, 1000)
    out = {}
    for sampler in ("ddpm", "ddim"):
        out[sampler] = diffusion.sample(model, schedule, noise, steps, sampler, eta=1.0,
                                        generator=torch.Generator().manual_seed(2), clip=False)
        assert abs(out[sampler].mean() - mu) < 0.02 and abs(out[sampler].std() - s) < 0.02
    assert abs(out["ddpm"].mean() - out["ddim"].mean()) < 1e-3
    assert abs(out["ddpm"].std() - out["ddim"].std()) < 1e-3
    # deterministic DDIM reaches the same distribution; with 50 steps it is a little narrower
    for count, tolerance in ((1000, 0.01), (50, 0.03)):
        ode = diffusion.sample(model, schedule, noise, diffusion.timesteps(1000, count),
                               "ddim", clip=False)
        assert abs(ode.mean() - mu) < 0.01 and abs(ode.std() - s) < tolerance


def test_guidance_zero_is_unconditional_and_one_is_conditional():
    trainer = tiny_trainer("--conditional")
    net = trainer.sampler("unet")
    for p in net.parameters():  # the zero-initialised output would hide every difference
        p.data.normal_(0, 0.2)
    x, t = torch.randn(4, 1, 16, 16), torch.full((4,), 500)
    y = torch.tensor([0, 1, 2, 1])
    null = torch.full_like(y, 3)
    with torch.no_grad():
        cond, uncond = net(x, t, y), net(x, t, null)
        assert not torch.allclose(cond, uncond)
        assert torch.allclose(trainer.eps_model(y, 0.0)(x, t), uncond, atol=1e-5)
        assert torch.allclose(trainer.eps_model(y, 1.0)(x, t), cond, atol=1e-5)
        assert torch.allclose(trainer.eps_model(y, 3.0)(x, t), uncond + 3 * (cond - uncond),
                              atol=1e-4)


def test_conditional_generation_asks_for_the_requested_classes():
    trainer = tiny_trainer("--conditional")
    seen = []
    trainer.sampler("unet").register_forward_pre_hook(lambda m, args: seen.append(args[2]))
    images = trainer.generate(5, torch.Generator().manual_seed(0),
                              labels=torch.full((5,), 2), steps=3)
    assert images.shape == (5, 1, 16, 16)
    assert len(seen) == 3 and all(y.tolist() == [2] * 5 for y in seen)
    seen.clear()
    images = trainer.generate(6, torch.Generator().manual_seed(0), steps=2)  # a row per class
    assert images.shape == (6, 1, 16, 16) and seen[0].tolist() == [0, 0, 1, 1, 2, 2]
    assert trainer.sample_nrow(6, None) == 2
    with pytest.raises(GancliError, match="guidance"):
        tiny_trainer().generate(2, steps=2, guidance=2.0)


def test_trains_samples_and_denoises_through_the_cli(cli, folder, tmp_path):
    result = cli("train", "ddpm", "--dataset", f"folder:{folder}", *TINY, "--name", "r",
                 "--max-steps", "2", "--conditional")
    assert result.exit_code == 0, result.output
    assert "loss" in result.stderr
    run = tmp_path / "checkpoints" / "ddpm" / "r"
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["step"] == 2 and math.isfinite(row["loss"])
    assert Image.open(run / "samples" / "epoch_001.png").size == (8 * 18 + 2, 2 * 18 + 2)
    assert "unet_ema" in checkpoint.load(run / checkpoint.FILENAME)["nets"]

    out = tmp_path / "s.png"
    result = cli("sample", "ddpm", "--n", "4", "--digit", "1", "--guidance", "2", "--steps", "3",
                 "--show-steps", "--out", out)
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (2 * 18 + 2, 2 * 18 + 2)
    assert Image.open(tmp_path / "s_steps.png").size == (4 * 18 + 2, 4 * 18 + 2)
    result = cli("sample", "ddpm", "--n", "2", "--sampler", "ddpm", "--steps", "4", "--out", out)
    assert result.exit_code == 0, result.output

    noisy = tmp_path / "noisy"
    noisy.mkdir()
    for i in range(3):
        Image.new("L", (16, 16), 60 * i).save(noisy / f"{i}.png")
    result = cli("translate", "ddpm", noisy, "--strength", "0.3", "--steps", "4",
                 "--add-noise", "0.1", "--digit", "0", "--out", tmp_path / "den")
    assert result.exit_code == 0, result.output
    assert "PSNR noisy" in result.stdout and "PSNR denoised" in result.stdout
    assert (tmp_path / "den" / "2.png").exists()


def test_resume_is_exact(cli, folder, tmp_path):
    common = ["train", "ddpm", "--dataset", f"folder:{folder}", *TINY, "--conditional"]
    assert cli(*common, "--name", "full", "--max-steps", "4").exit_code == 0
    assert cli(*common, "--name", "half", "--max-steps", "2").exit_code == 0
    assert cli("train", "ddpm", "--resume", "half", "--max-steps", "4").exit_code == 0
    runs = tmp_path / "checkpoints" / "ddpm"
    full, half = (checkpoint.load(runs / r / checkpoint.FILENAME) for r in ("full", "half"))
    assert half["state"]["step"] == 4 and half["steps"] == 4
    for net in ("unet", "unet_ema"):
        for key, value in full["nets"][net].items():
            assert torch.equal(value, half["nets"][net][key]), (net, key)


@pytest.mark.parametrize("dim", range(1, 10))
def test_time_embedding_has_the_requested_width(dim):
    t = torch.tensor([0, 7, 999])
    emb = timestep_embedding(t, dim)
    assert emb.shape == (3, dim) and torch.isfinite(emb).all()
    half = dim // 2
    if half:  # even widths keep the plain formula, bit for bit
        freqs = torch.exp(-math.log(10000) * torch.arange(half) / half)
        angles = t.float()[:, None] * freqs[None]
        assert torch.equal(emb[:, :2 * half], torch.cat([angles.sin(), angles.cos()], 1))
    if dim % 2:  # an odd width ends in one zero column
        assert torch.equal(emb[:, -1], torch.zeros(3))


@pytest.mark.parametrize("width", [1, 3, 5, 7, 9])
def test_odd_widths_build_and_run(width):
    net = UNet(1, width, num_classes=3)
    x = torch.randn(2, 1, 8, 8)
    assert net(x, torch.tensor([0, 9]), torch.tensor([1, 3])).shape == x.shape


def test_more_steps_than_timesteps_and_eta_with_ddpm_are_errors():
    trainer = tiny_trainer("--timesteps", "10")
    images = torch.zeros(2, 1, 16, 16)
    with pytest.raises(GancliError, match=r"--steps 11 is more than this run's 10 diffusion"):
        trainer.generate(2, steps=11)
    with pytest.raises(GancliError, match=r"--steps 11 is more than this run's 10 diffusion"):
        trainer.generate(2, steps=11, sampler="ddpm")
    with pytest.raises(GancliError, match=r"--steps 11 is more than this run's 10 diffusion"):
        trainer.translate(images, steps=11)
    with pytest.raises(GancliError, match="--eta 0.5 .* --sampler ddpm"):
        trainer.generate(2, steps=2, sampler="ddpm", eta=0.5)
    # the limits themselves, eta with ddim, and translate's default of 50 on a T=10 run work
    assert trainer.generate(1, steps=10, sampler="ddpm", eta=0.0).shape == (1, 1, 16, 16)
    assert trainer.generate(1, steps=2, eta=0.5).shape == (1, 1, 16, 16)
    assert trainer.translate(images, strength=0.2)[0].shape == images.shape
    assert trainer.translate(images, strength=0.2, steps=10)[0].shape == images.shape


def test_odd_width_run_and_its_sample_and_translate_checks_through_the_cli(cli, folder,
                                                                          tmp_path):
    result = cli("train", "ddpm", "--dataset", f"folder:{folder}", *TINY, "--width", "3",
                 "--name", "r", "--timesteps", "50", "--max-steps", "1")
    assert result.exit_code == 0, result.output
    result = cli("inspect", "ddpm", "--width", "3", "--image-size", "16")
    assert result.exit_code == 0, result.output
    out = ["--out", tmp_path / "s.png"]
    one_line_error(cli("sample", "ddpm", "--steps", "2000", *out),
                   "--steps 2000 is more than this run's 50 diffusion steps (--timesteps)")
    one_line_error(cli("sample", "ddpm", "--sampler", "ddpm", "--eta", "0.5", *out),
                   "--eta 0.5", "--sampler ddpm")
    one_line_error(cli("translate", "ddpm", folder, "--steps", "1000",
                       "--out", tmp_path / "t"),
                   "--steps 1000 is more than this run's 50 diffusion steps (--timesteps)")
