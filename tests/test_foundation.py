"""DCGAN networks, data loading and the one-line errors a user sees."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from gancli import data, registry
from gancli.nets.dcgan import Discriminator, Generator, build, plan
from tests.conftest import TINY


@pytest.mark.parametrize("size", [16, 28, 32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes(size, channels):
    g = Generator(nz=10, channels=channels, image_size=size, ngf=4)
    d = Discriminator(channels=channels, image_size=size, ndf=4)
    x = g(torch.randn(3, 10))
    assert x.shape == (3, channels, size, size)
    assert x.abs().max() <= 1
    assert d(x).shape == (3, 1)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_nearest_upsampling_generator(norm):
    g = Generator(nz=10, channels=3, image_size=64, ngf=4, upsample="nearest", norm=norm)
    assert g(torch.randn(2, 10)).shape == (2, 3, 64, 64)
    kinds = {type(m).__name__ for m in g.modules()}
    assert "Upsample" in kinds and ("InstanceNorm2d" in kinds) == (norm == "instance")


def test_dcgan_conditional_inputs():
    g = Generator(nz=10, channels=1, image_size=28, ngf=4, num_classes=10)
    d = Discriminator(channels=1, image_size=28, ndf=4, outputs=11, num_classes=10)
    y = torch.tensor([3, 7])
    assert d(g(torch.randn(2, 10), y), y).shape == (2, 11)


def test_dcgan_init_follows_the_paper():
    nets = build(registry.get("dcgan").config({"image_size": 64}), {"channels": 3})
    conv = nets["G"].main[0].weight
    assert abs(conv.std().item() - 0.02) < 0.002 and abs(conv.mean().item()) < 0.002
    bn = nets["D"].features[3]
    assert abs(bn.weight.mean().item() - 1) < 0.01 and bn.bias.abs().max() == 0


def test_plan_rejects_unsupported_sizes():
    assert plan(28) == (7, 2) and plan(64) == (4, 4) and plan(256) == (4, 6)
    with pytest.raises(Exception, match="image size 30"):
        plan(30)


def test_mnist_mini_ships_with_the_package():
    mini = data.load("mnist-mini")
    assert mini.images.shape == (10000, 1, 28, 28) and mini.images.dtype == torch.uint8
    assert mini.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert torch.bincount(mini.labels).tolist()[:3] == [980, 1135, 1032]


def test_folder_dataset_labels_resize_and_range(folder):
    ds = data.load(f"folder:{folder}", image_size=16)
    assert ds.images.shape == (24, 3, 16, 16) and ds.classes == ["class0", "class1"]
    assert ds.labels.tolist() == [0] * 12 + [1] * 12
    batch = next(data.Batches({"image": ds.images}, 8, 0, torch.device("cpu")).epoch(0))
    assert batch["image"].shape == (8, 3, 16, 16)
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1


def test_unlabelled_folder(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.new("L", (10, 12), color=i * 50).save(tmp_path / f"{i}.png")
    ds = data.load(f"folder:{tmp_path}")
    assert ds.labels is None and ds.images.shape == (3, 1, 10, 10)


def test_batches_order_depends_only_on_seed_and_epoch():
    x = torch.arange(10, dtype=torch.long)
    b = data.Batches({"i": x}, 3, seed=5, device=torch.device("cpu"))
    first = [t["i"].tolist() for t in b.epoch(1)]
    assert len(first) == 3 and [t["i"].tolist() for t in b.epoch(1)] == first
    assert [t["i"].tolist() for t in b.epoch(1, skip=2)] == first[2:]
    assert [t["i"].tolist() for t in b.epoch(2)] != first


def test_real_mnist_from_shared_data(shared_data, cli, tmp_path):
    result = cli("train", "dcgan", "--dataset", "mnist", "--data-root", shared_data,
                 "--max-steps", "3", "--batch-size", "32", "--ngf", "16", "--ndf", "16")
    assert result.exit_code == 0, result.output
    assert "60000 images" in result.stderr
    assert list((tmp_path / "checkpoints" / "dcgan").glob("*/samples/epoch_001.png"))


def one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0]


def test_errors_are_one_line(cli, folder, tmp_path):
    one_line_error(cli("train", "nope"), "unknown model 'nope'", "dcgan")
    one_line_error(cli("train", "dcgan", "--dataset", "imagenet"), "unknown dataset")
    one_line_error(cli("train", "dcgan", "--dataset", f"folder:{folder}", "--image-size", "30"),
                   "image size 30")
    one_line_error(cli("train", "dcgan", "--dataset", "folder:/no/such/dir"), "does not exist")
    one_line_error(cli("train", "dcgan", "--wat", "1"), "no option --wat")
    one_line_error(cli("sample", "wgan-gp"), "no trained wgan-gp run", "--checkpoints-dir")
    one_line_error(cli("sample", tmp_path / "missing.pt"), "neither a model")


def test_missing_dataset_offline_says_where_files_go(cli, monkeypatch, tmp_path):
    import torchvision.datasets as tvd

    def offline(*args, **kwargs):
        raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(tvd, "MNIST", offline)
    result = cli("train", "dcgan", "--dataset", "mnist", "--data-root", tmp_path / "empty")
    one_line_error(result, "MNIST/raw/train-images-idx3-ubyte", str(tmp_path / "empty"))


def test_bad_checkpoints_are_clear(cli, folder, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    one_line_error(cli("sample", junk), "not a readable gancli checkpoint")
    text = tmp_path / "text.pt"
    text.write_text("hi\n")  # torch.load raises KeyError on this one
    one_line_error(cli("sample", text), "not a readable gancli checkpoint")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    one_line_error(cli("sample", tmp_path / "other.pt"), "not a gancli checkpoint")
    assert cli("train", "dcgan", "--dataset", f"folder:{folder}", *TINY, "--name", "r",
               "--max-steps", "1").exit_code == 0
    good = tmp_path / "checkpoints" / "dcgan" / "r" / "checkpoint.pt"
    cut = tmp_path / "truncated.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    one_line_error(cli("sample", cut), "not a readable gancli checkpoint")


def test_unwritable_output_and_existing_run(cli, folder, tmp_path):
    assert cli("train", "dcgan", "--dataset", f"folder:{folder}", *TINY, "--name", "r",
               "--max-steps", "1").exit_code == 0
    one_line_error(cli("sample", "dcgan", "--out", "/proc/gancli.png"), "cannot write")
    one_line_error(cli("train", "dcgan", "--dataset", f"folder:{folder}", *TINY, "--name", "r"),
                   "exists")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    one_line_error(cli("train", "dcgan", "--dataset", f"folder:{folder}",
                       "--checkpoints-dir", blocker), "cannot create run folder")


def test_python_dash_m_and_help():
    out = subprocess.run([sys.executable, "-m", "gancli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for command in ("train", "sample", "inspect"):
        assert command in out


@pytest.mark.parametrize(("n", "nrow", "pad"), [(1, 8, 2), (7, 3, 2), (8, 8, 0), (5, 10, 1)])
def test_grid_tiles_like_torchvision(n, nrow, pad):
    from torchvision.utils import make_grid

    from gancli.viz import tile

    x = torch.randint(0, 256, (n, 3, 5, 4), dtype=torch.uint8)
    assert torch.equal(tile(x, nrow, pad), make_grid(x, nrow=nrow, padding=pad, pad_value=255))


def test_sampling_does_not_import_torchvision():
    code = ("import sys, gancli.cli, gancli.runs, gancli.sampling, gancli.viz, gancli.latent; "
            "sys.exit('torchvision' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
