"""Shared fixtures: tiny synthetic datasets, a CLI runner, the real data when it is there."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TINY = ["--image-size", "16", "--ngf", "8", "--ndf", "8", "--batch-size", "8", "--nz", "8"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs (and any default output file) land in tmp_path, datasets never download, one
    thread keeps results exact."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GANCLI_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("GANCLI_DATA", str(tmp_path / "no-data"))
    torch.set_num_threads(1)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED


def make_folder(root: Path, classes: int = 2, per_class: int = 12, size: int = 20,
                channels: int = 3) -> Path:
    """A labelled ImageFolder tree of random-ish images (each class has its own brightness)."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True)
        for i in range(per_class):
            arr = rng.integers(0, 80, (size, size, channels), dtype=np.uint8) + 80 * c
            Image.fromarray(arr.squeeze(-1) if channels == 1 else arr).save(d / f"{i:03d}.png")
    return root


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "data")


@pytest.fixture
def cli():
    """Invoke the real Typer app in-process; returns click's Result (stdout/stderr apart)."""
    from gancli.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], env=dict(os.environ))

    return invoke


@pytest.fixture
def classifier_run(cli, tmp_path: Path) -> Path:
    """A tiny (barely trained) reference classifier, through the real train command."""
    result = cli("train", "classifier", "--dataset", "mnist-mini", "--max-steps", "2",
                 "--width", "4", "--feature-dim", "8", "--batch-size", "32", "--name", "tiny")
    assert result.exit_code == 0, result.stderr
    return tmp_path / "checkpoints" / "classifier" / "tiny"
