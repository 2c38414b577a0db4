"""`gancli fid` and FID during training: what each side of a comparison is (folder, dataset,
.npz, run), how its statistics are made (cached for real data), and how results are shown.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from gancli import checkpoint, data, engine, registry
from gancli.errors import GancliError
from gancli.metrics.classify import ClassReport, class_report, report_table
from gancli.metrics.fid import (
    ClassifierFeatures,
    Extractor,
    InceptionFeatures,
    Stats,
    cached,
    extract,
    frechet_distance,
    prepare,
    statistics,
    too_few,
)
from gancli.trainers.base import Trainer

out = Console()
err = Console(stderr=True, soft_wrap=True)  # paths stay whole in logs

MNIST_LIKE = ("mnist", "mnist-mini")


@dataclass
class Options:
    """Everything `gancli fid` takes besides the two sides."""

    n: int = 10_000
    batch_size: int = 50
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dims: int = 2048
    features: str = "inception"
    inception_weights: Path | None = None
    classifier: str | None = None
    data_root: Path | None = None
    seed: int = 0
    root: Path | None = None  # checkpoints dir


@dataclass
class Facts:
    """What a side's images are like: enough to pick a reference classifier."""

    dataset: str
    channels: int
    image_size: int


class Side(ABC):
    """One side of a comparison; `stats` measures it with an extractor."""

    label: str
    facts: Facts | None = None

    @abstractmethod
    def stats(self, extractor: Extractor | None, opts: Options) -> Stats:
        """Its feature statistics (a .npz side already has them: no extractor needed)."""


@dataclass
class NpzSide(Side):
    path: Path

    @property
    def label(self) -> str:
        return str(self.path)

    def stats(self, extractor: Extractor | None, opts: Options) -> Stats:
        return Stats.load(self.path)


@dataclass
class ImagesSide(Side):
    """A dataset or a folder of images; its statistics are cached."""

    spec: str
    split: str = "train"
    root: Path | None = None
    image_size: int | None = None

    def __post_init__(self) -> None:
        info = data.describe(self.spec, self.image_size)
        self.facts = Facts(self.spec, info["channels"], info["image_size"])

    @property
    def label(self) -> str:
        return self.spec + (":test" if self.split == "test" else "")

    def key(self, extractor: Extractor, n: int) -> dict:
        """The cache key; a folder's also changes when its files do."""
        key = {"dataset": self.spec, "split": self.split, "image_size": self.image_size,
               "extractor": extractor.name, "dims": extractor.dims, "n": n}
        if self.spec.startswith("folder:"):
            files = data.list_images(Path(self.spec.removeprefix("folder:")))
            key["dataset"] = f"folder:{Path(self.spec.removeprefix('folder:')).resolve()}"
            key["files"] = [len(files), max(f.stat().st_mtime_ns for f in files),
                            sum(f.stat().st_size for f in files)]
        return key

    def stats(self, extractor: Extractor, opts: Options) -> Stats:
        def compute() -> Stats:
            loaded = data.load(self.spec, self.root or data.default_root(), self.image_size,
                               train=self.split == "train")
            if loaded.skipped:
                err.print(f"[yellow]warning:[/] {self.label}: "
                          f"{data.skipped_warning(loaded.skipped, None)}", highlight=False)
            images = loaded.images
            if len(images) > opts.n:  # a fixed random subset, the same on every call
                pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
                images = images[pick[:opts.n]]
            feats = extract(images.split(opts.batch_size), len(images), extractor,
                            f"features of {self.label}")
            return statistics(feats, extractor.name)

        stats, hit = cached(self.key(extractor, opts.n), compute)
        if hit:
            err.print(f"[dim]{self.label}: cached statistics ({stats.n} images)[/]")
        return stats


@dataclass
class RunSide(Side):
    """A trained model: `n` samples are drawn (class-balanced for conditional models)."""

    target: str
    opts: Options
    images: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.trainer, self.ckpt = engine.restore(self.target, self.opts.device, self.opts.root)
        if not can_generate(self.trainer):
            hint = (": image-to-image runs are scored on A|B pairs by `gancli translate`"
                    if self.trainer.spec.translate_options else "")
            raise GancliError(f"{self.ckpt['path']} is a {self.trainer.spec.name} run, which "
                              f"does not generate images from noise{hint}")
        cfg, info = self.trainer.cfg, self.ckpt["info"]
        self.facts = Facts(cfg["dataset"], info["channels"], cfg["image_size"])

    @property
    def label(self) -> str:
        return str(self.ckpt["path"].parent)

    def dataset(self) -> ImagesSide:
        """The data this run was trained on, at the run's image size."""
        cfg = self.trainer.cfg
        root = self.opts.data_root or data.run_root(cfg)
        return ImagesSide(cfg["dataset"], "train", root, cfg["image_size"])

    def stats(self, extractor: Extractor, opts: Options) -> Stats:
        n = opts.n
        if self.trainer.conditional:
            self.labels = torch.arange(n) % self.trainer.info["num_classes"]
        kept: list[torch.Tensor] = []

        def batches() -> Iterator[torch.Tensor]:
            for images in samples(self.trainer, n, opts.batch_size, opts.seed, self.labels):
                kept.append(images)
                yield images

        feats = extract(batches(), n, extractor, f"sampling {self.trainer.spec.name}")
        self.images = torch.cat(kept)
        return statistics(feats, extractor.name)


def can_generate(trainer: Trainer) -> bool:
    return type(trainer).generate is not Trainer.generate


def samples(trainer: Trainer, n: int, batch_size: int, seed: int,
            labels: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """n generated images as uint8 batches (quantised like saved PNGs), from a seeded
    generator, so the same call always draws the same noise."""
    g = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        y = None if labels is None else labels[start:start + count]
        yield data.to_uint8(trainer.generate(count, generator=g, labels=y)).cpu()


def parse_side(text: str, opts: Options) -> Side:
    """A .npz of statistics, a folder of images, a run folder or checkpoint, a dataset
    (mnist, cifar10:test, folder:PATH), or a model or run name."""
    path = Path(text).expanduser()
    if text.endswith(".npz"):
        if not path.is_file():
            raise GancliError(f"statistics file {path} does not exist")
        return NpzSide(path)
    if path.is_dir():
        if (path / checkpoint.FILENAME).is_file():
            return RunSide(text, opts)
        return ImagesSide(f"folder:{path}", root=opts.data_root)
    if path.is_file():
        return RunSide(text, opts)
    name, _, split = text.partition(":")
    if name in data.BUILTINS and split in ("", "train", "test"):
        return ImagesSide(name, split or "train", opts.data_root)
    if name == "folder":
        return ImagesSide(text, root=opts.data_root)
    try:
        checkpoint.resolve(text, Path(opts.root or checkpoint.default_dir()), registry.MODELS)
    except GancliError as exc:
        if "ambiguous" in str(exc) or text in registry.MODELS:
            raise
        raise GancliError(f"'{text}' is not a folder, .npz, dataset ({', '.join(data.BUILTINS)}"
                          ", folder:PATH), run or checkpoint") from None
    return RunSide(text, opts)


def find_classifier(facts: Facts, opts: Options) -> tuple[Trainer, Path]:
    """--classifier, else a classifier run trained on the same dataset (newest first, yours
    before the shipped ones), else the shipped MNIST one for MNIST-like 1x28x28 data."""
    if opts.classifier:
        trainer, ckpt = engine.restore(opts.classifier, opts.device, opts.root,
                                       model="classifier")
        return trainer, ckpt["path"]
    runs: list[tuple[Path, dict]] = []
    bases = [Path(opts.root or checkpoint.default_dir()), checkpoint.SHIPPED]
    for base in dict.fromkeys(bases):
        found = sorted((base / "classifier").glob(f"*/{checkpoint.FILENAME}"),
                       key=lambda p: p.stat().st_mtime, reverse=True)
        for ckpt in found:
            config = ckpt.parent / "config.json"
            if config.is_file():
                runs.append((ckpt, json.loads(config.read_text())))
    mnist_like = facts.dataset in MNIST_LIKE or (facts.channels, facts.image_size) == (1, 28)
    for wanted in (facts.dataset, "mnist" if mnist_like else None):
        for ckpt, cfg in runs:
            if wanted and cfg.get("dataset") == wanted:
                trainer, _ = engine.restore(str(ckpt), opts.device, opts.root)
                return trainer, ckpt
    raise GancliError(
        f"no reference classifier for {facts.dataset} ({facts.channels}x{facts.image_size}px):"
        f" train one with `gancli train classifier --dataset {facts.dataset}` or pass "
        "--classifier RUN")


def make_extractor(features: str, facts: Facts, opts: Options) -> Extractor:
    """pytorch-fid's Inception, or the reference classifier that fits `facts`."""
    if features == "inception":
        return InceptionFeatures(opts.dims, opts.device, opts.inception_weights)
    if features != "classifier":
        raise GancliError(f"--features must be inception or classifier, not '{features}'")
    if opts.dims != 2048:
        raise GancliError("--dims picks an Inception layer; classifier features have the "
                          "classifier's own size (its --feature-dim)")
    trainer, path = find_classifier(facts, opts)
    err.print(f"[dim]classifier features: {path}[/]")
    return ClassifierFeatures(trainer, path)


def fid(a: str | None, b: str | None, opts: Options, save_stats: Path | None = None) -> None:
    """Everything `gancli fid` does: sides, statistics, distance, tables."""
    start = time.perf_counter()
    if a is None:  # the newest run in checkpoints/ vs its dataset
        run = RunSide(str(newest_run(Path(opts.root or checkpoint.default_dir()))), opts)
        sides = [run.dataset(), run]
    else:
        first = parse_side(a, opts)
        if b is not None:
            sides = [first, parse_side(b, opts)]
        elif isinstance(first, RunSide):
            sides = [first.dataset(), first]
        elif save_stats:
            sides = [first]
        else:
            raise GancliError(f"compare {a} with what? Give a second folder, dataset, .npz or "
                              "run (or --save-stats FILE.npz to only write its statistics)")
    facts = [s.facts for s in sides if s.facts]
    if not facts:  # only .npz files: nothing to extract
        stats = [s.stats(None, opts) for s in sides]
        extractor_name, dims = stats[0].extractor, stats[0].dims
    else:  # a run's facts pick the classifier before its training data's
        shapes = {(f.channels, f.image_size) for f in facts}
        if opts.features == "classifier" and len(shapes) > 1:
            raise GancliError(
                "classifier features compare images of one kind; these are "
                + " and ".join(f"{c}x{s}px" for c, s in sorted(shapes))
                + " (use --features inception)")
        extractor = make_extractor(opts.features, facts[-1], opts)
        stats = [s.stats(extractor, opts) for s in sides]
        extractor_name, dims = extractor.name, extractor.dims
    if save_stats:
        stats[-1].save(save_stats)
        err.print(f"statistics of {sides[-1].label} ({stats[-1].n} images) -> {save_stats}")
    if len(sides) == 1:
        return
    for side, st in zip(sides, stats, strict=True):
        warning = too_few(st.n, st.dims, st.extractor)
        if warning:
            err.print(f"[yellow]warning:[/] {side.label}: {warning}")
    distance = frechet_distance(*stats)
    out.print(result_table(sides, stats, distance, extractor_name, dims,
                           time.perf_counter() - start))
    run = sides[-1]
    if isinstance(run, RunSide) and run.trainer.conditional:
        report = conditional_report(run, opts)
        if report is not None:
            out.print(report_table(report, f"class accuracy ({len(run.labels)} samples)"))


def newest_run(root: Path) -> Path:
    """The run folder whose checkpoint was written last, of any model that generates."""
    found = sorted((p for p in root.glob(f"*/*/{checkpoint.FILENAME}")
                    if p.parent.parent.name != "classifier"),
                   key=lambda p: p.stat().st_mtime)
    if not found:
        raise GancliError(f"no trained run in {root}; train one with `gancli train MODEL`, "
                          "pass --checkpoints-dir, or give two things to compare")
    return found[-1].parent


def result_table(sides: list[Side], stats: list[Stats], distance: float, extractor: str,
                 dims: int, seconds: float) -> Table:
    table = Table(title=f"A: {sides[0].label}\nB: {sides[1].label}", title_justify="left")
    for name in ("FID", "n A", "n B", "features", "dims", "seconds"):
        table.add_column(name, justify="left" if name == "features" else "right")
    # identical sets give a tiny negative number (float error); a distance is >= 0
    table.add_row(f"[bold]{max(distance, 0.0):.2f}[/]", *(str(s.n or "?") for s in stats),
                  extractor, str(dims), f"{seconds:.1f}")
    return table


def conditional_report(run: RunSide, opts: Options) -> ClassReport | None:
    """Classify the run's balanced samples with the reference classifier, if there is one
    for its data and it knows the same classes."""
    try:
        classifier, _ = find_classifier(run.facts, opts)
    except GancliError as exc:
        err.print(f"[dim]per-class accuracy skipped: {exc}[/]")
        return None
    classes = run.ckpt["info"]["classes"]
    if classifier.info["classes"] != classes:
        err.print("[dim]per-class accuracy skipped: the classifier's classes differ from "
                  "the run's[/]")
        return None
    size, channels = classifier.cfg["image_size"], classifier.info["channels"]
    seen = torch.cat([classifier.logits(prepare(x, channels, size)).argmax(1).cpu()
                      for x in run.images.split(512)])
    return class_report(seen, run.labels, classes)


class TrainingFID(engine.EpochHook):
    """--fid-every N: FID of --fid-samples samples against the training data (its
    statistics cached) every N epochs and at the last; keeps best.pt; a summary at the end."""

    def __init__(self, cfg: dict, trainer: Trainer) -> None:
        if not can_generate(trainer):
            raise GancliError(f"--fid-every: {cfg['model']} does not generate images from noise")
        self.every, self.epochs = cfg["fid_every"], cfg["epochs"]
        self.opts = Options(n=cfg["fid_samples"], device=trainer.device,
                            features=cfg["fid_features"], seed=cfg["seed"])
        self.real = ImagesSide(cfg["dataset"], "train", Path(cfg["data_root"]),
                               cfg["image_size"])
        self.extractor = make_extractor(cfg["fid_features"], self.real.facts, self.opts)
        self.columns = {"fid": "FID" if cfg["fid_features"] == "inception" else "FID-clf"}

    def after_epoch(self, trainer: Trainer, row: dict) -> dict[str, float]:
        epoch = row["epoch"]
        if not row["complete"] or (epoch % self.every and epoch != self.epochs):
            return {}
        real = self.real.stats(self.extractor, self.opts)
        feats = extract(samples(trainer, self.opts.n, 100, self.opts.seed), self.opts.n,
                        self.extractor, f"FID, epoch {epoch}")
        return {"fid": frechet_distance(real, statistics(feats, self.extractor.name))}

    def after_save(self, run: engine.Run, row: dict) -> None:
        values = [r["fid"] for r in _rows(run) if "fid" in r]
        if "fid" in row and row["fid"] <= min(values):
            checkpoint.atomic_write(run.dir / "best.pt", run.checkpoint.read_bytes())

    def finish(self, run: engine.Run) -> None:
        rows = [r for r in _rows(run) if "fid" in r]
        if rows:
            err.print(history_table(rows, self.columns["fid"]))


def _rows(run: engine.Run) -> list[dict]:
    if not run.metrics.exists():
        return []
    return [json.loads(line) for line in run.metrics.read_text().splitlines() if line]


def history_table(rows: list[dict], title: str) -> Table:
    """min / mean / max of the FID over the epochs it was measured, and the best epoch."""
    values = [r["fid"] for r in rows]
    best = min(rows, key=lambda r: r["fid"])
    table = Table(title=f"{title} over {len(rows)} evaluations (best.pt = epoch "
                        f"{best['epoch']})", title_justify="left")
    for name in ("min", "mean", "max", "best epoch", "history"):
        table.add_column(name, justify="right")
    table.add_row(f"{min(values):.2f}", f"{sum(values) / len(values):.2f}", f"{max(values):.2f}",
                  str(best["epoch"]), "  ".join(f"{r['epoch']}:{r['fid']:.1f}" for r in rows))
    return table


def sample_accuracy(trainer: Trainer, images: torch.Tensor, labels: torch.Tensor,
                    root: Path | None = None) -> str | None:
    """One line on conditional samples: the share the reference classifier reads as the
    class asked for, or None where no classifier knows these classes (nothing to say)."""
    cfg, info = trainer.cfg, trainer.info
    facts = Facts(cfg["dataset"], info["channels"], cfg["image_size"])
    try:
        classifier, _ = find_classifier(facts, Options(device=trainer.device, root=root))
    except GancliError:
        return None
    if classifier.info["classes"] != info["classes"]:
        return None
    size, channels = classifier.cfg["image_size"], classifier.info["channels"]
    seen = torch.cat([classifier.logits(prepare(data.to_uint8(x), channels, size))
                      .argmax(1).cpu() for x in images.split(512)])
    right = int((seen == labels.cpu()).sum())
    return (f"class accuracy {100 * right / len(labels):.0f}% ({right}/{len(labels)} read as "
            "the class asked for by the reference classifier)")
