"""Fréchet distance between image sets: the statistics of their features and the distance.

The distance itself comes from pytorch-fid, so numbers match papers and other tools that
use it; only a clear word when it cannot be computed lives here. The features come from
gancli.metrics.features.
"""

from __future__ import annotations

import contextlib
import io
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gancli.errors import GancliError

BIASED = 10  # below BIASED x dims samples, too_few() says FID's bias is large


@dataclass
class Stats:
    """Mean and covariance of a set's features, and what they were measured with."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int  # images behind them (0: unknown, e.g. a .npz written by pytorch-fid)
    extractor: str

    @property
    def dims(self) -> int:
        return len(self.mu)

    @classmethod
    def load(cls, path: Path) -> Stats:
        """A .npz with mu and sigma; one without our extras is taken as Inception stats."""
        try:
            with np.load(path) as f:
                mu, sigma = f["mu"][:], f["sigma"][:]
                n = int(f["n"]) if "n" in f else 0
                extractor = str(f["extractor"]) if "extractor" in f else f"inception-{len(mu)}"
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise GancliError(f"{path} is not a statistics .npz with mu and sigma "
                              f"({str(exc).splitlines()[0] if str(exc) else exc!r})") from None
        return cls(mu, sigma, n, extractor)


def statistics(features: np.ndarray, extractor: str) -> Stats:
    """As pytorch-fid's calculate_activation_statistics: mean and covariance (rows = images)."""
    if len(features) < 2:
        raise GancliError(f"{len(features)} image(s): the Fréchet distance needs at least 2 "
                          "per set (and more than the feature dimension to be reliable)")
    feats = features.astype(np.float64)
    return Stats(np.mean(feats, axis=0), np.cov(feats, rowvar=False), len(features), extractor)


def too_few(n: int, dims: int, extractor: str = "inception") -> str | None:
    """One line when n samples are few for `dims` dimensions: below dims + 1 the covariance
    is singular; below BIASED x dims FID's upward bias (it falls as n grows) is large."""
    if n and n <= dims:
        return (f"{n} samples for {dims}-dimensional features: the covariance is singular "
                f"and FID unreliable and biased upward (KID is not); use more than {dims} "
                "(ideally 10,000)" + smaller_dims(extractor))
    if n and n < BIASED * dims:
        return (f"FID at n = {n} in {dims} dimensions is biased upward (it falls as n grows): "
                "compare FIDs only at equal n, or read KID, which is unbiased")
    return None


def smaller_dims(extractor: str) -> str:
    """Only Inception features come in smaller sizes (--dims)."""
    return " or a smaller --dims" if extractor.startswith("inception") else ""


def frechet_distance(a: Stats, b: Stats) -> float:
    """pytorch-fid's calculate_frechet_distance, with its failures as one-line errors."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    if a.extractor != b.extractor or a.dims != b.dims:
        raise GancliError(f"the statistics were measured differently ({a.extractor}, "
                          f"{a.dims} dims vs {b.extractor}, {b.dims} dims)")
    try:
        # its print and scipy's warning on singular products: too_few() says it clearer
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(calculate_frechet_distance(a.mu, a.sigma, b.mu, b.sigma))
    except ValueError as exc:
        if "Imaginary component" not in str(exc):
            raise
        need = a.dims + 1
        raise GancliError(
            f"the distance is numerically undefined (pytorch-fid: {exc}): the covariances "
            f"of {a.n or '?'} and {b.n or '?'} samples in {a.dims} dimensions are too "
            f"ill-conditioned; use at least {need} samples per set (ideally 10,000)"
            + smaller_dims(a.extractor)) from None
