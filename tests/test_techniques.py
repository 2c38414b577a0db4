"""Augmentations, losses, EMA and latent interpolation: the maths behind the options."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gancli import augment, losses
from gancli.ema import ema_update, make_ema, warmed_decay
from gancli.errors import GancliError
from gancli.latent import slerp
from gancli.trainers import noise_gan


def batch(n: int = 6, c: int = 3, s: int = 16) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(n, c, s, s) * 2 - 1


@pytest.mark.parametrize("policy", [("color",), ("translation",), ("cutout",),
                                    augment.DIFFAUG_POLICIES])
def test_diffaugment_is_differentiable_and_keeps_shape(policy):
    x = batch().requires_grad_(True)
    y = augment.diffaugment(x, policy)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not torch.equal(y.detach(), x.detach())


def test_translation_and_cutout_stay_in_range():
    x = batch()
    for name in ("translation", "cutout"):
        y = augment.diffaugment(x, (name,))
        assert y.min() >= -1 and y.max() <= 1
    torch.manual_seed(1)
    holes = (augment.diffaugment(torch.ones(200, 1, 16, 16), ("cutout",)) == 0).flatten(1).sum(1)
    assert (holes > 0).all() and (holes <= 64).all()  # an 8x8 hole, clipped at the borders
    assert 0.2 < (holes == 64).float().mean() < 0.4  # (9/17)^2 of offsets keep it whole


def test_translation_moves_content_by_whole_pixels():
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 8, 8] = 1
    y = augment.diffaugment(x, ("translation",))
    assert (y.flatten(1).sum(1) == 1).all()  # a 2-pixel-max shift never drops the dot
    assert len({int(i) for i in y.flatten(1).argmax(1)}) > 1  # images moved differently


def test_policy_parsing():
    assert augment.parse_policy("color, cutout") == ("color", "cutout")
    with pytest.raises(GancliError, match="blur"):
        augment.parse_policy("color,blur")


def test_deluxe_keeps_size_and_range_and_varies_per_image():
    x = batch(8).clamp(-0.5, 0.5)
    y = augment.deluxe(x)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    same = augment.deluxe(torch.stack([x[0]] * 8))
    assert not torch.allclose(same[0], same[1])  # independent draws per image


def test_deluxe_identity_when_nothing_is_random():
    x = batch(4)
    y = augment.deluxe(x, scale=(1, 1), ratio=(1, 1), flip=0, autocontrast=0)
    assert torch.allclose(x, y, atol=1e-5)
    flipped = augment.deluxe(x, scale=(1, 1), ratio=(1, 1), flip=1, autocontrast=0)
    assert torch.allclose(flipped, x.flip(-1), atol=1e-5)


def test_losses_match_their_definitions():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    sp = nn.functional.softplus
    assert torch.isclose(losses.d_loss(real, fake, "bce"), sp(-real).mean() + sp(fake).mean())
    assert torch.isclose(losses.g_loss(fake, "bce"), sp(-fake).mean())
    assert torch.isclose(losses.d_loss(real, fake, "hinge"),
                         torch.relu(1 - real).mean() + torch.relu(1 + fake).mean())
    assert torch.isclose(losses.g_loss(fake, "hinge"), -fake.mean())
    assert torch.isclose(losses.d_loss(real, fake, "lsgan"),
                         0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake ** 2).mean())


def test_ema_update_math():
    net = nn.Linear(2, 1)
    ema = make_ema(net)
    before = ema.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema_update(ema, net, decay=0.9)
    assert torch.allclose(ema.weight, 0.9 * before + 0.1 * net.weight)
    assert not ema.weight.requires_grad


def test_slerp_endpoints_and_norm():
    torch.manual_seed(0)
    a, b = torch.randn(3, 50), torch.randn(3, 50)
    path = slerp(a, b, torch.linspace(0, 1, 7))
    assert path.shape == (3, 7, 50)
    assert torch.allclose(path[:, 0], a, atol=1e-5) and torch.allclose(path[:, -1], b, atol=1e-5)
    mid = path[:, 3].norm(dim=1)
    lerp_mid = ((a + b) / 2).norm(dim=1)
    assert (mid > lerp_mid).all()  # stays near the shell, unlike a straight line


def test_spectral_norm_bounds_the_largest_singular_value():
    from gancli.nets.dcgan import Discriminator
    from gancli.nets.spectral import apply_spectral_norm

    torch.manual_seed(0)
    d = apply_spectral_norm(Discriminator(channels=1, image_size=16, ndf=8))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in d.modules())
    for _ in range(20):  # power iterations run in training-mode forwards
        d(torch.randn(4, 1, 16, 16))
    conv = d.features[2]
    sigma = torch.linalg.matrix_norm(conv.weight.flatten(1), ord=2)
    assert abs(sigma.item() - 1) < 0.05
    with pytest.raises(GancliError, match="no conv or linear"):
        apply_spectral_norm(nn.Sequential(nn.ReLU()))


def test_joint_transform_gives_both_images_of_a_pair_the_same_jitter():
    from gancli.data import Batches

    torch.manual_seed(0)
    a = (torch.rand(6, 3, 16, 16) * 255).to(torch.uint8)
    b = Batches({"A": a, "B": a.clone()}, 6, 0, torch.device("cpu"), transform=augment.deluxe)
    out = next(b.epoch(0))
    assert torch.equal(out["A"], out["B"])
    plain = next(Batches({"A": a}, 6, 0, torch.device("cpu")).epoch(0))["A"]
    assert not torch.allclose(out["A"], plain)


def tiny_trainer(model: str, **options):
    from gancli import registry, runs

    cfg = registry.get(model).config({"image_size": 16, "nz": 8, "ngf": 8, "ndf": 8, **options})
    info = {"channels": 1, "image_size": 16, "num_classes": 10, "classes": list("0123456789"),
            "num_images": 0, "dataset": "mnist"}
    return runs.build_trainer(cfg, info, torch.device("cpu"))


def test_latent_walk_rows_start_and_end_at_their_endpoints():
    trainer = tiny_trainer("dcgan")
    frames = trainer.walk(3, 5, torch.Generator().manual_seed(0))
    assert frames.shape == (3, 5, 1, 16, 16)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g)
    assert torch.allclose(frames[:, 0], trainer.render(a), atol=1e-5)
    assert torch.allclose(frames[:, -1], trainer.render(b), atol=1e-5)


def test_label_walk_goes_from_one_class_to_the_other_at_fixed_noise():
    trainer = tiny_trainer("cdcgan")
    frames = trainer.walk(2, 4, torch.Generator().manual_seed(0), between=(3, 8))
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 1, 8, generator=g)[:, 0]
    assert torch.allclose(frames[:, 0], trainer.render(z, torch.tensor([3, 3])), atol=1e-5)
    assert torch.allclose(frames[:, -1], trainer.render(z, torch.tensor([8, 8])), atol=1e-5)


def test_technique_options_reach_the_networks():
    trainer = tiny_trainer("dcgan", spectral_norm=True, ema=0.9, diffaug="color")
    assert "G_ema" in trainer.nets and set(trainer.opts) == {"G", "D"}
    assert not any(isinstance(m, nn.BatchNorm2d) for m in trainer.nets["D"].modules())
    assert trainer.sampler("G") is trainer.nets["G_ema"]
    batch = {"image": torch.rand(4, 1, 16, 16) * 2 - 1}
    before = trainer.nets["G_ema"].main[0].weight.clone()
    trainer.train_step(batch)
    trainer.after_step()
    g = trainer.nets["G"].main[0].weight
    first = warmed_decay(0.9, 0)  # 0.1: the first update takes most of the live weights
    assert torch.allclose(trainer.nets["G_ema"].main[0].weight, first * before + (1 - first) * g)


def test_ema_warm_up_and_its_own_batchnorm_statistics():
    assert warmed_decay(0.999, 0) == pytest.approx(0.1)
    assert warmed_decay(0.999, 10**6) == 0.999
    trainer = tiny_trainer("cdcgan", ema=0.5)
    batch = {"image": torch.rand(8, 1, 16, 16) * 2 - 1, "label": torch.randint(10, (8,))}
    for _ in range(3):
        trainer.train_step(batch)
        trainer.after_step()
    assert trainer.ema_updates == 3 and trainer.ema_stale == {"G"}
    rng = torch.get_rng_state()
    G = trainer.sampler("G")  # renews the statistics, without moving the training RNG
    assert torch.equal(rng, torch.get_rng_state()) and not trainer.ema_stale
    live = trainer.nets["G"].main[1].running_mean
    assert not torch.allclose(G.main[1].running_mean, live)
    # the statistics are the exact mean of G_ema's own first activations on the noise
    g = torch.Generator().manual_seed(trainer.cfg["seed"] + 1)
    means = []
    with torch.no_grad():
        for _ in range(noise_gan.CALIBRATION_BATCHES):
            z = torch.randn(noise_gan.CALIBRATION_BATCH, trainer.cfg["nz"], generator=g)
            y = torch.randint(10, (noise_gan.CALIBRATION_BATCH,), generator=g)
            means.append(G.main[0](torch.cat([z, G.embed(y)], 1)[:, :, None, None])
                         .mean((0, 2, 3)))
    assert torch.allclose(G.main[1].running_mean, torch.stack(means).mean(0), atol=1e-5)
    saved = trainer.state_dict()
    assert saved["ema_updates"] == 3
    assert torch.equal(saved["nets"]["G_ema"]["main.1.running_mean"], G.main[1].running_mean)


@pytest.mark.parametrize("args,needle", [
    (["wgan-gp", "--loss", "hinge"], "no option --loss"),
    (["cgan", "--discriminator", "multiclass", "--loss", "lsgan"], "--loss applies"),
    (["dcgan", "--diffaug", "color,blur"], "unknown DiffAugment policy 'blur'"),
    (["dcgan", "--ema", "1"], "--ema must be in [0, 1), not 1"),
    (["dcgan", "--diffaug", "color,color"], "names a policy twice"),
    (["dcgan", "--augment", "fancy"], "--augment must be one of"),
])
def test_invalid_technique_combinations_are_rejected(cli, args, needle):
    result = cli("train", *args)
    assert result.exit_code == 2 and needle in result.stderr


def test_sample_interpolate_writes_grid_and_gif(cli, folder, tmp_path):
    from PIL import Image

    from tests.conftest import TINY

    assert cli("train", "cdcgan", "--dataset", f"folder:{folder}", *TINY, "--max-steps",
               "1").exit_code == 0
    grid, gif = tmp_path / "walk.png", tmp_path / "walk.gif"
    result = cli("sample", "cdcgan", "--interpolate", "3", "--steps", "5", "--gif", gif,
                 "--out", grid, "--label", "class1")
    assert result.exit_code == 0, result.output
    assert Image.open(grid).size == (5 * 18 + 2, 3 * 18 + 2)
    with Image.open(gif) as g:
        assert g.n_frames == 2 * 5 - 2  # forward, then back without repeating the ends
    result = cli("sample", "cdcgan", "--interpolate-labels", "class0,class1", "--out", grid)
    assert result.exit_code == 0 and Image.open(grid).size == (8 * 18 + 2, 4 * 18 + 2)
    result = cli("sample", "cdcgan", "--interpolate-labels", "class0,nope", "--out", grid)
    assert result.exit_code == 2 and "no class 'nope'" in result.stderr
