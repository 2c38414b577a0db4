"""Every metric of one comparison from the two sides' feature sets (one extraction pass
each): which metrics a --metrics list names, their values, spreads, bootstrap intervals,
and one line for each thing a user should know (a metric that cannot be computed at this
n, FID's bias at small n)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from gancli.errors import GancliError
from gancli.metrics.features import FeatureSet, console
from gancli.metrics.fid import frechet_distance, statistics, too_few
from gancli.metrics.inception_score import inception_score
from gancli.metrics.kid import SUBSET_SIZE, kid, subset_size
from gancli.metrics.prdc import K, knn_radii, prdc_terms

# --metrics names -> the values they report
METRICS: dict[str, tuple[str, ...]] = {
    "fid": ("fid",), "kid": ("kid",), "pr": ("precision", "recall"),
    "dc": ("density", "coverage"), "is": ("is",), "intra_fid": ("intra_fid",),
}
LOWER_IS_BETTER = ("fid", "kid", "intra_fid")
TITLES = {"fid": "FID", "kid": "KID", "precision": "precision", "recall": "recall",
          "density": "density", "coverage": "coverage", "is": "IS", "intra_fid": "intra-FID"}
MIN_BOOTSTRAP_N = 10  # fewer images per set: a resample is mostly copies


def parse(text: str) -> list[str]:
    """A --metrics list (fid,kid,pr,dc,is,intra_fid or all) -> metric names in that order;
    `all` stands for every one (the caller drops those that do not apply)."""
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    if not names:
        raise GancliError("--metrics is empty; choose from " + ", ".join(METRICS) + ", all")
    out: list[str] = []
    for name in names:
        if name == "all":
            out += [m for m in METRICS if m not in out]
        elif name in METRICS:
            out += [name] if name not in out else []
        else:
            raise GancliError(f"unknown metric '{name}' in --metrics (choose from "
                              + ", ".join(METRICS) + ", all)")
    return out


@dataclass
class Value:
    """A metric's value; `spread` is its standard deviation over KID's subsets or IS's
    splits; `low`..`high` its 95% bootstrap interval."""

    value: float
    spread: float | None = None
    low: float | None = None
    high: float | None = None


@dataclass
class Report:
    values: dict[str, Value] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # one line each
    per_class: dict[str, float] = field(default_factory=dict)  # intra-FID of each class

    def flat(self) -> dict[str, float]:
        """Values for metrics.jsonl: fid, kid, kid_std, kid_low, kid_high, ..."""
        out: dict[str, float] = {}
        for key, v in self.values.items():
            out[key] = v.value
            for suffix, extra in (("std", v.spread), ("low", v.low), ("high", v.high)):
                if extra is not None:
                    out[f"{key}_{suffix}"] = extra
        return out


def compare(a: FeatureSet, b: FeatureSet, metrics: list[str], bootstrap: int = 0,
            seed: int = 0) -> Report:
    """The two-set metrics of B (judged) against A (the reference); intra_fid is
    `intra_class_fid`'s, with its own reference set."""
    report = Report()
    if "fid" in metrics:
        known = [s.n for s in (a, b) if s.n]  # 0: a pytorch-fid .npz does not say
        warning = too_few(min(known), a.dims, a.extractor) if known else None
        if warning:
            report.notes.append(warning)
        try:
            report.values["fid"] = Value(max(frechet_distance(a.stats(), b.stats()), 0.0))
        except GancliError as exc:
            report.notes.append(f"FID: {exc}")
    if "kid" in metrics:
        mean, std = kid(a.features, b.features)
        whole = subset_size(a.n, b.n) == a.n == b.n  # every subset is both whole sets
        report.values["kid"] = Value(mean, None if whole else std)
        if whole and not bootstrap:
            report.notes.append(f"KID: with n = {a.n} (at most {SUBSET_SIZE}) each subset is "
                                "the whole set, so it has no spread over subsets (a "
                                "bootstrap interval measures its noise)")
    terms: dict[str, np.ndarray] = {}
    if "pr" in metrics or "dc" in metrics:
        try:
            if a.radii is None and a.n > K:
                a.radii = knn_radii(a.features)
            found = prdc_terms(a.features, b.features, real_radii=a.radii)
        except GancliError as exc:
            report.notes.append(str(exc))
        else:
            terms = {k: found[k] for group in ("pr", "dc") if group in metrics
                     for k in METRICS[group]}
            report.values.update({k: Value(float(v.mean())) for k, v in terms.items()})
    if "is" in metrics:
        try:
            report.values["is"] = Value(*inception_score(b.logits))
        except GancliError as exc:
            report.notes.append(str(exc))
    if bootstrap:
        intervals(a, b, [m for m in ("fid", "kid") if m in report.values], bootstrap, seed,
                  report)
        if terms and min(a.n, b.n) >= MIN_BOOTSTRAP_N:
            term_intervals(terms, bootstrap, seed, report)
    return report


def term_intervals(terms: dict[str, np.ndarray], k: int, seed: int, report: Report) -> None:
    """95% intervals of precision, recall, density and coverage, each a mean of per-image
    terms (over the generated images for precision and density, the real ones for recall
    and coverage): the percentiles of the means of k resamples of those terms. The other
    set's k-NN balls stay as measured, so this is the noise of the set averaged over; the
    balls cannot be redrawn with replacement (a repeated image is its own neighbour at
    distance 0 and would shrink every ball)."""
    rng = np.random.default_rng(seed)
    for m, values in terms.items():
        means = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(k)]
        low, high = np.percentile(means, [2.5, 97.5])
        report.values[m].low, report.values[m].high = float(low), float(high)


def intervals(a: FeatureSet, b: FeatureSet, metrics: list[str], k: int, seed: int,
              report: Report) -> None:
    """95% intervals from k bootstrap resamples of both sets (drawn with replacement, each
    the size of its set): the 2.5th and 97.5th percentiles of the resampled values, less
    the resamples' own bias (their median minus the estimate).

    A resample repeats some images and lacks others, so it looks like a smaller set: its
    FID is biased upward just as FID at a smaller n is (+2.8 at n = 1,000 on MNIST), and the
    raw percentiles can miss the estimate altogether. Their spread is right (it matched
    the spread over independent draws of 1,000 samples), so the interval keeps it and is
    centred where the estimate is. KID on a resample leaves out pairs of copies (kid's
    `sources`), so it has no such bias and the correction is near zero."""
    if not metrics:
        return
    if min(a.n, b.n) < MIN_BOOTSTRAP_N:
        report.notes.append(f"no bootstrap interval: it needs at least {MIN_BOOTSTRAP_N} "
                            f"images per set, not {min(a.n, b.n)}")
        return
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {m: [] for m in metrics}
    progress = Progress(TextColumn("bootstrap"), BarColumn(), MofNCompleteColumn(),
                        console=console, transient=True)
    with progress:
        task = progress.add_task("bootstrap", total=k)
        for _ in range(k):
            i, j = rng.integers(0, a.n, a.n), rng.integers(0, b.n, b.n)
            x, y = a.features[i], b.features[j]
            for m in list(values):
                try:
                    values[m].append(max(frechet_distance(statistics(x, a.extractor),
                                                          statistics(y, b.extractor)), 0.0)
                                     if m == "fid" else kid(x, y, sources=(i, j))[0])
                except GancliError as exc:
                    report.notes.append(f"no {TITLES[m]} interval: on a resample, {exc}")
                    del values[m]
            progress.advance(task)
    for m, vals in values.items():
        low, mid, high = np.percentile(vals, [2.5, 50, 97.5])
        value = report.values[m].value
        report.values[m].low = float(value - (mid - low))
        report.values[m].high = float(value + (high - mid))
        if m == "fid":  # a distance is never below 0
            report.values[m].low = max(report.values[m].low, 0.0)


def intra_class_fid(ref: FeatureSet, fake: FeatureSet, classes: list[str],
                    report: Report) -> None:
    """Mean over classes of the FID between each class's samples and that class's
    reference images ("intra-class FID"); per class in `report.per_class`."""
    if ref.labels is None or fake.labels is None:
        raise GancliError("intra_fid needs class labels on both sides (a conditional run "
                          "and a labelled dataset)")
    smallest = None
    for c, name in enumerate(classes):
        mine, theirs = fake.features[fake.labels == c], ref.features[ref.labels == c]
        if min(len(mine), len(theirs)) < 2:
            report.notes.append(f"intra-FID: class {name} has {len(mine)} samples and "
                                f"{len(theirs)} reference images; it needs 2 of each")
            return
        smallest = min(smallest or len(mine), len(mine), len(theirs))
        try:
            report.per_class[name] = max(frechet_distance(statistics(theirs, ref.extractor),
                                                          statistics(mine, fake.extractor)),
                                         0.0)
        except GancliError as exc:
            report.notes.append(f"intra-FID, class {name}: {exc}")
            report.per_class.clear()
            return
    report.values["intra_fid"] = Value(float(np.mean(list(report.per_class.values()))))
    warning = too_few(smallest, ref.dims, ref.extractor)
    if warning:
        report.notes.append(f"intra-FID ({smallest} per class): {warning}")
