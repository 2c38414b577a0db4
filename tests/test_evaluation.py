"""Every metric agrees with its reference library on the same feature arrays (KID and IS with
torch-fidelity, precision/recall/density/coverage with prdc, FID with pytorch-fid, SSIM and
PSNR with scikit-image), the small-n paths say what they cannot do instead of crashing, and
the metrics reach `gancli fid`, training and `gancli translate`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gancli.errors import GancliError
from gancli.metrics import compare, image
from gancli.metrics.features import FeatureSet
from gancli.metrics.inception_score import inception_score
from gancli.metrics.kid import kid
from gancli.metrics.prdc import prdc, prdc_terms
from tests.conftest import make_folder
from tests.test_image_to_image import P2P, make_domains, make_pairs


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANCLI_CACHE", str(tmp_path / "cache"))


def feats(seed: int, n: int, d: int = 8, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)) * np.linspace(0.5, 2, d) + shift


def fset(x: np.ndarray, **kw) -> FeatureSet:
    return FeatureSet("test", x, **kw)


# --- agreement with the reference libraries -------------------------------------------

@pytest.mark.parametrize(("n_a", "n_b", "size"), [(60, 50, 20), (40, 40, 40), (12, 9, 9)])
def test_kid_is_torch_fidelitys(n_a, n_b, size) -> None:
    from torch_fidelity.metric_kid import kid_features_to_metric

    a, b = feats(0, n_a), feats(1, n_b, shift=0.3)
    theirs = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b),
                                    kid_subsets=7, kid_subset_size=size, verbose=False)
    mean, std = kid(a, b, subsets=7, size=size)
    assert mean == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-6)
    assert std == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-6, abs=1e-12)


def test_kid_of_a_resample_leaves_out_copies_of_one_image() -> None:
    """Within-set pairs of an image with its own copy are left out, as the unbiased
    estimate leaves out each image with itself (checked by brute force)."""
    a, b = feats(0, 6, d=3), feats(1, 5, d=3, shift=1.0)
    i, j = np.array([0, 0, 1, 2, 2, 5]), np.array([4, 3, 3, 0, 1, 1])
    x, y = a[i], b[j]
    k = lambda p, q: (p @ q / 3 + 1) ** 3  # noqa: E731

    def within(z: np.ndarray, src: np.ndarray) -> float:
        pairs = [(s, t) for s in range(len(z)) for t in range(len(z)) if src[s] != src[t]]
        return sum(k(z[s], z[t]) for s, t in pairs) / len(pairs)

    expected = within(x, i) + within(y, j) - 2 * np.mean([k(p, q) for p in x for q in y])
    # subsets of all 6: which positions the RNG picks does not matter
    assert kid(x, y, subsets=2, size=6, sources=(i, j))[0] == pytest.approx(expected, rel=1e-9)
    assert kid(x, y, subsets=2, size=6)[0] > expected  # copies counted as pairs: too high
    with pytest.raises(GancliError, match="copies of a single image"):
        kid(a[[0, 0]], b[[0, 1]], subsets=1, size=2, sources=(np.array([0, 0]),
                                                              np.array([0, 1])))


@pytest.mark.parametrize(("n_real", "n_fake", "d"), [(300, 250, 16), (20, 30, 64), (5, 6, 2)])
def test_prdc_is_the_prdc_packages(n_real, n_fake, d) -> None:
    from prdc import compute_prdc

    real, fake = feats(0, n_real, d), feats(1, n_fake, d, shift=0.5)
    theirs = compute_prdc(real, fake, nearest_k=3)
    ours = prdc(real, fake)
    for key in ("precision", "recall", "density", "coverage"):
        assert ours[key] == pytest.approx(float(theirs[key]), rel=1e-6), key


def test_prdc_ties_and_float32_rounding_are_decided_exactly() -> None:
    """Points of an integer grid, far from the origin: many distances equal a radius
    exactly (strict "<" says no), and float32 alone would round them either way."""
    from prdc import compute_prdc

    grid = np.stack(np.meshgrid(*[np.arange(6)] * 3), -1).reshape(-1, 3).astype(np.float64)
    rng = np.random.default_rng(0)
    real = grid[rng.choice(len(grid), 150, replace=False)] + 1e4
    fake = grid[rng.choice(len(grid), 120, replace=False)] * 1.5 + 1e4 + 0.5
    theirs = compute_prdc(real, fake, nearest_k=3)
    ours = prdc(real, fake)
    for key in ("precision", "recall", "density", "coverage"):
        assert ours[key] == pytest.approx(float(theirs[key]), rel=1e-9), key


def test_prdc_in_small_blocks_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    real, fake = feats(0, 90), feats(1, 70, shift=0.4)
    whole = prdc(real, fake)
    monkeypatch.setattr("gancli.metrics.prdc.BLOCK_ELEMENTS", 500)  # 5-row blocks
    assert prdc(real, fake) == whole


def test_prdc_of_identical_and_disjoint_sets_and_too_few() -> None:
    x = feats(0, 50)
    same = prdc(x, x)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    assert same["density"] == pytest.approx(1.0)
    far = prdc(x, x + 1000)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    with pytest.raises(GancliError, match="more than k = 3"):
        prdc(x[:3], x)


def test_inception_score_is_torch_fidelitys() -> None:
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = np.random.default_rng(0).normal(size=(203, 12)) * 3
    theirs = isc_features_to_metric(torch.from_numpy(logits))
    mean, std = inception_score(logits)
    assert mean == pytest.approx(theirs["inception_score_mean"], rel=1e-6)
    assert std == pytest.approx(theirs["inception_score_std"], rel=1e-6)
    # one class everywhere: 1; 4 confident classes in equal shares: about 4 (each split
    # of the shuffled images holds them in slightly unequal shares)
    assert inception_score(np.tile([9.0, 0, 0], (40, 1)))[0] == pytest.approx(1.0)
    sure = np.eye(4)[np.arange(400) % 4] * 50
    assert 3.8 < inception_score(sure)[0] <= 4.0
    with pytest.raises(GancliError, match="at least 20"):
        inception_score(logits[:19])


def test_fid_is_pytorch_fids_and_zero_for_identical_sets() -> None:
    from pytorch_fid.fid_score import calculate_frechet_distance

    a, b = feats(0, 200), feats(1, 150, shift=0.2)
    report = compare.compare(fset(a), fset(b), ["fid"])
    ref = calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0),
                                     np.cov(b, rowvar=False))
    assert report.values["fid"].value == pytest.approx(ref, rel=1e-6)
    same = compare.compare(fset(a), fset(a), ["fid", "kid"])
    assert same.values["fid"].value == pytest.approx(0.0, abs=1e-6)
    # KID's cross term counts each image with itself here, which its unbiased within-set
    # terms leave out: for a set against itself it is slightly negative, as in
    # torch-fidelity; a set unlike it is far above
    far = compare.compare(fset(a), fset(feats(1, 200, shift=2.0)), ["kid"])
    assert same.values["kid"].value < 0 < far.values["kid"].value
    assert abs(same.values["kid"].value) < 0.1 * far.values["kid"].value


@pytest.mark.parametrize("size", [11, 16, 37])
def test_ssim_and_psnr_are_scikit_images(size) -> None:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(size)
    a = rng.integers(0, 256, (3, 3, size, size + 5), dtype=np.uint8)
    b = np.clip(a + rng.normal(0, 25, a.shape), 0, 255).astype(np.uint8)
    ours_ssim = image.ssim(torch.from_numpy(a), torch.from_numpy(b))
    ours_psnr = image.psnr(torch.from_numpy(a), torch.from_numpy(b))
    for k in range(len(a)):
        x, y = a[k].astype(np.float64), b[k].astype(np.float64)
        ref = structural_similarity(x, y, channel_axis=0, data_range=255,
                                    gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False)
        assert float(ours_ssim[k]) == pytest.approx(ref, rel=1e-6)
        assert float(ours_psnr[k]) == pytest.approx(
            peak_signal_noise_ratio(x, y, data_range=255), rel=1e-6)
    assert float(image.ssim(torch.from_numpy(a), torch.from_numpy(a))[0]) == pytest.approx(1.0)
    assert math.isinf(float(image.psnr(torch.from_numpy(a), torch.from_numpy(a))[0]))
    assert float(image.l1(torch.zeros(1, 1, 2, 2, dtype=torch.uint8),
                          torch.full((1, 1, 2, 2), 255, dtype=torch.uint8))[0]) == 2.0


# --- small n: said in one line, never a crash -----------------------------------------

def test_two_images_per_set() -> None:
    report = compare.compare(fset(feats(0, 2)), fset(feats(1, 2)),
                             ["fid", "kid", "pr", "dc"], bootstrap=5)
    assert set(report.values) <= {"fid", "kid"} and "kid" in report.values
    text = "\n".join(report.notes)
    assert "singular" in text and "KID is not" in text  # FID's bias, in one line
    assert "more than k = 3" in text and "no bootstrap interval" in text
    assert all("\n" not in note for note in report.notes)


def test_fewer_images_than_feature_dimensions() -> None:
    a, b = feats(0, 30, d=64), feats(1, 30, d=64, shift=1.0)
    report = compare.compare(fset(a), fset(b), ["fid", "kid", "pr", "dc"], bootstrap=3)
    assert {"kid", "precision", "recall", "density", "coverage"} <= set(report.values)
    assert any("use more than 64" in note for note in report.notes)
    kid_value = report.values["kid"]
    assert kid_value.spread is None and kid_value.low < kid_value.value < kid_value.high


def test_bootstrap_interval_holds_the_estimate_and_shrinks_with_n() -> None:
    keys = ("fid", "kid", "precision", "recall", "density", "coverage")

    def width(n: int) -> list[float]:
        report = compare.compare(fset(feats(0, n)), fset(feats(1, n, shift=0.5)),
                                 ["fid", "kid", "pr", "dc"], bootstrap=20)
        widths = []
        for key in keys:
            v = report.values[key]
            assert v.low <= v.value <= v.high, key
            widths.append(v.high - v.low)
        return widths

    small, large = width(40), width(640)
    for key, s, w in zip(keys, small, large, strict=True):
        assert w < s / 2, key


def test_precision_recall_density_coverage_terms_average_to_the_metrics() -> None:
    """The bootstrap resamples per-image terms; their means are prdc's numbers exactly."""
    real, fake = feats(0, 300, d=8), feats(1, 200, d=8, shift=0.3)
    terms = prdc_terms(real, fake)
    assert {k: len(v) for k, v in terms.items()} == {"precision": 200, "density": 200,
                                                     "recall": 300, "coverage": 300}
    whole = prdc(real, fake)
    assert all(abs(terms[k].mean() - whole[k]) < 1e-12 for k in whole)


def test_parse_metrics() -> None:
    assert compare.parse("fid, KID,pr") == ["fid", "kid", "pr"]
    assert compare.parse("kid,all") == ["kid", "fid", "pr", "dc", "is", "intra_fid"]
    for bad, match in (("fid,foo", "unknown metric 'foo'"), (" , ", "empty")):
        with pytest.raises(GancliError, match=match):
            compare.parse(bad)


def test_intra_class_fid_per_class_and_missing_classes() -> None:
    labels = np.arange(400) % 2
    ref = fset(feats(0, 400, d=4) + labels[:, None] * 3, labels=labels)
    good = fset(feats(1, 400, d=4) + labels[:, None] * 3, labels=labels)
    swapped = fset(good.features, labels=1 - labels)
    report = compare.Report()
    compare.intra_class_fid(ref, good, ["zero", "one"], report)
    bad = compare.Report()
    compare.intra_class_fid(ref, swapped, ["zero", "one"], bad)
    assert set(report.per_class) == {"zero", "one"}
    assert report.values["intra_fid"].value * 10 < bad.values["intra_fid"].value
    none = compare.Report()
    compare.intra_class_fid(ref, fset(good.features, labels=np.zeros(400, int)),
                            ["zero", "one"], none)
    assert "intra_fid" not in none.values and "class one has 0 samples" in none.notes[0]


# --- through the command line ---------------------------------------------------------

def rows(stdout: str) -> dict[str, list[str]]:
    """The result table's rows: metric -> its cells."""
    out = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if cells and cells[0] in compare.TITLES.values():
            out[cells[0]] = cells[1:]
    return out


def test_fid_command_every_metric_with_intervals(cli, tmp_path: Path, classifier_run) -> None:
    a = make_folder(tmp_path / "a", per_class=15, size=28, channels=1)
    b = make_folder(tmp_path / "b", classes=1, per_class=30, size=28, channels=1)
    clf = ("--features", "classifier", "--classifier", classifier_run)
    result = cli("fid", a, b, *clf, "--bootstrap", "5")
    assert result.exit_code == 0, result.stderr
    table = rows(result.stdout)
    assert list(table) == ["FID", "KID", "precision", "recall", "density", "coverage"]
    assert " - " in table["FID"][2] and " - " in table["KID"][2]  # the 95% intervals
    # A's k-NN radii went into its cache entry; the next comparison reads them back
    entries = [FeatureSet.load(e) for e in (tmp_path / "cache" / "fid-stats").glob("*.npz")]
    assert sorted(e.radii is not None for e in entries) == [False, True]  # A's, not B's
    again = cli("fid", a, b, *clf)
    assert rows(again.stdout)["precision"][0] == table["precision"][0]
    only = cli("fid", a, b, *clf, "--metrics", "kid,pr", "--save-stats", tmp_path / "b.npz")
    assert only.exit_code == 0, only.stderr
    assert list(rows(only.stdout)) == ["KID", "precision", "recall"]
    assert "cached features (30 images)" in only.stderr
    saved = FeatureSet.load(tmp_path / "b.npz")
    assert saved.features.shape == (30, 8) and saved.n == 30
    again = cli("fid", a, tmp_path / "b.npz", *clf, "--metrics", "kid")
    assert rows(again.stdout)["KID"][0] == rows(only.stdout)["KID"][0]


def test_fid_command_refuses_what_cannot_apply(cli, tmp_path: Path, classifier_run) -> None:
    a = make_folder(tmp_path / "a", per_class=6, size=28, channels=1)
    clf = ("--features", "classifier", "--classifier", classifier_run)
    full = tmp_path / "full.npz"
    assert cli("fid", a, *clf, "--save-stats", full).exit_code == 0
    stats = tmp_path / "stats.npz"  # mean and covariance only (earlier gancli, pytorch-fid)
    with np.load(full) as f:
        np.savez(stats, **{k: f[k] for k in ("mu", "sigma", "n", "extractor")})

    def one_line(result, text: str) -> None:
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error:") and text in result.stderr, result.stderr
        assert result.stderr.strip().count("\n") == 0

    one_line(cli("fid", a, a, *clf, "--metrics", "is"), "needs Inception's class logits")
    one_line(cli("fid", a, a, *clf, "--metrics", "intra_fid"), "needs a conditional run")
    one_line(cli("fid", a, a, *clf, "--metrics", "fid,nope"), "unknown metric 'nope'")
    one_line(cli("fid", a, stats, *clf, "--metrics", "kid"), "kid needs per-image features")
    one_line(cli("fid", a, stats, *clf, "--bootstrap", "3"), "--bootstrap needs per-image")
    fid_only = cli("fid", a, stats, *clf)
    assert fid_only.exit_code == 0, fid_only.stderr
    assert list(rows(fid_only.stdout)) == ["FID"] and "FID only" in fid_only.stderr
    tiny = make_folder(tmp_path / "tiny", classes=1, per_class=2, size=28, channels=1)
    two = cli("fid", tiny, tiny, *clf)
    assert two.exit_code == 0, two.stderr
    assert "KID" in rows(two.stdout) and "more than k = 3" in two.stderr


def test_conditional_run_intra_fid_beside_class_accuracy(cli, tmp_path: Path) -> None:
    data = make_folder(tmp_path / "digits", classes=2, per_class=12, size=16, channels=1)
    spec = f"folder:{data}"
    assert cli("train", "classifier", "--dataset", spec, "--epochs", "1", "--width", "4",
               "--feature-dim", "4", "--batch-size", "8").exit_code == 0
    result = cli("train", "cdcgan", "--dataset", spec, "--image-size", "16", "--ngf", "8",
                 "--ndf", "8", "--nz", "8", "--batch-size", "8", "--epochs", "2",
                 "--eval-every", "1", "--eval-samples", "24", "--features", "classifier",
                 "--metrics", "fid,kid,pr,intra_fid", "--name", "c")
    assert result.exit_code == 0, result.stderr
    run = tmp_path / "checkpoints" / "cdcgan" / "c"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    for key in ("fid", "kid", "precision", "recall", "intra_fid"):
        assert all(np.isfinite(r[key]) for r in lines), key
    summary = " ".join(result.stderr.split())
    for title in ("FID-clf", "KID-clf", "precision", "recall", "intra-FID-clf", "best.pt"):
        assert title in summary, title
    assert (run / "best.pt").is_file()
    scored = cli("fid", run, "--features", "classifier", "--n", "40", "--data-root", tmp_path)
    assert scored.exit_code == 0, scored.stderr
    assert "intra-FID" in rows(scored.stdout)
    assert "intra-FID" in scored.stdout and "class accuracy" in scored.stdout
    bad = cli("train", "dcgan", "--dataset", spec, "--eval-every", "1", "--metrics",
              "intra_fid", "--features", "classifier", "--image-size", "16")
    assert bad.exit_code == 2 and "needs a conditional run" in bad.stderr


def test_translate_scores_pairs_and_cyclegan_domains(cli, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no Inception weights here
    pairs_dir = make_pairs(tmp_path / "pairs", n=8)
    assert cli("train", "pix2pix", "--dataset", f"folder:{pairs_dir}", *P2P, "--max-steps",
               "1", "--name", "p").exit_code == 0
    labelled = make_folder(tmp_path / "kinds", classes=2, per_class=8, size=32)
    assert cli("train", "classifier", "--dataset", f"folder:{labelled}", "--epochs", "1",
               "--width", "4", "--feature-dim", "4", "--batch-size", "8",
               "--name", "k").exit_code == 0
    clf = ("--features", "classifier", "--classifier", "classifier/k")
    result = cli("translate", "pix2pix", pairs_dir, "--out", tmp_path / "o1", *clf)
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    saved = json.loads((tmp_path / "o1" / "metrics.json").read_text())
    assert (saved["translated"], saved["paired"], saved["direction"]) == (8, 8, "BtoA")
    for key in ("L1 to target", "PSNR (dB)", "SSIM", "FID vs targets", "KID vs targets"):
        assert key in text, key
        shown = f"{saved['metrics'][key]:.4g}" if key.startswith("KID") else None
        assert shown is None or shown in text  # the file holds the numbers the table shows
    quiet = cli("translate", "pix2pix", pairs_dir, "--out", tmp_path / "o2")
    assert quiet.exit_code == 0 and "not measured: no Inception weights" in " ".join(
        quiet.stdout.split())
    assert "SSIM" in quiet.stdout

    domains = make_domains(tmp_path / "cats")
    assert cli("train", "cyclegan", "--dataset", f"folder:{domains}", *P2P, "--blocks", "1",
               "--max-steps", "1", "--name", "c").exit_code == 0
    result = cli("translate", "cyclegan", domains / "A", "--out", tmp_path / "o3", *clf,
                 "--metrics", "fid,kid,pr")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "cycle L1" in text and "KID vs B" in text and "precision vs B" in text
    assert "reference" in text and "(10 images," in text
    bad = cli("translate", "cyclegan", domains / "A", "--out", tmp_path / "o4", *clf,
              "--metrics", "intra_fid")
    assert bad.exit_code == 2 and "not intra_fid" in bad.stderr
