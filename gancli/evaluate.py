"""`gancli fid` and evaluation during training: what each side of a comparison is (folder,
dataset, .npz, run), one feature pass per side (cached for real data), which metrics apply,
and how results are shown. The metrics themselves are in gancli.metrics.
"""

from __future__ import annotations

import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from gancli import checkpoint, data, pairs, registry
from gancli.errors import GancliError
from gancli.hooks import EpochHook
from gancli.metrics import compare as metrics
from gancli.metrics.classify import ClassReport, class_report, report_table
from gancli.metrics.features import (
    ClassifierFeatures,
    Extractor,
    FeatureSet,
    InceptionFeatures,
    cached,
    extract,
    inception_path,
    prepare,
)
from gancli.rundir import Run
from gancli.runs import counted, restore
from gancli.trainers.base import Trainer
from gancli.translate import Scoring

out = Console()
err = Console(stderr=True, soft_wrap=True)  # paths stay whole in logs

MNIST_LIKE = ("mnist", "mnist-mini")
TEST_SPLITS = ("mnist", "fashion-mnist", "cifar10")  # builtins with a held-out split


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
    metrics: str = "all"
    bootstrap: int = 0


@dataclass
class Facts:
    """What a side's images are like: enough to pick a reference classifier."""

    dataset: str
    channels: int
    image_size: int


class Side(ABC):
    """One side of a comparison; `features` measures it with an extractor, once."""

    label: str
    facts: Facts | None = None

    @abstractmethod
    def features(self, extractor: Extractor | None, opts: Options) -> FeatureSet:
        """Its feature set (a .npz side already has one: no extractor needed)."""


@dataclass
class NpzSide(Side):
    path: Path

    def __post_init__(self) -> None:
        self.loaded = FeatureSet.load(self.path)  # a bad file fails before any extraction

    @property
    def label(self) -> str:
        return str(self.path)

    def features(self, extractor: Extractor | None, opts: Options) -> FeatureSet:
        return self.loaded


@dataclass
class ImagesSide(Side):
    """A dataset or a folder of images; its features are cached."""

    spec: str
    split: str = "train"
    root: Path | None = None
    image_size: int | None = None

    def __post_init__(self) -> None:
        info = data.describe(self.spec, self.image_size)
        self.facts = Facts(self.spec, info["channels"], info["image_size"])
        self.classes = info["classes"]

    @property
    def label(self) -> str:
        return self.spec + (":test" if self.split == "test" else "")

    def key(self, extractor: Extractor, n: int | None) -> dict:
        """The cache key; a folder's also changes when its files do."""
        key = {"dataset": self.spec, "split": self.split, "image_size": self.image_size,
               "extractor": extractor.name, "dims": extractor.dims, "n": n,
               "logits": extractor.logits}
        if self.spec.startswith("folder:"):
            files = data.list_images(Path(self.spec.removeprefix("folder:")))
            key["dataset"] = f"folder:{Path(self.spec.removeprefix('folder:')).resolve()}"
            key["files"] = [len(files), max(f.stat().st_mtime_ns for f in files),
                            sum(f.stat().st_size for f in files)]
        return key

    def features(self, extractor: Extractor, opts: Options, limit: int | None = -1
                 ) -> FeatureSet:
        """At most `limit` images (default --n; None: all), a fixed random subset."""
        limit = opts.n if limit == -1 else limit

        def compute() -> FeatureSet:
            found = data.load(self.spec, self.root or data.default_root(), self.image_size,
                              train=self.split == "train")
            if found.skipped:
                err.print(f"[yellow]warning:[/] {self.label}: "
                          f"{data.skipped_warning(found.skipped, None)}", highlight=False)
            images, labels = found.images, found.labels
            if limit is not None and len(images) > limit:  # the same subset on every call
                pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
                images = images[pick[:limit]]
                labels = None if labels is None else labels[pick[:limit]]
            return extract(images.split(opts.batch_size), len(images), extractor,
                           f"features of {self.label}", labels)

        found, hit = cached(self.key(extractor, limit), compute)
        if hit:
            err.print(f"[dim]{self.label}: cached features ({found.n} images)[/]")
        return found


@dataclass
class RunSide(Side):
    """A trained model: `n` samples are drawn (class-balanced for conditional models)."""

    target: str
    opts: Options
    images: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.trainer, self.ckpt = restore(self.target, self.opts.device, self.opts.root)
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

    def dataset(self, split: str = "train") -> ImagesSide:
        """The data this run was trained on, at the run's image size."""
        cfg = self.trainer.cfg
        root = self.opts.data_root or data.run_root(cfg)
        return ImagesSide(cfg["dataset"], split, root, cfg["image_size"])

    def features(self, extractor: Extractor, opts: Options) -> FeatureSet:
        found, self.images = sample_features(self.trainer, extractor, opts.n, opts.batch_size,
                                             opts.seed, keep=True)
        return found


def can_generate(trainer: Trainer) -> bool:
    return type(trainer).generate is not Trainer.generate


def balanced_labels(trainer: Trainer, n: int) -> torch.Tensor | None:
    """0, 1, ..., k-1, 0, 1, ... for a conditional model: every class n/k times."""
    return torch.arange(n) % trainer.info["num_classes"] if trainer.conditional else None


def samples(trainer: Trainer, n: int, batch_size: int, seed: int,
            labels: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """n generated images as uint8 batches (quantised like saved PNGs), from a seeded
    generator, so the same call always draws the same noise."""
    g = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        y = None if labels is None else labels[start:start + count]
        yield data.to_uint8(trainer.generate(count, generator=g, labels=y)).cpu()


def sample_features(trainer: Trainer, extractor: Extractor, n: int, batch_size: int,
                    seed: int, keep: bool = False) -> tuple[FeatureSet, torch.Tensor | None]:
    """Features of n class-balanced samples (labels = the class asked for), and the images
    themselves if `keep` (class accuracy under another classifier needs them)."""
    labels = balanced_labels(trainer, n)
    kept: list[torch.Tensor] = []

    def batches() -> Iterator[torch.Tensor]:
        for images in samples(trainer, n, batch_size, seed, labels):
            if keep:
                kept.append(images)
            yield images

    found = extract(batches(), n, extractor, f"sampling {trainer.spec.name}", labels)
    return found, torch.cat(kept) if keep else None


def parse_side(text: str, opts: Options) -> Side:
    """A .npz of features or statistics, a folder of images, a run folder or checkpoint, a
    dataset (mnist, cifar10:test, folder:PATH), or a model or run name."""
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
        trainer, ckpt = restore(opts.classifier, opts.device, opts.root, model="classifier")
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
                trainer, _ = restore(str(ckpt), opts.device, opts.root)
                return trainer, ckpt
    raise GancliError(
        f"no reference classifier for {facts.dataset} ({facts.channels}x{facts.image_size}px):"
        f" train one with `gancli train classifier --dataset {facts.dataset}` or pass "
        "--classifier RUN")


def make_extractor(features: str, facts: Facts, opts: Options, logits: bool = False
                   ) -> Extractor:
    """pytorch-fid's Inception (with its class logits if `logits`: the Inception Score),
    or the reference classifier that fits `facts`."""
    if features == "inception":
        return InceptionFeatures(opts.dims, opts.device, opts.inception_weights, logits)
    if features != "classifier":
        raise GancliError(f"--features must be inception or classifier, not '{features}'")
    if opts.dims != 2048:
        raise GancliError("--dims picks an Inception layer; classifier features have the "
                          "classifier's own size (its --feature-dim)")
    trainer, path = find_classifier(facts, opts)
    err.print(f"[dim]classifier features: {path}[/]")
    return ClassifierFeatures(trainer, path)


def choose_metrics(text: str, inception: bool, conditional: bool) -> list[str]:
    """The --metrics list, less what cannot apply: named explicitly, such a metric is a
    one-line error; from `all`, it is left out (IS needs Inception's logits, intra-FID a
    conditional run)."""
    named = {t.strip().lower() for t in text.split(",")}
    chosen = metrics.parse(text)
    needs = {"is": (inception, "is: the Inception Score needs Inception's class logits "
                               "(--features inception)"),
             "intra_fid": (conditional, "intra_fid: the per-class FID needs a conditional "
                                        "run (samples of each class) as the judged side")}
    for name, (ok, why) in needs.items():
        if name in chosen and not ok:
            if name in named:
                raise GancliError(why)
            chosen.remove(name)
    return chosen


def with_features(chosen: list[str], text: str, sides: list[Side], bootstrap: int
                  ) -> tuple[list[str], list[str]]:
    """Only FID works from a pytorch-fid .npz (mean and covariance, no features)."""
    bare = [side.label for side in sides
            if isinstance(side, NpzSide) and side.loaded.features is None]
    if not bare:
        return chosen, []
    named = {t.strip().lower() for t in text.split(",")}
    others = [m for m in chosen if m != "fid"]
    why = (f"{bare[0]} holds a mean and covariance only (pytorch-fid's format), not the "
           "per-image features")
    if [m for m in others if m in named] or bootstrap:
        what = "--bootstrap" if bootstrap else ", ".join(m for m in others if m in named)
        raise GancliError(f"{what} needs per-image features: {why}; pass the images, or a "
                          ".npz written by gancli fid --save-stats")
    if "fid" not in chosen:
        raise GancliError(f"only FID can be computed here: {why}")
    return ["fid"], [f"FID only: {why}"] if others else []


def fid(a: str | None, b: str | None, opts: Options, save_stats: Path | None = None) -> None:
    """Everything `gancli fid` does: sides, one feature pass each, metrics, tables."""
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
                              "run (or --save-stats FILE.npz to only write its features)")
    judged = sides[-1]
    conditional = isinstance(judged, RunSide) and judged.trainer.conditional
    facts = [s.facts for s in sides if s.facts]
    chosen = choose_metrics(opts.metrics, opts.features == "inception" and bool(facts),
                            conditional and len(sides) == 2)
    notes: list[str] = []
    if len(sides) == 2:
        chosen, notes = with_features(chosen, opts.metrics, sides, opts.bootstrap)
    extractor = None
    if facts:  # a run's facts pick the classifier before its training data's
        shapes = {(f.channels, f.image_size) for f in facts}
        if opts.features == "classifier" and len(shapes) > 1:
            raise GancliError(
                "classifier features compare images of one kind; these are "
                + " and ".join(f"{c}x{s}px" for c, s in sorted(shapes))
                + " (use --features inception)")
        extractor = make_extractor(opts.features, facts[-1], opts, logits="is" in chosen)
    sets = [s.features(extractor if s is judged or extractor is None
                       else extractor.without_logits(), opts) for s in sides]
    if save_stats:
        sets[-1].save(save_stats)
        err.print(f"features of {sides[-1].label} ({sets[-1].n} images) -> {save_stats}")
    if len(sides) == 1:
        return
    if sets[0].extractor != sets[1].extractor or sets[0].dims != sets[1].dims:
        raise GancliError(f"the two sides were measured differently ({sets[0].extractor}, "
                          f"{sets[0].dims} dims vs {sets[1].extractor}, {sets[1].dims} dims)")
    report = compare_remembering(sets[0], sets[1], chosen, opts.bootstrap, opts.seed)
    if "intra_fid" in chosen:
        intra_fid(judged, extractor, opts, sets[1], report)
    for note in notes + report.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False)
    if not report.values:
        raise GancliError("nothing could be computed: " + "; ".join(report.notes))
    out.print(f"A: {sides[0].label}\nB: {sides[1].label} (judged)", soft_wrap=True,
              highlight=False)
    out.print(result_table(report))
    out.print(facts_line(sets, time.perf_counter() - start), soft_wrap=True, highlight=False)
    if conditional:
        classes = judged.ckpt["info"]["classes"]
        accuracy = conditional_report(judged, opts, extractor, sets[1])
        if accuracy is not None:
            out.print(report_table(accuracy, f"class accuracy ({sets[1].n} samples)",
                                   report.per_class))
        elif report.per_class:
            out.print(per_class_table(classes, report.per_class))


def compare_remembering(a: FeatureSet, b: FeatureSet, chosen: list[str], bootstrap: int = 0,
                        seed: int = 0) -> metrics.Report:
    """metrics.compare, and the reference's k-NN radii it derived go back into its cache
    entry (a third of precision/recall's work, the same every time)."""
    known = a.radii is not None
    report = metrics.compare(a, b, chosen, bootstrap, seed)
    if a.radii is not None and not known:
        a.remember()
    return report


def intra_fid(run: RunSide, extractor: Extractor, opts: Options, fake: FeatureSet,
              report: metrics.Report) -> None:
    """Each class's samples against that class's held-out images (the whole test split),
    or its training images where the dataset has no test split."""
    split = "test" if run.trainer.cfg["dataset"] in TEST_SPLITS else "train"
    ref = run.dataset(split).features(extractor.without_logits(), opts,
                                      None if split == "test" else opts.n)
    metrics.intra_class_fid(ref, fake, run.ckpt["info"]["classes"], report)


TRANSLATION_METRICS = ("fid", "kid", "pr", "dc")


def translation_scoring(trainer: Trainer, input_dir: Path, direction: str, text: str | None,
                        opts: Options, reference: Path | None) -> Scoring:
    """How `translate` judges its outputs as a set: --metrics (default fid,kid, when the
    features need no download) against --reference, CycleGAN's other domain (the input
    folder's A/B twin, else the run's training images of that domain) or the targets."""
    if text is not None:
        chosen = metrics.parse(text)
        wrong = [m for m in chosen if m not in TRANSLATION_METRICS]
        if wrong:
            raise GancliError(f"translate measures {', '.join(TRANSLATION_METRICS)} against "
                              f"reference images, not {wrong[0]}")
    elif (opts.features == "inception" and not opts.inception_weights
          and not inception_path().is_file()):
        return Scoring([], None, skipped=f"no Inception weights at {inception_path()} (pass "
                       "--inception-weights FILE, --features classifier, or --metrics fid,kid "
                       "to download them)")
    else:
        chosen = ["fid", "kid"]
    cfg, info = trainer.cfg, trainer.info
    facts = Facts(cfg["dataset"], info["channels"], info["image_size"])
    extractor = make_extractor(opts.features, facts, opts)
    if reference is None and trainer.spec.data == "unpaired":
        want = direction[-1]  # the outputs' domain
        name = input_dir.name
        twin = input_dir.with_name(name[:-1] + want) if name[-1:] == direction[0] else None
        reference = twin if twin and twin.is_dir() else pairs.domain_folder(cfg, want)
    if reference is None:
        return Scoring(chosen, extractor)
    if not reference.is_dir():
        raise GancliError(f"--reference {reference} is not a folder of images")
    side = ImagesSide(f"folder:{reference}", root=opts.data_root,
                      image_size=info["image_size"])
    return Scoring(chosen, extractor, side.features(extractor, opts), reference)


def newest_run(root: Path) -> Path:
    """The run folder whose checkpoint was written last, of any model that generates."""
    found = sorted((p for p in root.glob(f"*/*/{checkpoint.FILENAME}")
                    if p.parent.parent.name != "classifier"),
                   key=lambda p: p.stat().st_mtime)
    if not found:
        raise GancliError(f"no trained run in {root}; train one with `gancli train MODEL`, "
                          "pass --checkpoints-dir, or give two things to compare")
    return found[-1].parent


def number(key: str, value: float) -> str:
    """FIDs to 2 decimals, KID to 4 significant digits, fractions to 3 decimals."""
    if key == "kid":
        return f"{value:.4g}"
    return f"{value:.3f}" if key in ("precision", "recall", "density", "coverage") else (
        f"{value:.2f}")


def result_table(report: metrics.Report) -> Table:
    """One row per metric: value, spread over subsets/splits, 95% bootstrap interval."""
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("± std", justify="right")
    if any(v.low is not None for v in report.values.values()):
        table.add_column("95% interval", justify="right")
    table.add_column("better", justify="left")
    for key, v in report.values.items():
        cells = [metrics.TITLES[key], f"[bold]{number(key, v.value)}[/]",
                 number(key, v.spread) if v.spread is not None else ""]
        if len(table.columns) == 5:
            cells.append(f"{number(key, v.low)} - {number(key, v.high)}"
                         if v.low is not None else "")
        cells.append("lower" if key in metrics.LOWER_IS_BETTER else "higher")
        table.add_row(*cells)
    return table


def facts_line(sets: list[FeatureSet], seconds: float) -> str:
    return (f"n A {sets[0].n or '?'}, n B {sets[1].n or '?'}; {sets[0].extractor} features, "
            f"{sets[0].dims} dims; {seconds:.1f} s")


def per_class_table(classes: list[str], per_class: dict[str, float]) -> Table:
    table = Table(title="intra-FID per class", title_justify="left")
    table.add_column("class")
    table.add_column("intra-FID", justify="right")
    for name in classes:
        table.add_row(name, f"{per_class[name]:.2f}")
    return table


def conditional_report(run: RunSide, opts: Options, extractor: Extractor | None,
                       fake: FeatureSet) -> ClassReport | None:
    """Classify the run's balanced samples with the reference classifier, if there is one
    for its data and it knows the same classes; the feature pass's own logits when the
    features were that classifier's."""
    classes = run.ckpt["info"]["classes"]
    if isinstance(extractor, ClassifierFeatures) and extractor.classes == classes:
        seen = torch.from_numpy(fake.logits.argmax(1))
        return class_report(seen, torch.from_numpy(fake.labels), classes)
    try:
        seen = classify(run.facts, opts, classes, run.images)
    except GancliError as exc:
        err.print(f"[dim]per-class accuracy skipped: {exc}[/]")
        return None
    return class_report(seen, torch.from_numpy(fake.labels), classes)


def classify(facts: Facts, opts: Options, classes: list[str], images: torch.Tensor
             ) -> torch.Tensor:
    """The reference classifier's reading (class indices) of uint8 images, or a GancliError
    saying why there is none: no classifier for this data, or one that knows other classes."""
    classifier, _ = find_classifier(facts, opts)
    if classifier.info["classes"] != classes:
        raise GancliError("the classifier's classes differ from the run's")
    size, channels = classifier.cfg["image_size"], classifier.info["channels"]
    return torch.cat([classifier.logits(prepare(x, channels, size)).argmax(1).cpu()
                      for x in images.split(512)])


class TrainingEval(EpochHook):
    """--eval-every N: the --metrics of --eval-samples samples against the training data
    (its features cached) every N epochs and at the last; keeps best.pt (the lowest of the
    first of FID, KID, intra-FID asked for); a min/mean/max summary at the end."""

    def __init__(self, cfg: dict, trainer: Trainer) -> None:
        if not can_generate(trainer):
            raise GancliError(f"--eval-every: {cfg['model']} does not generate images from "
                              "noise")
        self.every, self.epochs = cfg["fid_every"], cfg["epochs"]
        features = cfg["fid_features"]
        self.opts = Options(n=cfg["fid_samples"], device=trainer.device, features=features,
                            seed=cfg["seed"])
        self.metrics = choose_metrics(cfg.get("eval_metrics") or "fid",
                                      features == "inception", trainer.conditional)
        self.real = ImagesSide(cfg["dataset"], "train", Path(cfg["data_root"]),
                               cfg["image_size"])
        self.extractor = make_extractor(features, self.real.facts, self.opts,
                                        logits="is" in self.metrics)
        suffix = "" if features == "inception" else "-clf"
        self.columns = {key: metrics.TITLES[key] + (suffix if key in metrics.LOWER_IS_BETTER
                                                    else "")
                        for m in self.metrics for key in metrics.METRICS[m]}
        lower = [k for k in self.columns if k in metrics.LOWER_IS_BETTER]
        self.best = lower[0] if lower else None
        self.said: set[str] = set()  # notes are printed once per run, not every epoch

    def after_epoch(self, trainer: Trainer, row: dict) -> dict[str, float]:
        epoch = row["epoch"]
        if not row["complete"] or (epoch % self.every and epoch != self.epochs):
            return {}
        real = self.real.features(self.extractor.without_logits(), self.opts)
        fake, _ = sample_features(trainer, self.extractor, self.opts.n, 100, self.opts.seed)
        report = compare_remembering(real, fake, self.metrics)
        if "intra_fid" in self.metrics:
            run = self.real
            split = "test" if run.spec in TEST_SPLITS else "train"
            ref = ImagesSide(run.spec, split, run.root, run.image_size).features(
                self.extractor.without_logits(), self.opts,
                None if split == "test" else self.opts.n)
            metrics.intra_class_fid(ref, fake, trainer.info["classes"], report)
        for note in report.notes:
            if note not in self.said:
                self.said.add(note)
                err.print(f"[yellow]note:[/] epoch {epoch}: {note}", highlight=False)
        return {k: v for k, v in report.flat().items() if not k.endswith(("_low", "_high"))}

    def after_save(self, run: Run, row: dict) -> None:
        if self.best is None or self.best not in row:
            return
        values = [r[self.best] for r in _rows(run) if self.best in r]
        if row[self.best] <= min(values):
            checkpoint.atomic_write(run.dir / "best.pt", run.checkpoint.read_bytes())

    def finish(self, run: Run) -> None:
        rows = [r for r in _rows(run) if any(k in r for k in self.columns)]
        if rows:
            err.print(history_table(rows, self.columns, self.best))


def _rows(run: Run) -> list[dict]:
    if not run.metrics.exists():
        return []
    return [json.loads(line) for line in run.metrics.read_text().splitlines() if line]


def history_table(rows: list[dict], columns: dict[str, str], best: str | None) -> Table:
    """min / mean / max of each metric over the epochs it was measured, its history, and
    the epoch best.pt holds."""
    title = f"evaluation over {counted(len(rows), 'epoch')}"
    if best:
        chosen = min((r for r in rows if best in r), key=lambda r: r[best])
        title += f" (best.pt = epoch {chosen['epoch']}, lowest {columns[best]})"
    table = Table(title=title, title_justify="left")
    for name in ("metric", "min", "mean", "max", "best epoch", "history"):
        table.add_column(name, justify="left" if name in ("metric", "history") else "right")
    for key, name in columns.items():
        have = [r for r in rows if key in r and math.isfinite(r[key])]
        if not have:
            continue
        values = [r[key] for r in have]
        pick = min if key in metrics.LOWER_IS_BETTER else max
        table.add_row(name, number(key, min(values)), number(key, sum(values) / len(values)),
                      number(key, max(values)), str(pick(have, key=lambda r: r[key])["epoch"]),
                      "  ".join(f"{r['epoch']}:{number(key, r[key])}" for r in have))
    return table


def sample_accuracy(trainer: Trainer, images: torch.Tensor, labels: torch.Tensor,
                    root: Path | None = None) -> str | None:
    """One line on conditional samples: the share the reference classifier reads as the
    class asked for, or None where no classifier knows these classes (nothing to say)."""
    cfg, info = trainer.cfg, trainer.info
    facts = Facts(cfg["dataset"], info["channels"], cfg["image_size"])
    try:
        seen = classify(facts, Options(device=trainer.device, root=root), info["classes"],
                        data.to_uint8(images))
    except GancliError:
        return None
    right = int((seen == labels.cpu()).sum())
    return (f"class accuracy {100 * right / len(labels):.0f}% ({right}/{len(labels)} read as "
            "the class asked for by the reference classifier)")
