"""One contract for every model in the registry, on tiny data: train a step, checkpoint,
resume a step more, restore, sample and/or translate, export (pt and onnx), inspect, and
what every logger wrote. A model added to the registry is covered with no new test."""

from __future__ import annotations

import json

import pytest
import torch

from gancli import registry, runs
from gancli.evaluate import can_generate
from tests.conftest import make_folder
from tests.test_image_to_image import make_domains, make_pairs

DATA = {"images": lambda root: make_folder(root, classes=2, per_class=4),
        "paired": make_pairs, "unpaired": make_domains}


def flags(options: dict) -> list[str]:
    """{"image_size": 16, "conditional": True} -> ["--image-size", "16", "--conditional"]."""
    out = []
    for key, value in options.items():
        flag = registry.flag_of(key)
        if isinstance(value, bool):
            out.append(flag if value else f"--no-{flag[2:]}")
        else:
            out += [flag, str(value)]
    return out


@pytest.mark.parametrize("model", list(registry.MODELS))
def test_every_model_keeps_the_contract(model, cli, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tensorboard")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # offline: no Inception
    spec = registry.get(model)
    data = DATA[spec.data](tmp_path / "data")
    run = tmp_path / "checkpoints" / model / "r"

    def ok(*args):
        result = cli(*args)
        assert result.exit_code == 0, f"gancli {' '.join(map(str, args))}\n{result.output}"
        return result

    ok("train", model, "--dataset", f"folder:{data}", *flags(spec.tiny), "--batch-size", "4",
       "--epochs", "2", "--max-steps", "1", "--name", "r", "--log", "files,tensorboard,html")
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 1
    ok("train", model, "--resume", run, "--max-steps", "2")
    trainer, ckpt = runs.restore(str(run), torch.device("cpu"))
    assert ckpt["state"]["step"] == 2 and not any(n.training for n in trainer.nets.values())

    if can_generate(trainer):
        ok("sample", run, "--n", "4", "--out", tmp_path / "samples.png")
        assert (tmp_path / "samples.png").is_file()
    if spec.translate_options:
        ok("translate", run, data, "--out", tmp_path / "translated")
        assert any((tmp_path / "translated").rglob("*.png"))

    ok("export", run, tmp_path / "pt")
    ok("inspect", tmp_path / "pt")
    ok("export", run, tmp_path / "onnx", "--format", "onnx")
    graphs = json.loads((tmp_path / "onnx" / "onnx.json").read_text())["graphs"]
    assert graphs and all((tmp_path / "onnx" / file).is_file() for file in graphs)
    assert all(g["max_abs_diff"] <= 1e-4 for g in graphs.values())
    ok("inspect", run)

    # the loggers: the run's record, TensorBoard's events, the page, across the resume
    assert len((run / "losses.csv").read_text().splitlines()) == 1 + 2
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_001.png"]
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2
    page = (run / "index.html").read_text()
    assert page.count("data:image/png;base64,") >= 3 and "<script" not in page
