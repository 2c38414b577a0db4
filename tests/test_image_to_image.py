"""pix2pix, CycleGAN and `gancli translate`: shapes, receptive fields, paired jitter, the
fake pool, the LR schedule, tiny training runs through the CLI, resume, and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gancli import checkpoint, pairs
from gancli.data import jointly
from gancli.nets.patchgan import patchgan, receptive_field
from gancli.nets.unet import UNet, block_shapes
from gancli.trainers.cyclegan import ImagePool, lr_factor

P2P = ["--image-size", "32", "--ngf", "4", "--ndf", "4", "--batch-size", "4"]
CYC = [*P2P, "--blocks", "1"]


def make_pairs(root: Path, n: int = 8, size: int = 32) -> Path:
    """Side-by-side A|B files; B is A's negative, so a target is easy to recognise."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(n):
        a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(np.concatenate([a, 255 - a], axis=1)).save(root / f"{i:02d}.png")
    return root


def make_domains(root: Path, sizes: tuple[int, int] = (6, 10), size: int = 32) -> Path:
    rng = np.random.default_rng(1)
    for name, n in zip("AB", sizes, strict=True):
        (root / name).mkdir(parents=True)
        for i in range(n):
            arr = rng.integers(0, 128, (size, size, 3), dtype=np.uint8) + 100 * (name == "B")
            Image.fromarray(arr).save(root / name / f"{i}.png")
    return root


def weights(run: Path) -> dict[str, torch.Tensor]:
    ckpt = checkpoint.load(run / "checkpoint.pt")
    return {f"{n}.{k}": v for n, sd in ckpt["nets"].items() for k, v in sd.items()}


def flat(text: str) -> str:
    """Rich wraps long lines at 80 columns in tests; compare with single spaces."""
    return " ".join(text.split())


def one_line_error(result, text: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error:") and text in result.stderr, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr


@pytest.mark.parametrize("size", [64, 128, 256])
def test_unet_depth_follows_the_image_size(size):
    net = UNet(3, 3, size, ngf=4).eval()
    x = torch.zeros(1, 3, size, size)
    assert net(x).shape == x.shape
    blocks = {name: shape for name, shape, _ in block_shapes(net, x)}
    depth = size.bit_length() - 1  # 256 -> 8 downsamplings
    assert blocks[f"enc{depth}"] == (32, 1, 1) and f"enc{depth + 1}" not in blocks
    assert blocks["enc1"] == (4, size // 2, size // 2)
    assert blocks["dec1"] == (32, 2, 2) and blocks[f"dec{depth}"] == (3, size, size)
    assert sum(isinstance(m, torch.nn.Dropout) for m in net.modules()) == 3


def test_patchgan_receptive_fields_come_from_its_layers():
    fields = [receptive_field(patchgan(6, 2, n)) for n in range(1, 7)]
    assert fields == [16, 34, 70, 142, 286, 574]
    assert patchgan(6, 2, 3)(torch.zeros(1, 6, 256, 256)).shape == (1, 1, 30, 30)


def test_inspect_pix2pix_lists_blocks_and_receptive_fields(cli):
    result = cli("inspect", "pix2pix", "--image-size", "256", "--ngf", "8", "--ndf", "8")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "enc8" in out and "(64, 1, 1)" in out and "(3, 256, 256)" in out
    assert "+ enc7 -> (128, 2, 2)" in out  # dec1 joined with its skip
    for field in (16, 34, 70, 142, 286, 574):
        assert f"{field}x{field}" in out
    assert "30x30" in out and "<- this model" in out


def test_jitter_gives_both_images_of_a_pair_the_same_crop_and_flip():
    torch.manual_seed(0)
    n, big, size = 64, 12, 8
    ys, xs = torch.meshgrid(torch.arange(big), torch.arange(big), indexing="ij")
    a = torch.stack([ys, xs]).float().expand(n, -1, -1, -1) / 100  # pixel = its coordinates
    out = jointly({"A": a, "B": -a}, lambda x: pairs.jitter(x, size))
    assert out["A"].shape == (n, 2, size, size)
    assert torch.equal(out["B"], -out["A"])  # same crop and flip
    tops = out["A"][:, 0, 0, 0] * 100
    flipped = out["A"][:, 1, 0, 0] > out["A"][:, 1, 0, -1]
    assert len(set(tops.tolist())) > 1 and 0 < flipped.sum() < n  # crops and flips vary
    lefts = torch.where(flipped, out["A"][:, 1, 0, -1], out["A"][:, 1, 0, 0]) * 100
    assert tops.max() <= big - size and lefts.max() <= big - size
    assert torch.equal(pairs.center_crop(a, size)[:, 0, 0, 0] * 100, torch.full((n,), 2.0))


def test_image_pool_returns_new_or_past_fakes_and_stays_bounded():
    torch.manual_seed(0)
    assert torch.equal(ImagePool(0).query(torch.ones(3, 1, 2, 2)), torch.ones(3, 1, 2, 2))
    pool = ImagePool(4)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling up: the new fakes themselves
    seen = set(range(4))
    old_returned = 0
    for step in range(1, 20):
        batch = torch.full((2, 1, 1, 1), 100.0 + step)
        out = pool.query(batch).flatten().tolist()
        assert all(v == 100 + step or v in seen for v in out)
        old_returned += sum(v != 100 + step for v in out)
        seen.add(100.0 + step)
        assert len(pool.images) == 4
    assert 0 < old_returned < 38  # about half are past fakes


def test_lr_schedule_is_constant_then_decays_linearly_to_zero():
    factors = [lr_factor(s, 100, 0.5) for s in range(101)]
    assert factors[:50] == [1.0] * 50
    assert factors[50] == 1.0 and factors[75] == 0.5 and factors[100] == 0.0
    assert all(a >= b for a, b in zip(factors, factors[1:], strict=False))
    assert lr_factor(10, 100, 1.0) == 1.0  # decay_start 1: never decays


def test_pix2pix_trains_resumes_exactly_and_translates(cli, tmp_path):
    data = make_pairs(tmp_path / "pairs")
    base = ["train", "pix2pix", "--dataset", f"folder:{data}", *P2P]
    assert cli(*base, "--name", "straight", "--epochs", "2").exit_code == 0
    result = cli(*base, "--name", "split", "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert "D(fake)" in result.stderr and "L1" in result.stderr
    runs = tmp_path / "checkpoints" / "pix2pix"
    assert cli("train", "pix2pix", "--resume", runs / "split", "--epochs", "2").exit_code == 0
    a, b = weights(runs / "straight"), weights(runs / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    for f in ("real_vs_fake.png", "samples/epoch_002.png", "loss_curves.png"):
        assert (runs / "straight" / f).is_file()

    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    for name in ("00.png", "01.png"):
        (inputs / name).write_bytes((data / name).read_bytes())
    (inputs / "sub" / "02.png").write_bytes((data / "02.png").read_bytes())
    Image.new("RGB", (40, 40), "red").save(inputs / "single.jpg")  # not a pair
    (inputs / "notes.txt").write_text("not an image")
    (inputs / "broken.png").write_bytes(b"\x89PNG garbage")
    out = inputs / "out"  # inside the input folder: must not be translated next time
    for _ in range(2):
        result = cli("translate", "pix2pix", inputs, "--checkpoint", runs / "straight",
                     "--out", out)
        assert result.exit_code == 0, result.output
    assert "skipped 1 unreadable image file" in result.stderr  # listed in the output folder
    assert "broken.png\t" in (out / "unreadable.txt").read_text()
    assert "1 non-image files" in result.stdout
    assert "L1 to target" in result.stdout and "PSNR" in result.stdout
    for name in ("00.png", "01.png", "sub/02.png", "single.jpg"):
        assert Image.open(out / name).size == (32, 32)
    assert Image.open(out / "triptychs" / "sub" / "02.png").size == (96, 32)
    assert (out / "contact_sheet.png").is_file()
    assert not (out / "out").exists()

    result = cli("translate", "pix2pix", data, "--direction", "AtoB", "--out", out)
    one_line_error(result, "translates BtoA")


def test_cyclegan_trains_with_pool_and_decay_and_resumes_exactly(cli, tmp_path):
    data = make_domains(tmp_path / "cats")
    base = ["train", "cyclegan", "--dataset", f"folder:{data}", *CYC, "--pool", "3"]
    result = cli(*base, "--name", "straight", "--epochs", "2")
    assert result.exit_code == 0, result.output
    assert "(10 images" in flat(result.stderr)  # an epoch covers the larger domain
    assert "cyc ABA" in result.stderr and "…" not in result.stderr  # 8 terms, none cut
    assert cli(*base, "--name", "split", "--epochs", "1").exit_code == 0
    runs = tmp_path / "checkpoints" / "cyclegan"
    assert cli("train", "cyclegan", "--resume", runs / "split", "--epochs", "2").exit_code == 0
    a, b = weights(runs / "straight"), weights(runs / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ckpt = checkpoint.load(runs / "straight" / "checkpoint.pt")
    assert ckpt["step"] == 4 and ckpt["pools"]["A"].shape[0] == 3
    assert ckpt["opts"]["G"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * 1 / 2)

    result = cli("translate", "cyclegan", data / "B", "--direction", "BtoA",
                 "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "cycle L1" in result.stdout and len(list((tmp_path / "out").glob("*.png"))) == 11


def test_real_data_pix2pix_facades_and_cyclegan_cats(cli, shared_data, tmp_path):
    result = cli("train", "pix2pix", "--dataset", f"folder:{shared_data / 'facades' / 'train'}",
                 *P2P, "--max-steps", "2", "--name", "f")
    assert result.exit_code == 0, result.output
    assert "(400 images" in flat(result.stderr)
    val = tmp_path / "val"
    val.mkdir()
    for name in ("1.jpg", "2.jpg"):
        (val / name).write_bytes((shared_data / "facades" / "val" / name).read_bytes())
    result = cli("translate", "pix2pix", val, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "2 A|B pairs" in result.stdout and (tmp_path / "out" / "triptychs" / "1.png").is_file()

    for disc in ("patch", "dc"):
        result = cli("train", "cyclegan", "--dataset", f"folder:{shared_data / 'grumpy_cats'}",
                     *CYC, "--max-steps", "1", "--disc", disc, "--name", disc)
        assert result.exit_code == 0, result.output
    assert "(204 images" in flat(result.stderr)


def test_errors_are_one_line(cli, tmp_path, folder):
    one_line_error(cli("train", "pix2pix", "--dataset", f"folder:{tmp_path / 'nope'}", *P2P),
                   "does not exist")
    one_line_error(cli("train", "pix2pix", "--dataset", f"folder:{folder}", *P2P),
                   "neither side-by-side")
    one_line_error(cli("train", "cyclegan", "--dataset", f"folder:{folder}", *CYC),
                   "trainA/ and trainB/")
    one_line_error(cli("train", "pix2pix", *P2P), "--data-root")  # facades not downloaded
    data = make_pairs(tmp_path / "pairs", n=4)
    one_line_error(cli("train", "pix2pix", "--dataset", f"folder:{data}", *P2P,
                       "--disc-layers", "4"), "--image-size >= 48")
    one_line_error(cli("train", "pix2pix", "--dataset", f"folder:{data}", "--image-size", "48"),
                   "power of two")
    assert cli("train", "pix2pix", "--dataset", f"folder:{data}", *P2P, "--max-steps", "1",
               "--name", "r").exit_code == 0
    one_line_error(cli("translate", "pix2pix", tmp_path / "missing"), "does not exist")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images")
    one_line_error(cli("translate", "pix2pix", tmp_path / "empty"), "no images found")
