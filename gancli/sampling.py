"""`gancli sample`: new images from a trained run into a grid (and single files), or a
latent walk; which class is asked for, by name or index; the classifier's verdict on
conditional samples."""

from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console

from gancli import runs, viz
from gancli.data import to_uint8
from gancli.errors import GancliError
from gancli.trainers.base import Trainer

err = Console(stderr=True, soft_wrap=True)  # paths stay whole in logs


def sample(target: str, n: int, out: Path, *, out_dir: Path | None = None,
           wanted: str | None = None, seed: int = 0, device: torch.device | None = None,
           root: Path | None = None, args: list[str] | None = None,
           n_given: bool = False) -> None:
    """Everything `gancli sample` does once its options are read: `wanted` is the class
    (name or index), `args` the model's own sample options (--steps, --interpolate, ...),
    `n_given` whether -n was typed (a walk has no use for it)."""
    viz.image_format(out)
    trainer, ckpt = runs.restore(target, device or torch.device("cpu"), root)
    extra = trainer.spec.parse_options(list(args or []), trainer.spec.sample_options)
    if extra.get("gif") and not extra["gif"].lower().endswith(".gif"):
        raise GancliError(f"--gif writes an animated GIF: name it .gif, not {extra['gif']}")
    classes = ckpt["info"]["classes"]
    labels = None
    if wanted is not None:
        index = class_index(wanted, trainer.conditional, classes, trainer.spec.name)
        labels = torch.full((n,), index, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    walk = {k: o.default for k, o in trainer.spec.sample_options.items()} | extra
    if walk.get("interpolate") or walk.get("interpolate_labels"):
        if out_dir or n_given:
            raise GancliError(f"{'--out-dir' if out_dir else '-n'} is for single samples; a "
                              "latent walk is --interpolate K rows of --steps S in one grid "
                              "(--out) and optionally a GIF (--gif)")
        said = latent_walk(trainer, out, walk, labels, classes, generator)
        err.print(f"{said} (from {ckpt['path']})")
        return
    walk_only = [k for k in ("gif", "steps") if k in extra and "interpolate" in walk]
    if walk_only:
        raise GancliError(f"--{walk_only[0]} belongs to a latent walk: add --interpolate K "
                          "or --interpolate-labels A,B")
    images = trainer.generate(n, generator=generator, labels=labels, **extra)
    viz.save_grid(images, out, nrow=trainer.sample_nrow(n, labels))
    if trainer.conditional:
        from gancli.evaluate import sample_accuracy

        asked = labels if labels is not None else trainer.class_rows(n)
        said = sample_accuracy(trainer, images, asked, root)
        if said:
            err.print(said)
    for suffix, (extra_images, nrow) in trainer.extra_grids().items():
        extra_path = out.with_name(f"{out.stem}_{suffix}.png")
        viz.save_grid(extra_images, extra_path, nrow=nrow)
        err.print(f"{suffix} -> {extra_path}")
    if out_dir:
        for i, image in enumerate(images):
            # the image's own channels: grayscale stays grayscale, so folders compare with
            # the real data (fid --features classifier)
            viz.save_image(to_uint8(image.float().cpu()), out_dir / f"{i:05d}.png")
    err.print(f"{n} samples from {ckpt['path']} -> {out}" + (f" and {out_dir}/" if out_dir
                                                             else ""))


def latent_walk(trainer: Trainer, out: Path, walk: dict, labels: torch.Tensor | None,
                classes: list[str], generator: torch.Generator) -> str:
    """--interpolate K (between noise vectors, at one class if asked) or
    --interpolate-labels A,B (between two classes at fixed noise); returns what was
    written, in words."""
    from gancli.latent import sample_walk

    between = None
    if walk["interpolate_labels"]:
        if not trainer.conditional:
            raise GancliError(f"--interpolate-labels walks between classes; this "
                              f"{trainer.spec.name} model is not conditional")
        if labels is not None:
            raise GancliError("--interpolate-labels walks between two classes; it "
                              "takes no --digit/--label")
        between = tuple(class_index(c.strip(), trainer.conditional, classes, trainer.spec.name)
                        for c in walk["interpolate_labels"].split(","))
        if len(between) != 2:
            raise GancliError("--interpolate-labels takes two classes, e.g. 3,8")
    return sample_walk(trainer, out, walk["interpolate"] or 4, walk["steps"], generator,
                       None if labels is None else int(labels[0]), between, walk["gif"])


def class_index(wanted: str, conditional: bool, classes: list[str], model: str) -> int:
    """A class given by name or index -> its index, or a one-line error listing the valid ones."""
    if not conditional:
        raise GancliError(f"this {model} model is not conditional: it takes no --digit/--label")
    valid = ", ".join(f"{i}={c}" for i, c in enumerate(classes))
    if wanted in classes:
        return classes.index(wanted)
    if wanted.isdigit() and int(wanted) < len(classes):
        return int(wanted)
    raise GancliError(f"no class '{wanted}' (valid: {valid})")
