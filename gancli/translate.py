"""`gancli translate`: run a trained model's Trainer.translate over a folder of images.

Generic over models: files are found recursively, read at the run's size and channels,
translated in batches and written under the same relative names. For paired models
(pix2pix) a side-by-side A|B file is split: its input half goes in, the other half is the
target, so the output is scored (L1, PSNR) and shown as an input | output | target triptych.
"""

from __future__ import annotations

import math
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


def psnr(output: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images (what was written vs target)."""
    mse = (output.float() - target.float()).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def translate_folder(trainer: Trainer, input_dir: Path, out: Path, options: dict,
                     batch_size: int = 16, source: Path | None = None) -> dict[str, float]:
    """Translate every image under `input_dir` into `out`; returns the printed numbers."""
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
    direction = options.get("direction") or trainer.cfg.get("direction") or "AtoB"

    model_sums: dict[str, float] = {}
    pair_sums = {"L1 to target": 0.0, "PSNR (dB)": 0.0}
    done, paired, unreadable = 0, 0, []
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
            for item, output in zip(items, outputs, strict=True):
                viz.save_image(output, out / item.rel)
                panels = (item.input, output) if item.target is None else (item.input, output,
                                                                           item.target)
                if item.target is not None:
                    paired += 1
                    diff = (to_float(output) - to_float(item.target)).abs().mean().item()
                    pair_sums["L1 to target"] += diff
                    pair_sums["PSNR (dB)"] += psnr(output, item.target)
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
    if paired:
        numbers.update({k: v / paired for k, v in pair_sums.items()})
    _summary(trainer, input_dir, out, done, paired, len(files) - len(images), unreadable,
             numbers, source)
    return numbers


def _summary(trainer: Trainer, input_dir: Path, out: Path, done: int, paired: int,
             others: int, unreadable: Skipped, numbers: dict[str, float],
             source: Path | None) -> None:
    table = Table(title=f"{trainer.spec.name}: {input_dir} -> {out}", show_header=False,
                  title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    if source:
        table.add_row("run", str(source))
    table.add_row("translated", f"{done} images" + (f" ({paired} A|B pairs: input half in, "
                                                    "scored against the other half)"
                                                    if paired else ""))
    if others:
        table.add_row("skipped", f"{others} non-image files")
    if unreadable:
        table.add_row("unreadable", f"{len(unreadable)} (listed in {out / 'unreadable.txt'})")
    for key, value in numbers.items():
        table.add_row(key, f"{value:.4f}")
    table.add_row("written", f"{out}/ (same names)" + (", triptychs/" if paired else "")
                  + ", contact_sheet.png")
    console.print(table)
