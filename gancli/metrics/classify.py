"""Does a conditional model draw the class it is asked for? Per-class accuracy of its samples
under the reference classifier, and which classes it mixes up."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from rich.table import Table


@dataclass
class ClassReport:
    """Confusion counts: row = class asked for, column = class the classifier saw."""

    classes: list[str]
    confusion: np.ndarray

    @property
    def per_class(self) -> np.ndarray:
        asked = self.confusion.sum(1)
        return np.divide(np.diag(self.confusion), asked, out=np.zeros(len(asked)),
                         where=asked > 0)

    @property
    def mean(self) -> float:
        """Mean of the per-class accuracies (every class counts the same)."""
        return float(self.per_class.mean())

    def confused(self, top: int = 5) -> list[tuple[str, str, float]]:
        """The most frequent (asked, seen, fraction of asked) mistakes, largest first."""
        asked = np.maximum(self.confusion.sum(1, keepdims=True), 1)
        rates = self.confusion / asked
        np.fill_diagonal(rates, 0)
        order = np.argsort(rates, axis=None)[::-1][:top]
        pairs = [np.unravel_index(i, rates.shape) for i in order]
        return [(self.classes[a], self.classes[b], float(rates[a, b]))
                for a, b in pairs if rates[a, b] > 0]


def class_report(seen: torch.Tensor, asked: torch.Tensor, classes: list[str]) -> ClassReport:
    """Tally predicted classes `seen` against the classes `asked` for."""
    k = len(classes)
    counts = torch.bincount(asked.long().cpu() * k + seen.long().cpu(), minlength=k * k)
    return ClassReport(list(classes), counts.view(k, k).numpy())


def report_table(report: ClassReport, title: str,
                 intra_fid: dict[str, float] | None = None) -> Table:
    """Per-class accuracy, the mean, and the most confused pairs (e.g. 3 -> 7); with
    `intra_fid`, each class's FID against its own real images beside its accuracy."""
    table = Table(title=title, title_justify="left")
    table.add_column("class")
    table.add_column("accuracy", justify="right")
    if intra_fid:
        table.add_column("intra-FID", justify="right")
    table.add_column("n", justify="right")
    for name, acc, n in zip(report.classes, report.per_class, report.confusion.sum(1),
                            strict=True):
        fid = [f"{intra_fid[name]:.2f}"] if intra_fid else []
        table.add_row(name, f"{acc:.1%}", *fid, str(int(n)))
    mean_fid = ([f"[bold]{sum(intra_fid.values()) / len(intra_fid):.2f}[/]"] if intra_fid
                else [])
    table.add_row("[bold]mean[/]", f"[bold]{report.mean:.1%}[/]", *mean_fid,
                  str(int(report.confusion.sum())))
    mistakes = report.confused()
    table.caption = "most confused: " + ("  ".join(f"{a} -> {b} {r:.0%}"
                                                   for a, b, r in mistakes) or "none")
    table.caption_justify = "left"
    return table
