"""One feature pass per image set, shared by every metric: the extractors (pytorch-fid's
Inception, a reference classifier), the per-image features they give, and the cache of
real data's features.

Every metric is computed from these arrays, so an image set goes through the network once
however many metrics are asked for. KID and precision/recall need the features themselves,
not only their mean and covariance, so the cache keeps them.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
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
from gancli.metrics.fid import Stats, statistics

console = Console(stderr=True)

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
DIMS = (64, 192, 768, 2048)
CACHE_VERSION = 2  # 1 held mean and covariance only


@dataclass
class FeatureSet:
    """One image set seen by one extractor: per-image features and what came with them."""

    extractor: str
    features: np.ndarray | None  # (n, dims) float32; None: a .npz with mu and sigma only
    labels: np.ndarray | None = None  # class of each image (data's label or class asked for)
    logits: np.ndarray | None = None  # the extractor's class logits (IS, class accuracy)
    summary: Stats | None = None  # given statistics, for a .npz without features
    radii: np.ndarray | None = None  # squared k-NN radii (prdc), kept with cached sets
    source: Path | None = None  # the cache file it came from

    @property
    def n(self) -> int:
        return len(self.features) if self.features is not None else self.summary.n

    @property
    def dims(self) -> int:
        return self.features.shape[1] if self.features is not None else self.summary.dims

    def stats(self) -> Stats:
        """Mean and covariance (computed once)."""
        if self.summary is None:
            self.summary = statistics(self.features, self.extractor)
        return self.summary

    def save(self, path: Path) -> None:
        """pytorch-fid's .npz (mu, sigma, which is all it reads), plus the features, labels
        and extractor, so a saved set serves every metric later."""
        stats = self.stats()
        extra = {k: v for k, v in (("features", self.features), ("labels", self.labels),
                                   ("logits", self.logits), ("radii", self.radii))
                 if v is not None}
        buf = io.BytesIO()
        np.savez_compressed(buf, mu=stats.mu, sigma=stats.sigma, n=self.n,
                            extractor=self.extractor, **extra)
        checkpoint.write_output(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> FeatureSet:
        """A .npz of gancli's (features and statistics) or pytorch-fid's (statistics)."""
        stats = Stats.load(path)
        try:
            with np.load(path) as f:
                arrays = {k: f[k][:] for k in ("features", "labels", "logits", "radii")
                          if k in f}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise GancliError(f"{path} is damaged ({exc})") from None
        return cls(stats.extractor, arrays.get("features"), arrays.get("labels"),
                   arrays.get("logits"), stats, arrays.get("radii"))

    def remember(self) -> None:
        """Write what was derived from a cached set (its k-NN radii) back to its cache
        file, so the next comparison with it skips that work."""
        if self.source is not None:
            self.save(self.source)


class Extractor(ABC):
    """Maps uint8 images (N, C, H, W) to feature vectors (N, dims) and, for extractors
    that classify, class logits."""

    name: str  # identifies the features in cached and saved sets
    dims: int
    logits: bool = False  # whether calls also return "logits"

    @abstractmethod
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """{"features": (N, dims)} and, if `logits`, {"logits": (N, classes)}, on the CPU."""

    def without_logits(self) -> Extractor:
        """The same features for a set whose logits nothing reads (a reference set's for
        IS), where they would cost space in the cache."""
        return self


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
    in [0, 1] resized to 299 and normalised by the network itself, as pytorch-fid does.
    With `logits`, also the 1008 class logits the Inception Score needs: the final pool
    times the same network's classifier weights, without its bias, as the original IS code
    (and torch-fidelity) computes them."""

    def __init__(self, dims: int, device: torch.device, weights: Path | None = None,
                 logits: bool = False) -> None:
        from pytorch_fid import inception as pf

        if dims not in DIMS:
            raise GancliError(f"--dims must be one of {', '.join(map(str, DIMS))}, not {dims}")
        state = inception_state_dict(weights)
        built: list[torch.nn.Module] = []
        make = pf.fid_inception_v3

        def keep() -> torch.nn.Module:  # the whole network, for its classifier weights
            built.append(make())
            return built[-1]

        self.block = pf.InceptionV3.BLOCK_INDEX_BY_DIM[dims]
        blocks = sorted({self.block, 3} if logits else {self.block})
        with mock.patch.object(pf, "load_state_dict_from_url", lambda *a, **k: state), \
                mock.patch.object(pf, "fid_inception_v3", keep):
            net = pf.InceptionV3(blocks)
        self.net = net.to(device).eval()
        self.fc = built[0].fc.weight.detach().to(device) if logits else None
        self.device, self.dims, self.logits = device, dims, logits
        self.name = f"inception-{dims}"

    def without_logits(self) -> Extractor:
        """1008 logits per image would double a cached reference set."""
        if self.fc is None:
            return self
        plain = copy.copy(self)
        plain.fc, plain.logits = None, False
        return plain

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = images.to(self.device).float().div_(255)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        outs = [_pooled(o) for o in self.net(x)]
        result = {"features": outs[0].cpu()}
        if self.fc is not None:
            result["logits"] = (outs[-1] @ self.fc.T).cpu()
        return result


def _pooled(out: torch.Tensor) -> torch.Tensor:
    """pytorch-fid's get_activations: blocks before the last are pooled to one vector."""
    if out.shape[2] != 1 or out.shape[3] != 1:
        out = F.adaptive_avg_pool2d(out, (1, 1))
    return out.flatten(1)


class ClassifierFeatures(Extractor):
    """The reference classifier's penultimate layer and, from the same forward pass, its
    class logits; images are brought to its channels and size first."""

    logits = True

    def __init__(self, trainer, source: Path) -> None:
        self.trainer = trainer
        self.channels = trainer.info["channels"]
        self.size = trainer.cfg["image_size"]
        self.dims = trainer.nets["C"].feature_dim
        self.classes = list(trainer.info["classes"])
        digest = hashlib.sha1(Path(source).read_bytes()).hexdigest()[:10]
        self.name = f"classifier-{trainer.cfg['dataset']}-{digest}"

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feats, logits = self.trainer.embed(prepare(images, self.channels, self.size))
        return {"features": feats.cpu(), "logits": logits.cpu()}


def prepare(images: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """uint8 images -> floats in [-1, 1] with `channels` channels at `size` pixels."""
    if images.shape[-1] != size or images.shape[-2] != size:
        images = data.resize_uint8(images, size)
    x = data.to_float(images)
    if x.shape[1] != channels:
        x = x.mean(1, keepdim=True) if channels == 1 else x[:, :1].repeat(1, channels, 1, 1)
    return x


def extract(batches: Iterable[torch.Tensor], total: int, extractor: Extractor, title: str,
            labels: torch.Tensor | None = None) -> FeatureSet:
    """Features of every uint8 batch, with a progress bar (this is the slow part)."""
    out: dict[str, list[torch.Tensor]] = {}
    progress = Progress(TextColumn(title), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=console, transient=True)
    with progress:
        task = progress.add_task(title, total=total)
        for batch in batches:
            for key, value in extractor(batch).items():
                out.setdefault(key, []).append(value)
            progress.advance(task, len(batch))
    if not out:
        raise GancliError(f"{title}: no images")
    arrays = {k: torch.cat(v).float().numpy() for k, v in out.items()}
    return FeatureSet(extractor.name, arrays["features"],
                      None if labels is None else labels.numpy().astype(np.int64),
                      arrays.get("logits"))


def cache_dir() -> Path:
    """$GANCLI_CACHE/fid-stats (default ~/.cache/gancli/fid-stats)."""
    root = os.environ.get("GANCLI_CACHE", Path.home() / ".cache" / "gancli")
    return Path(root) / "fid-stats"


def cached(key: dict, compute: Callable[[], FeatureSet]) -> tuple[FeatureSet, bool]:
    """The feature set for `key` (dataset, split, size, extractor, n, ...) from the cache,
    or computed and stored; also whether it was a hit."""
    text = json.dumps({**key, "version": CACHE_VERSION}, sort_keys=True)
    path = cache_dir() / (hashlib.sha1(text.encode()).hexdigest()[:16] + ".npz")
    if path.is_file():
        with contextlib.suppress(GancliError):  # a damaged entry is recomputed
            found = FeatureSet.load(path)
            if found.features is not None:
                found.source = path
                return found, True
    found = compute()
    found.save(path)
    found.source = path
    return found, False
