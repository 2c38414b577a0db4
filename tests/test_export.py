"""`gancli export --format onnx`: graphs that take any batch size, checked against PyTorch
before they are kept; a graph that differs is refused in one line and leaves nothing."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from gancli import runs
from tests.test_engine import train_tiny

ort = pytest.importorskip("onnxruntime")


def test_onnx_generator_matches_pytorch_at_any_batch_size(cli, folder, tmp_path):
    assert train_tiny(cli, folder, "r", "--max-steps", "2", "--ema", "0.9").exit_code == 0
    result = cli("export", "dcgan/r", tmp_path / "out", "--format", "onnx")
    assert result.exit_code == 0, result.output
    assert "G.onnx (max |PyTorch - onnxruntime|" in result.stderr
    manifest = json.loads((tmp_path / "out" / "onnx.json").read_text())
    assert manifest["graphs"]["G.onnx"]["inputs"]["noise"]["shape"] == ["batch", 8]
    assert not list((tmp_path / "out").glob("*.data"))  # one file a graph
    trainer, _ = runs.restore("dcgan/r", torch.device("cpu"))
    z = torch.randn(7, 8)
    session = ort.InferenceSession(str(tmp_path / "out" / "G.onnx"))
    got = session.run(["images"], {"noise": z.numpy()})[0]
    with torch.no_grad():
        expected = trainer.sampler("G").eval()(z).numpy()  # the EMA copy, as sample uses
    assert got.shape == (7, 3, 16, 16) and np.abs(got - expected).max() < 1e-4


def test_an_export_that_differs_is_refused_and_leaves_nothing(cli, folder, tmp_path,
                                                              monkeypatch):
    from gancli import export

    assert train_tiny(cli, folder, "r", "--max-steps", "1").exit_code == 0
    real = export.run_onnx
    monkeypatch.setattr(export, "run_onnx", lambda *a: real(*a) + 1e-3)
    result = cli("export", "dcgan/r", tmp_path / "out", "--format", "onnx")
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: the ONNX graph of G differs from PyTorch "
                                            "by 0.001 ")
    assert "nothing was exported" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unknown_format_is_one_line(cli, folder, tmp_path):
    assert train_tiny(cli, folder, "r", "--max-steps", "1").exit_code == 0
    result = cli("export", "dcgan/r", tmp_path / "out", "--format", "tflite")
    assert result.exit_code == 2
    assert "--format must be one of pt, onnx, not 'tflite'" in result.stderr


def test_missing_onnxruntime_is_one_line_and_leaves_nothing(cli, folder, tmp_path,
                                                            monkeypatch):
    assert train_tiny(cli, folder, "r", "--max-steps", "1").exit_code == 0
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    result = cli("export", "dcgan/r", tmp_path / "out", "--format", "onnx")
    assert result.exit_code == 2
    assert ("--format onnx needs onnxruntime (pip install onnx onnxscript onnxruntime)"
            in result.stderr) and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()
