"""The shipped image-to-image runs work right after install, offline: each loads, translates
an image at its size through `gancli translate`, and (with the real data beside the repo)
still does its job: labels -> a facade close to the real photo, a cat round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gancli import runs
from gancli.checkpoint import SHIPPED

PIX2PIX = SHIPPED / "pix2pix" / "pretrained-facades"
CYCLEGAN = SHIPPED / "cyclegan" / "pretrained-grumpy-cats"
# CMP facade label colours as pix2pix's label maps draw them: background, facade, window, door
PALETTE = [(0, 0, 222), (1, 48, 255), (2, 127, 254), (1, 207, 255)]


def label_map(size: int = 256) -> Image.Image:
    """A facade-like label map: wall with rows of windows and a door at the bottom."""
    a = np.zeros((size, size, 3), np.uint8)
    a[:] = PALETTE[1]
    step = size // 8
    for row in range(1, 6):
        for col in range(1, 7):
            a[row * step + 4: row * step + step - 4, col * step + 4: col * step + step - 8] = \
                PALETTE[2]
    a[6 * step:, 3 * step: 4 * step] = PALETTE[3]
    return Image.fromarray(a)


@pytest.mark.parametrize("run", [PIX2PIX, CYCLEGAN])
def test_shipped_translators_are_exported_and_small(run: Path):
    _, ckpt = runs.restore(str(run), torch.device("cpu"))
    assert ckpt["exported"] and ckpt["state"]["commands"] and ckpt["state"]["seconds"] > 0
    assert (run / "checkpoint.pt").stat().st_size < 25e6
    assert not any(name.startswith("D") for name in ckpt["nets"])  # sampling networks only


def test_shipped_pix2pix_turns_a_label_map_into_a_facade(cli, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    label_map().save(labels / "house.png")
    result = cli("translate", "pix2pix", labels, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "pretrained-facades" in " ".join(result.stdout.split())
    assert "not measured" not in result.stdout  # label maps alone have no reference to miss
    photo = np.asarray(Image.open(tmp_path / "out" / "house.png"), np.float32)
    size = json.loads((PIX2PIX / "config.json").read_text())["image_size"]
    assert photo.shape == (size, size, 3)
    assert photo.std() > 20  # a picture with structure, not a flat or blank image


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_shipped_cyclegan_translates_both_ways(cli, tmp_path, direction):
    cats = tmp_path / "cats"
    cats.mkdir()
    g = np.random.default_rng(0)
    Image.fromarray(g.integers(0, 256, (80, 96, 3), np.uint8)).save(cats / "cat.png")
    result = cli("translate", "cyclegan", cats, "--direction", direction,
                 "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "pretrained-grumpy-cats" in " ".join(result.stdout.split())
    size = json.loads((CYCLEGAN / "config.json").read_text())["image_size"]
    assert Image.open(tmp_path / "out" / "cat.png").size == (size, size)
    assert "cycle L1" in json.loads((tmp_path / "out" / "metrics.json").read_text())["metrics"]


def test_shipped_translators_on_held_out_real_images(cli, shared_data, tmp_path):
    """A regression guard far looser than the README's numbers: real test facades come
    out close to their photos, and real cats make the round trip."""
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for name in ("1.jpg", "2.jpg", "3.jpg", "4.jpg"):
        (pairs / name).write_bytes((shared_data / "facades" / "test" / name).read_bytes())
    result = cli("translate", "pix2pix", pairs, "--out", tmp_path / "facades")
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "facades" / "metrics.json").read_text())["metrics"]
    assert scores["L1 to target"] < 0.5 and scores["SSIM"] > 0.15, scores

    cats = tmp_path / "cats"
    cats.mkdir()
    for f in sorted((shared_data / "grumpy_cats" / "A").iterdir())[:4]:
        (cats / f.name).write_bytes(f.read_bytes())
    result = cli("translate", "cyclegan", cats, "--direction", "AtoB", "--out", tmp_path / "c")
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "c" / "metrics.json").read_text())["metrics"]
    assert scores["cycle L1"] < 0.3, scores
