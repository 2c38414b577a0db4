"""Fréchet distance between image sets: features, their statistics, a cache, the distance.

Inception features and the distance itself come from pytorch-fid, so numbers match papers
and other tools that use it; only how images reach it (and a clear word when it cannot
run) lives here. The classifier features need no download and work offline.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import warnings
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from gancli import checkpoint, data
from gancli.errors import GancliError

console = Console(stderr=True)

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
DIMS = (64, 192, 768, 2048)


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

    def save(self, path: Path) -> None:
        """pytorch-fid's format (mu, sigma), plus n and the extractor, which it ignores."""
        buf = io.BytesIO()
        np.savez_compressed(buf, mu=self.mu, sigma=self.sigma, n=self.n,
                            extractor=self.extractor)
        checkpoint.write_output(path, buf.getvalue())

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
    """A warning when n samples cannot give a full-rank covariance in `dims` dimensions."""
    if n and n <= dims:
        return (f"{n} samples for {dims}-dimensional features: the covariance is singular "
                f"and the distance unreliable; use more than {dims} (ideally 10,000)"
                + smaller_dims(extractor))
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


class Extractor(ABC):
    """Maps uint8 images (N, C, H, W) to feature vectors (N, dims)."""

    name: str  # identifies the features in cached and saved statistics
    dims: int

    @abstractmethod
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Features of one batch, on the CPU."""


def inception_path() -> Path:
    """Where torch (and so pytorch-fid) keeps downloaded weights: $TORCH_HOME/hub/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def inception_state_dict(weights: Path | None) -> dict:
    """The FID Inception weights: --inception-weights, the torch hub cache, or a download."""
    from pytorch_fid import inception as pf

    path = Path(weights) if weights else inception_path()
    if weights and not path.is_file():
        raise GancliError(f"--inception-weights {path} does not exist")
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    try:
        return pf.load_state_dict_from_url(pf.FID_WEIGHTS_URL, progress=True)
    except Exception as exc:  # offline, proxy, partial download
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GancliError(
            f"the FID Inception weights are not here and could not be downloaded ({reason}): "
            f"put {INCEPTION_FILE} (from {pf.FID_WEIGHTS_URL}) at {path}, pass "
            "--inception-weights FILE, or use --features classifier (offline)") from None


class InceptionFeatures(Extractor):
    """pytorch-fid's InceptionV3 at the block for `dims`; grayscale repeated to RGB, inputs
    in [0, 1] resized to 299 and normalised by the network itself, as pytorch-fid does."""

    def __init__(self, dims: int, device: torch.device, weights: Path | None = None) -> None:
        from pytorch_fid import inception as pf

        if dims not in DIMS:
            raise GancliError(f"--dims must be one of {', '.join(map(str, DIMS))}, not {dims}")
        state = inception_state_dict(weights)
        with mock.patch.object(pf, "load_state_dict_from_url", lambda *a, **k: state):
            net = pf.InceptionV3([pf.InceptionV3.BLOCK_INDEX_BY_DIM[dims]])
        self.net = net.to(device).eval()
        self.device, self.dims, self.name = device, dims, f"inception-{dims}"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device).float().div_(255)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        out = self.net(x)[0]
        if out.shape[2] != 1 or out.shape[3] != 1:  # pytorch-fid's get_activations does this
            out = F.adaptive_avg_pool2d(out, (1, 1))
        return out.flatten(1).cpu()


class ClassifierFeatures(Extractor):
    """The reference classifier's penultimate layer; images are brought to its channels and
    size first."""

    def __init__(self, trainer, source: Path) -> None:
        self.trainer = trainer
        self.channels = trainer.info["channels"]
        self.size = trainer.cfg["image_size"]
        self.dims = trainer.nets["C"].feature_dim
        digest = hashlib.sha1(Path(source).read_bytes()).hexdigest()[:10]
        self.name = f"classifier-{trainer.cfg['dataset']}-{digest}"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.trainer.features(prepare(images, self.channels, self.size)).cpu()


def prepare(images: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """uint8 images -> floats in [-1, 1] with `channels` channels at `size` pixels."""
    if images.shape[-1] != size or images.shape[-2] != size:
        images = data.resize_uint8(images, size)
    x = data.to_float(images)
    if x.shape[1] != channels:
        x = x.mean(1, keepdim=True) if channels == 1 else x[:, :1].repeat(1, channels, 1, 1)
    return x


def extract(batches: Iterable[torch.Tensor], total: int, extractor: Extractor,
            title: str) -> np.ndarray:
    """Features of every uint8 batch, with a progress bar (feature extraction is the slow
    part)."""
    out: list[torch.Tensor] = []
    progress = Progress(TextColumn(title), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=console, transient=True)
    with progress:
        task = progress.add_task(title, total=total)
        for batch in batches:
            out.append(extractor(batch))
            progress.advance(task, len(batch))
    return torch.cat(out).double().numpy()


def cache_dir() -> Path:
    """$GANCLI_CACHE/fid-stats (default ~/.cache/gancli/fid-stats)."""
    root = os.environ.get("GANCLI_CACHE", Path.home() / ".cache" / "gancli")
    return Path(root) / "fid-stats"


def cached(key: dict, compute: Callable[[], Stats]) -> tuple[Stats, bool]:
    """Statistics for `key` (dataset, split, size, extractor, dims, n) from the cache, or
    computed and stored; also whether it was a hit."""
    text = json.dumps(key, sort_keys=True)
    path = cache_dir() / (hashlib.sha1(text.encode()).hexdigest()[:16] + ".npz")
    if path.is_file():
        with contextlib.suppress(GancliError):  # a damaged entry is recomputed
            return Stats.load(path), True
    stats = compute()
    stats.save(path)
    return stats, False
