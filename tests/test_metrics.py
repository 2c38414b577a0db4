"""Evaluation: Fréchet distance (pytorch-fid's), features and their cache, the fid command
(classifier and random-weight Inception features), evaluation during training, and
per-class accuracy. Agreement of every other metric with its reference library is in
test_evaluation.py."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_fid.fid_score import calculate_frechet_distance, compute_statistics_of_path

from gancli.errors import GancliError
from gancli.metrics import features, fid
from gancli.metrics.classify import class_report, report_table
from tests.conftest import make_folder


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANCLI_CACHE", str(tmp_path / "cache"))


def _stats(seed: int, n: int = 200, d: int = 8) -> fid.Stats:
    feats = np.random.default_rng(seed).normal(size=(n, d)) * np.arange(1, d + 1)
    return fid.statistics(feats, "test")


def test_frechet_distance_is_pytorch_fids() -> None:
    a, b = _stats(0), _stats(1)
    assert fid.frechet_distance(a, b) == pytest.approx(
        calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma), rel=1e-9)
    assert abs(fid.frechet_distance(a, a)) < 1e-6
    # by hand: means 1 apart in each of 3 dims, covariances I and 4I -> 3 + 3 * (1 + 4 - 4)
    one = fid.Stats(np.zeros(3), np.eye(3), 10, "x")
    two = fid.Stats(np.ones(3), 4 * np.eye(3), 10, "x")
    assert fid.frechet_distance(one, two) == pytest.approx(6.0)


def test_too_few_samples_is_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _stats(0, n=5, d=16), _stats(1, n=5, d=16)
    assert "more than 16" in fid.too_few(a.n, a.dims)
    assert "KID is not" in fid.too_few(a.n, a.dims)
    assert "biased upward" in fid.too_few(2000, 2048)
    assert "biased upward" in fid.too_few(1000, 128) and fid.too_few(2000, 128) is None
    assert np.isfinite(fid.frechet_distance(a, b))  # singular, yet no crash
    with pytest.raises(GancliError, match="at least 2"):
        fid.statistics(np.zeros((1, 16)), "test")

    def imaginary(*args, **kwargs):
        raise ValueError("Imaginary component 3.2")

    monkeypatch.setattr("pytorch_fid.fid_score.calculate_frechet_distance", imaginary)
    with pytest.raises(GancliError, match="at least 17 samples"):
        fid.frechet_distance(a, b)
    with pytest.raises(GancliError, match="measured differently"):
        fid.frechet_distance(a, fid.Stats(a.mu, a.sigma, 5, "other"))


def _set(seed: int, n: int = 200, d: int = 8) -> features.FeatureSet:
    feats = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return features.FeatureSet("test", feats, labels=np.arange(n) % 3)


def test_features_cache_hit_on_second_call(tmp_path: Path) -> None:
    calls = []

    def compute() -> features.FeatureSet:
        calls.append(1)
        return _set(0)

    key = {"dataset": "mnist", "split": "train", "image_size": 28, "extractor": "x", "dims": 8}
    first, hit1 = features.cached(key, compute)
    second, hit2 = features.cached(key, compute)
    assert (hit1, hit2, len(calls)) == (False, True, 1)
    np.testing.assert_array_equal(first.features, second.features)  # KID, PR need them
    np.testing.assert_array_equal(first.labels, second.labels)  # intra-class FID needs them
    # an entry with statistics only (as gancli kept before) is computed again
    (entry,) = (tmp_path / "cache" / "fid-stats").glob("*.npz")
    with np.load(entry) as f:
        mu, sigma = f["mu"], f["sigma"]
    np.savez(entry, mu=mu, sigma=sigma)
    assert features.cached(key, compute)[1] is False and len(calls) == 2
    assert features.cached({**key, "image_size": 32}, compute)[1] is False


def test_npz_round_trip_in_pytorch_fid_format(tmp_path: Path) -> None:
    ours = _set(0)
    ours.save(tmp_path / "ours.npz")
    mu, sigma = compute_statistics_of_path(str(tmp_path / "ours.npz"), None, 50, 8, "cpu")
    np.testing.assert_array_equal(mu, ours.stats().mu)
    np.testing.assert_array_equal(sigma, ours.stats().sigma)
    back = features.FeatureSet.load(tmp_path / "ours.npz")
    assert (back.n, back.extractor, back.features.shape) == (200, "test", (200, 8))
    np.testing.assert_array_equal(back.labels, ours.labels)
    np.savez_compressed(tmp_path / "theirs.npz", mu=mu, sigma=sigma)  # pytorch-fid's own
    theirs = features.FeatureSet.load(tmp_path / "theirs.npz")
    assert (theirs.n, theirs.extractor, theirs.features) == (0, "inception-8", None)


def test_fid_folders_with_classifier_features(cli, tmp_path: Path, classifier_run) -> None:
    a = make_folder(tmp_path / "a", per_class=10, size=28, channels=1)
    b = make_folder(tmp_path / "b", classes=1, per_class=20, size=28, channels=1)
    args = ("fid", a, b, "--features", "classifier", "--classifier", classifier_run)
    result = cli(*args, "--save-stats", tmp_path / "b.npz", "--metrics", "fid")
    assert result.exit_code == 0, result.stderr
    assert "FID" in result.stdout and "classifier-mnist-mini" in result.stdout
    assert features.FeatureSet.load(tmp_path / "b.npz").n == 20
    again = cli("fid", a, tmp_path / "b.npz", "--features", "classifier", "--classifier",
                classifier_run, "--metrics", "fid")
    assert again.exit_code == 0, again.stderr
    assert "cached features (20 images)" in again.stderr

    def fid_row(stdout: str) -> str:
        return next(line for line in stdout.splitlines() if "FID" in line).split()[3]

    assert fid_row(again.stdout) == fid_row(result.stdout)


def test_missing_inception_weights_is_one_line(cli, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr("pytorch_fid.inception.load_state_dict_from_url", offline)
    folder = make_folder(tmp_path / "a")
    result = cli("fid", folder, folder)
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("error:")
    assert features.INCEPTION_FILE in line
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in line
    missing = cli("fid", folder, folder, "--inception-weights", tmp_path / "nope.pth")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr


def test_fid_inception_architecture_random_weights(cli, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    monkeypatch.setattr(features, "inception_state_dict", lambda weights: {})
    monkeypatch.setattr(torchvision.models.Inception3, "load_state_dict",
                        lambda self, state, strict=True: None)
    a = make_folder(tmp_path / "a", classes=1, per_class=6)
    b = make_folder(tmp_path / "b", classes=1, per_class=20)
    result = cli("fid", a, b, "--dims", "64", "--batch-size", "20")
    assert result.exit_code == 0, result.stderr
    assert "inception-64" in result.stdout
    assert "more than 64" in result.stderr  # 6 samples for 64 dims: warned, not crashed
    # the Inception Score from the class logits of the same pass (1008 classes)
    assert "IS" in result.stdout and "KID" in result.stdout


def test_fid_during_training(cli, tmp_path: Path) -> None:
    data = make_folder(tmp_path / "digits", classes=2, per_class=8, size=16, channels=1)
    spec = f"folder:{data}"
    clf = cli("train", "classifier", "--dataset", spec, "--epochs", "1", "--width", "4",
              "--feature-dim", "4", "--batch-size", "8")
    assert clf.exit_code == 0, clf.stderr
    result = cli("train", "dcgan", "--dataset", spec, "--image-size", "16", "--ngf", "8",
                 "--ndf", "8", "--nz", "8", "--batch-size", "8", "--epochs", "2",
                 "--fid-every", "1", "--fid-samples", "10", "--features", "classifier",
                 "--name", "r")  # the flags' first names still work
    assert result.exit_code == 0, result.stderr
    assert "FID-clf" in result.stderr and "best epoch" in result.stderr
    run = tmp_path / "checkpoints" / "dcgan" / "r"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["fid"]) for r in rows) and len(rows) == 2
    assert (run / "best.pt").is_file()
    bad = cli("train", "classifier", "--dataset", spec, "--fid-every", "1")
    assert bad.exit_code == 2 and "does not generate" in bad.stderr


def test_per_class_accuracy_of_a_one_class_generator() -> None:
    classes = [str(d) for d in range(10)]
    asked = torch.arange(100) % 10

    def toy_classifier(images: torch.Tensor) -> torch.Tensor:
        """Logits from mean brightness: everything this generator draws reads as a 3."""
        return -(images.float().mean((1, 2, 3))[:, None] / 25.5 - torch.arange(10)).abs()

    images = torch.full((100, 1, 8, 8), 80, dtype=torch.uint8)  # brightness 80 -> class 3
    report = class_report(toy_classifier(images).argmax(1), asked, classes)
    assert report.per_class[3] == 1.0 and report.per_class.sum() == 1.0
    assert report.mean == pytest.approx(0.1)
    mistakes = report.confused()
    assert len(mistakes) == 5 and all(seen == "3" and rate == 1.0 for _, seen, rate in mistakes)
    assert "most confused: " in report_table(report, "t").caption
