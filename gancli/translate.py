"""`gancli translate`: run a trained model's Trainer.translate over a folder of images.

Generic over models: files are found recursively, read at the run's size and channels,
translated in batches and written under the same relative names. For paired models
(pix2pix) a side-by-side A|B file is split: its input half goes in, the other half is the
target, so each output is scored (L1, PSNR, SSIM) and shown as an input | output | target
triptych. The outputs as a set are compared with reference images (the targets, CycleGAN's
other domain, or --reference) by FID and KID, from one feature pass over each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from gancli import pairs, viz
from gancli.checkpoint import write_output
from gancli.data import (
    IMAGE_SUFFIXES,
    Skipped,
    read_image,
    skipped_listing,
    skipped_warning,
    to_float,
    to_uint8,
    unreadable_reason,
)
from gancli.errors import GancliError, WriteError
from gancli.metrics import compare, image
from gancli.metrics.features import Extractor, FeatureSet
from gancli.trainers.base import Trainer

console = Console()
err = Console(stderr=True, soft_wrap=True)
SHEET_ROWS = 12  # items shown in contact_sheet.png


@dataclass
class Item:
    """One input file: its name relative to the input folder, uint8 input, optional target."""

    rel: Path
    input: torch.Tensor
    target: torch.Tensor | None


def _read(path: Path, rel: Path, trainer: Trainer, direction: str) -> Item:
    size, channels = trainer.info["image_size"], trainer.info["channels"]
    if trainer.spec.data == "paired" and pairs.is_side_by_side(path):
        a, b = pairs.read_pair(path, channels, size)
        return Item(rel, *((a, b) if direction == "AtoB" else (b, a)))
    return Item(rel, read_image(path, channels, size), None)


def inputs(input_dir: Path, out: Path) -> tuple[list[Path], list[Path]]:
    """Every file under `input_dir` (but not under `out`), and the images among them."""
    if not input_dir.is_dir():
        raise GancliError(f"input folder {input_dir} does not exist")
    out_abs = out.resolve()
    if out_abs == input_dir.resolve() or out_abs in input_dir.resolve().parents:
        raise GancliError(f"--out {out} is or holds the input folder {input_dir}; write the "
                          "translations somewhere else")
    files = sorted(p for p in input_dir.rglob("*")
                   if p.is_file() and out_abs not in p.resolve().parents)
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise GancliError(f"no images found under {input_dir}")
    return files, images


def direction_of(trainer: Trainer, options: dict) -> str:
    """--direction, else the run's own (pix2pix), else AtoB."""
    return options.get("direction") or trainer.cfg.get("direction") or "AtoB"


@dataclass
class Scoring:
    """How the outputs are judged as a set: feature metrics (FID, KID, ...) with this
    extractor against `reference` images (features of the targets when None)."""

    metrics: list[str]
    extractor: Extractor | None  # None: not measured, for the reason in `skipped`
    reference: FeatureSet | None = None
    reference_path: Path | None = None
    skipped: str = ""

    @property
    def reference_label(self) -> str:
        return self.reference_path.name if self.reference_path else "targets"


def translate_folder(trainer: Trainer, input_dir: Path, out: Path, options: dict,
                     batch_size: int = 16, source: Path | None = None,
                     scoring: Scoring | None = None) -> dict[str, float]:
    """Translate every image under `input_dir` into `out`; returns the printed numbers."""
    files, images = inputs(input_dir, out)
    direction = direction_of(trainer, options)

    model_sums: dict[str, float] = {}
    per_image: dict[str, list[torch.Tensor]] = {"L1 to target": [], "PSNR (dB)": [],
                                                "SSIM": []}
    done, paired = 0, 0
    unreadable: Skipped = []
    # features of the outputs and of the targets, batch by batch: one pass each
    feats: dict[str, list[torch.Tensor]] = {"outputs": [], "targets": []}
    sheet: list[tuple[torch.Tensor, ...]] = []
    try:
        for start in range(0, len(images), batch_size):
            items = []
            for path in images[start:start + batch_size]:
                rel = path.relative_to(input_dir)
                try:
                    items.append(_read(path, rel, trainer, direction))
                except Exception as exc:  # noqa: BLE001 - decoders raise many kinds
                    unreadable.append((rel, unreadable_reason(path, exc)))
            if not items:
                continue
            outputs, numbers = trainer.translate(
                to_float(torch.stack([i.input for i in items])), **options)
            outputs = to_uint8(outputs.float().cpu())
            for key, value in numbers.items():
                model_sums[key] = model_sums.get(key, 0.0) + value * len(items)
            measure = scoring is not None and scoring.extractor is not None
            if measure:
                feats["outputs"].append(scoring.extractor(outputs)["features"])
            scored = [(o, i.target) for o, i in zip(outputs, items, strict=True)
                      if i.target is not None]
            if scored:
                got, want = (torch.stack(x) for x in zip(*scored, strict=True))
                per_image["L1 to target"].append(image.l1(got, want))
                per_image["PSNR (dB)"].append(image.psnr(got, want))
                if image.fits_ssim(got.shape[-1]):
                    per_image["SSIM"].append(image.ssim(got, want))
                if measure and scoring.reference is None:
                    feats["targets"].append(scoring.extractor(want)["features"])
                paired += len(scored)
            for item, output in zip(items, outputs, strict=True):
                viz.save_image(output, out / item.rel)
                panels = (item.input, output) if item.target is None else (item.input, output,
                                                                           item.target)
                if item.target is not None:
                    viz.save_image(viz.grid(to_float(torch.stack(panels)), nrow=3, pad=0),
                                   (out / "triptychs" / item.rel).with_suffix(".png"))
                if len(sheet) < SHEET_ROWS:
                    sheet.append(panels)
                done += 1
        if not done:
            first, why = unreadable[0]
            raise GancliError(f"none of the {len(images)} images under {input_dir} can be read "
                              f"(e.g. {first}: {why})")
        listing = out / "unreadable.txt"
        if unreadable:
            write_output(listing, skipped_listing(unreadable))
            err.print(f"[yellow]warning:[/] {skipped_warning(unreadable, listing)}",
                      highlight=False)
        else:
            listing.unlink(missing_ok=True)  # from an earlier translate into this folder
        cols = min(len(p) for p in sheet)
        viz.save_grid(to_float(torch.stack([x for p in sheet for x in p[:cols]])),
                      out / "contact_sheet.png", nrow=cols)
    except WriteError as exc:
        raise GancliError(f"{exc}; the inputs are untouched and the outputs written before "
                          f"it ({done}) are complete in {out}") from None
    numbers = {k: v / done for k, v in model_sums.items()}
    numbers.update({k: float(torch.cat(v).mean()) for k, v in per_image.items() if v})
    if scoring is not None and scoring.extractor is not None:
        numbers.update(_set_metrics(scoring, feats))
    record = {"run": str(source) if source else None, "input": str(input_dir),
              "direction": direction, "translated": done, "paired": paired,
              "reference": str(scoring.reference_path) if scoring and scoring.reference else None,
              "features": scoring.extractor.name if scoring and scoring.extractor else None,
              "metrics": numbers}
    write_output(out / "metrics.json", (json.dumps(record, indent=1) + "\n").encode())
    _summary(trainer, input_dir, out, done, paired, len(files) - len(images), unreadable,
             numbers, source, scoring)
    return numbers


def _set_metrics(scoring: Scoring, feats: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    """FID, KID, ... of all outputs against the reference (the targets by default)."""
    reference = scoring.reference
    if reference is None:
        if not feats["targets"]:
            err.print("[yellow]note:[/] FID/KID skipped: these are not A|B pairs, so there "
                      "are no targets; --reference FOLDER gives images to compare with",
                      highlight=False)
            return {}
        reference = FeatureSet(scoring.extractor.name,
                               torch.cat(feats["targets"]).float().numpy())
    outputs = FeatureSet(scoring.extractor.name, torch.cat(feats["outputs"]).float().numpy())
    report = compare.compare(reference, outputs, scoring.metrics)
    for note in report.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False)
    return {f"{compare.TITLES[k]} vs {scoring.reference_label}": v.value
            for k, v in report.values.items()}


def _summary(trainer: Trainer, input_dir: Path, out: Path, done: int, paired: int,
             others: int, unreadable: Skipped, numbers: dict[str, float],
             source: Path | None, scoring: Scoring | None) -> None:
    table = Table(title=f"{trainer.spec.name}: {input_dir} -> {out}", show_header=False,
                  title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")  # paths stay whole
    if source:
        table.add_row("run", str(source))
    table.add_row("translated", f"{done} images" + (f" ({paired} A|B pairs: input half in, "
                                                    "scored against the other half)"
                                                    if paired else ""))
    if others:
        table.add_row("skipped", f"{others} non-image files")
    if unreadable:
        table.add_row("unreadable", f"{len(unreadable)} (listed in {out / 'unreadable.txt'})")
    if scoring is not None and scoring.reference is not None:
        table.add_row("reference", f"{scoring.reference_path} ({scoring.reference.n} images, "
                                   f"{scoring.extractor.name} features)")
    # nothing to compare label maps alone with: no FID/KID row at all, not a missing-weights one
    if scoring is not None and scoring.skipped and (paired or trainer.spec.data == "unpaired"):
        table.add_row("FID, KID", f"not measured: {scoring.skipped}")
    for key, value in numbers.items():
        table.add_row(key, f"{value:.2f}" if key.startswith(("FID", "PSNR")) else
                      f"{value:.4g}" if key.startswith("KID") else f"{value:.4f}")
    table.add_row("written", f"{out}/ (same names)" + (", triptychs/" if paired else "")
                  + ", contact_sheet.png, metrics.json")
    console.print(table)
