"""Issue #6's techniques on pix2pix and CycleGAN: DiffAugment before every D call (one draw
per pix2pix pair), spectral norm on every discriminator, EMA generators behind translate,
--loss, --augment deluxe next to --jitter, old --gan-loss runs, and the CLI end to end."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from gancli import augment, checkpoint, registry, runs
from gancli.data import jointly
from gancli.trainers.base import evaluating
from gancli.trainers.pix2pix import d_adversarial, g_adversarial
from tests.test_image_to_image import CYC, P2P, make_domains, make_pairs, one_line_error

SIZE = 32
INFO = {"dataset": "folder:x", "channels": 3, "image_size": SIZE, "num_classes": 0,
        "classes": [], "num_images": 8}
MODELS = {"pix2pix": {}, "cyclegan": {"blocks": 1}, "cyclegan-dc": {"blocks": 1, "disc": "dc"}}


def trainer(model: str, **options):
    name = model.removesuffix("-dc")
    cfg = registry.get(name).config({"image_size": SIZE, "ngf": 4, "ndf": 4, "batch_size": 4,
                                     **MODELS[model], **options})
    t = runs.build_trainer(cfg, INFO, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    t.use_data({k: torch.randint(0, 256, (4, 3, SIZE, SIZE), generator=g, dtype=torch.uint8)
                for k in "AB"})
    return t


def images(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE) * 2 - 1


def batch() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"A": images(), "B": images()}


def record_d_calls(t) -> tuple[list, list, list]:
    """Wrap the trainer's diffaug and hook every discriminator: (diffaug inputs, diffaug
    outputs, D inputs), in call order."""
    ins, outs, seen = [], [], []
    original = t.diffaug

    def spy(x: torch.Tensor) -> torch.Tensor:
        ins.append(x)
        outs.append(original(x))
        return outs[-1]

    t.diffaug = spy
    for name in t.discriminators:
        t.nets[name].register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    return ins, outs, seen


def test_pix2pix_d_judges_only_diffaugmented_pairs():
    t = trainer("pix2pix", diffaug="cutout")
    ins, outs, seen = record_d_calls(t)
    b = batch()
    t.train_step(b)
    x, y = b["B"], b["A"]  # direction BtoA
    assert len(seen) == 3 and all(d is o for d, o in zip(seen, outs, strict=True))
    assert torch.equal(ins[0], torch.cat([x, y], 1))  # real pair, then fake, then G's step
    assert not ins[1].requires_grad and ins[2].requires_grad
    assert all(torch.equal(i[:, :3], x) for i in ins)
    assert not torch.equal(seen[0], ins[0])  # cutout really hit D's real input


def test_cyclegan_d_judges_only_diffaugmented_images():
    t = trainer("cyclegan", diffaug="cutout")
    ins, outs, seen = record_d_calls(t)
    b = batch()
    t.train_step(b)
    assert len(seen) == 6 and all(d is o for d, o in zip(seen, outs, strict=True))
    assert [i.requires_grad for i in ins] == [True, True, False, False, False, False]
    assert torch.equal(ins[2], b["A"]) and torch.equal(ins[4], b["B"])  # D_A real, D_B real
    assert not torch.equal(seen[2], b["A"])


@pytest.mark.parametrize("model", ["pix2pix", "cyclegan"])
def test_g_learns_through_diffaugment(model):
    weight = {"l1_weight": 0.0} if model == "pix2pix" else {"cycle_weight": 0.0}
    t = trainer(model, diffaug="color,translation,cutout", **weight)  # adversarial loss only
    t.train_step(batch())
    for name in t.generators:
        grads = [p.grad for p in t.nets[name].parameters()]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_cyclegan_without_cycle_loss_trains_g_on_the_adversarial_loss_alone():
    """--cycle-weight 0 (the seed's ablation): the cycle L1 is still measured and logged,
    but G's gradients are exactly those of the two adversarial losses (no identity loss)."""
    torch.manual_seed(0)
    t = trainer("cyclegan", cycle_weight=0.0)
    torch.manual_seed(0)  # the same initial weights
    reference = trainer("cyclegan", cycle_weight=0.0)
    b = batch()
    fake_b, fake_a = reference.nets["G_AB"](b["A"]), reference.nets["G_BA"](b["B"])
    (g_adversarial(reference.nets["D_B"](fake_b), "lsgan")
     + g_adversarial(reference.nets["D_A"](fake_a), "lsgan")).backward()
    logged = t.train_step(b)
    assert logged["cyc_a"] > 0 and logged["cyc_b"] > 0 and logged["idt_a"] == 0
    for name in t.generators:
        for p, q in zip(t.nets[name].parameters(), reference.nets[name].parameters(),
                        strict=True):
            assert torch.allclose(p.grad, q.grad, atol=1e-6)


def test_pix2pix_diffaugment_keeps_the_pair_aligned_and_colours_each_image():
    t = trainer("pix2pix", diffaug="translation,cutout")
    x = images(16)
    out = t.diffaug(torch.cat([x, -x], 1))
    assert torch.equal(out[:, 3:], -out[:, :3])  # the same shift and hole in both halves
    assert not torch.equal(out[:, :3], x)
    t = trainer("pix2pix", diffaug="color")
    y = images(16)
    torch.manual_seed(1)
    pair = t.diffaug(torch.cat([x, y], 1))
    for half, alone in ((pair[:, :3], x), (pair[:, 3:], y)):
        torch.manual_seed(1)  # the same draw as the pair's, on the image alone
        assert torch.allclose(half, augment.diffaugment(alone, ("color",)), atol=1e-6)


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_spectral_norm_on_every_discriminator_and_no_norm_layers(model, norm):
    t = trainer(model, spectral_norm=True, norm=norm)
    norms = (nn.BatchNorm2d, nn.InstanceNorm2d)
    for name in t.discriminators:
        d = t.nets[name]
        convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
        assert convs and all(parametrize.is_parametrized(c, "weight") for c in convs)
        assert not any(isinstance(m, norms) for m in d.modules())
        channels = 6 if model == "pix2pix" else 3
        for _ in range(15):  # power iterations run in training-mode forwards
            d(torch.randn(2, channels, SIZE, SIZE))
        sigma = torch.linalg.matrix_norm(convs[1].weight.flatten(1), ord=2)
        assert abs(sigma.item() - 1) < 0.05
    for name in t.generators:  # generators keep their normalisation
        assert any(isinstance(m, norms) for m in t.nets[name].modules())


@pytest.mark.parametrize("model", ["pix2pix", "cyclegan"])
def test_ema_generators_exist_move_and_drive_translate(model):
    t = trainer(model, ema=0.5)
    assert {f"{g}_ema" for g in t.generators} <= set(t.nets) and set(t.opts) == {"G", "D"}
    x = images(2)
    before = t.translate(x)[0]
    t.train_step(batch())
    t.after_step()
    for g in t.generators:
        ema, net = t.nets[f"{g}_ema"], t.nets[g]
        assert all(not p.requires_grad for p in ema.parameters())
        assert not torch.equal(next(ema.parameters()), next(net.parameters()))
    moved = t.translate(x)[0]
    assert not torch.equal(moved, before)
    first = t.generators[0]
    with evaluating(t.nets[f"{first}_ema"]):
        assert torch.equal(moved, t.nets[f"{first}_ema"](x))
    preview, _ = t.preview()
    for p in t.nets[f"{first}_ema"].parameters():
        p.data.zero_()
    assert not torch.equal(t.translate(x)[0], moved)  # outputs come from the EMA copy
    assert not torch.equal(t.preview()[0], preview)


def test_adversarial_losses_match_their_definitions():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    sp = nn.functional.softplus
    assert torch.isclose(d_adversarial(real, fake, "bce"),
                         0.5 * (sp(-real).mean() + sp(fake).mean()))
    assert torch.isclose(d_adversarial(real, fake, "lsgan"),
                         0.5 * (((real - 1) ** 2).mean() + (fake ** 2).mean()))
    assert torch.isclose(d_adversarial(real, fake, "hinge"),
                         0.5 * (torch.relu(1 - real).mean() + torch.relu(1 + fake).mean()))
    assert torch.isclose(g_adversarial(fake, "bce"), sp(-fake).mean())
    assert torch.isclose(g_adversarial(fake, "lsgan"), ((fake - 1) ** 2).mean())
    assert torch.isclose(g_adversarial(fake, "hinge"), -fake.mean())


@pytest.mark.parametrize("model", ["pix2pix", "cyclegan"])
def test_hinge_trains_with_finite_losses(model):
    t = trainer(model, loss="hinge", spectral_norm=True, diffaug="translation")
    for _ in range(3):
        out = t.train_step(batch())
        assert all(torch.isfinite(v) for v in out.values()), out


def test_loss_defaults_follow_the_papers_and_gan_loss_is_gone():
    assert registry.get("pix2pix").config({})["loss"] == "bce"
    assert registry.get("cyclegan").config({})["loss"] == "lsgan"
    assert "gan_loss" not in registry.get("pix2pix").options


def test_a_run_from_before_loss_keeps_its_gan_loss():
    cfg = registry.get("pix2pix").config({"image_size": SIZE, "ngf": 4, "ndf": 4})
    old = {k: v for k, v in cfg.items()
           if k not in registry.IMAGE_TO_IMAGE_TECHNIQUES} | {"gan_loss": "lsgan"}
    t = runs.build_trainer(old, INFO, torch.device("cpu"))
    assert t.cfg["loss"] == "lsgan" and "gan_loss" not in t.cfg
    assert not t.cfg["spectral_norm"] and "G_ema" not in t.nets


def test_deluxe_after_jitter_keeps_pairs_aligned_and_unpaired_images_apart():
    torch.manual_seed(0)
    a = images(8)
    for jitter in (True, False):
        t = trainer("pix2pix", augment="deluxe", jitter=jitter, image_size=16, disc_layers=2)
        out = jointly({"A": a, "B": a.clone()}, t.batch_transform())
        assert out["A"].shape == (8, 3, 16, 16) if jitter else (8, 3, SIZE, SIZE)
        assert torch.equal(out["A"], out["B"])  # one crop, flip and stretch per pair
        assert not torch.allclose(out["A"], a[..., :16, :16] if jitter else a)
    t = trainer("cyclegan", augment="deluxe", jitter=False)
    out = jointly({"A": a, "B": a.clone()}, t.batch_transform())
    assert not torch.allclose(out["A"], out["B"])  # unpaired: a draw per image
    assert trainer("cyclegan", jitter=False).batch_transform() is None


def test_default_transform_is_the_plain_jitter():
    from gancli.pairs import jitter

    a = images(8)
    transform = trainer("pix2pix", image_size=16, disc_layers=2).batch_transform()
    torch.manual_seed(3)
    plain = jitter(a, 16)
    torch.manual_seed(3)
    assert torch.equal(transform(a), plain)


@pytest.mark.parametrize("args,needle", [
    (["pix2pix", "--loss", "wasserstein"], "--loss must be one of bce, lsgan, hinge"),
    (["pix2pix", "--gan-loss", "lsgan"], "no option --gan-loss"),
    (["cyclegan", "--diffaug", "color,blur"], "unknown DiffAugment policy 'blur'"),
    (["cyclegan", "--ema", "1"], "--ema must be in [0, 1)"),
    (["pix2pix", "--augment", "fancy"], "--augment must be one of"),
    (["cyclegan", "--spectral-norm=maybe"], "--spectral-norm takes no value"),
])
def test_invalid_technique_options_are_one_line_errors(cli, args, needle):
    one_line_error(cli("train", *args), needle)


def test_help_and_inspect_know_the_options(cli):
    result = cli("train", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for model in ("pix2pix", "cyclegan"):
        options = text.split(f"{model}: ", 1)[1].split(": ", 1)[0]
        for flag in ("--augment", "--diffaug", "--spectral-norm", "--loss", "--ema"):
            assert flag in options, (model, flag)
    assert "--loss (lsgan)" in text.split("cyclegan: ", 1)[1]
    result = cli("inspect", "pix2pix", "--image-size", "32", "--ngf", "4", "--ndf", "4",
                 "--spectral-norm", "--ema", "0.9")
    assert result.exit_code == 0, result.output
    g, d = result.stdout.split("U-Net blocks")[0].split("D: Sequential")
    assert "InstanceNorm2d" in g and "InstanceNorm2d" not in d
    assert d.count("ParametrizedConv2d") == 5 and "_SpectralNorm" not in d


def test_train_and_translate_with_every_technique_through_the_cli(cli, tmp_path):
    techniques = ["--diffaug", "color,translation,cutout", "--spectral-norm", "--ema", "0.99",
                  "--augment", "deluxe", "--max-steps", "2"]
    pairs_dir = make_pairs(tmp_path / "pairs")
    result = cli("train", "pix2pix", "--dataset", f"folder:{pairs_dir}", *P2P, *techniques,
                 "--loss", "hinge", "--name", "p")
    assert result.exit_code == 0, result.output
    domains = make_domains(tmp_path / "cats")
    result = cli("train", "cyclegan", "--dataset", f"folder:{domains}", *CYC, *techniques,
                 "--name", "c")
    assert result.exit_code == 0, result.output
    runs = tmp_path / "checkpoints"
    p = checkpoint.load(runs / "pix2pix" / "p" / "checkpoint.pt")
    assert p["config"]["loss"] == "hinge" and "G_ema" in p["nets"]
    assert any("parametrizations.weight" in k for k in p["nets"]["D"])
    c = checkpoint.load(runs / "cyclegan" / "c" / "checkpoint.pt")
    assert {"G_AB_ema", "G_BA_ema"} <= set(c["nets"]) and c["config"]["loss"] == "lsgan"

    result = cli("translate", "pix2pix", pairs_dir, "--out", tmp_path / "p_out")
    assert result.exit_code == 0, result.output
    assert "PSNR" in result.stdout
    result = cli("translate", "cyclegan", domains / "B", "--direction", "BtoA",
                 "--out", tmp_path / "c_out")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "c_out").glob("*.png"))) == 11  # 10 images + contact sheet
    assert cli("train", "cyclegan", "--resume", runs / "cyclegan" / "c", "--max-steps",
               "3").exit_code == 0


def test_an_old_pix2pix_run_translates_and_resumes(cli, tmp_path):
    data = make_pairs(tmp_path / "pairs")
    assert cli("train", "pix2pix", "--dataset", f"folder:{data}", *P2P, "--max-steps", "1",
               "--name", "old").exit_code == 0
    path = tmp_path / "checkpoints" / "pix2pix" / "old" / "checkpoint.pt"
    ckpt = checkpoint.load(path)
    ckpt["config"] = {k: v for k, v in ckpt["config"].items()
                      if k not in registry.IMAGE_TO_IMAGE_TECHNIQUES} | {"gan_loss": "lsgan"}
    checkpoint.save(path, ckpt)
    result = cli("translate", "pix2pix", data, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    result = cli("train", "pix2pix", "--resume", path.parent, "--max-steps", "2")
    assert result.exit_code == 0, result.output
    assert checkpoint.load(path)["state"]["step"] == 2


def test_real_data_cyclegan_cats_with_techniques(cli, shared_data, tmp_path):
    result = cli("train", "cyclegan", "--dataset", f"folder:{shared_data / 'grumpy_cats'}",
                 *CYC, "--max-steps", "2", "--diffaug", "translation,cutout",
                 "--spectral-norm", "--ema", "0.99", "--augment", "deluxe", "--name", "r")
    assert result.exit_code == 0, result.output
    some = tmp_path / "some"
    some.mkdir()
    for file in sorted((shared_data / "grumpy_cats" / "A").iterdir())[:2]:
        (some / file.name).write_bytes(file.read_bytes())
    result = cli("translate", "cyclegan", some, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "cycle L1" in result.stdout
