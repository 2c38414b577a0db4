"""Image-to-image data: paired (pix2pix) and unpaired (CycleGAN) folders, decoded once into
uint8 tensors {"A", "B"} of equal length, so the engine's `Batches` serves them like any
other dataset, plus the random jitter that must hit both images of a pair identically.

Layouts:
- paired: side-by-side A|B images (the pix2pix release format, e.g. facades/train), or
  `A/` and `B/` folders with matching file names;
- unpaired: `trainA/ trainB/` (testA/testB are left for translate) or `A/ B/`.
A folder holding `train/` (pix2pix releases) means its `train/` part.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from gancli import augment
from gancli.data import (
    Skipped,
    decode,
    default_root,
    header,
    image_header,
    list_images,
    read_image,
    resize_uint8,
)
from gancli.errors import GancliError

# Named datasets live under --data-root / $GANCLI_DATA; their native size lets `inspect`
# describe a model without the files.
NAMED = {"facades": 256, "grumpy_cats": 64, "apple2orange": 256}
JITTER_SCALE = 286 / 256  # pix2pix: resize 256 -> 286, random-crop back to 256


def dataset_path(cfg: dict, must_exist: bool = True) -> Path | None:
    """`folder:PATH` or a named dataset under the data root; None if a named one is absent
    and `must_exist` is false."""
    spec = cfg["dataset"]
    if spec.startswith("folder:"):
        path = Path(spec.removeprefix("folder:")).expanduser()
        if not path.is_dir():
            raise GancliError(f"dataset folder {path} does not exist")
    elif spec in NAMED:
        root = Path(cfg.get("data_root") or default_root())
        path = root / spec
        if not path.is_dir():
            if not must_exist:
                return None
            raise GancliError(f"{spec} is not in {root} (expected {path}/); pass --data-root "
                              f"(e.g. ../shared/data) or --dataset folder:PATH")
    else:
        raise GancliError(f"unknown dataset '{spec}' for image-to-image models (choose from "
                          f"{', '.join(NAMED)} or folder:PATH)")
    return path / "train" if (path / "train").is_dir() else path


def _domains(path: Path) -> tuple[Path, Path] | None:
    for a, b in (("trainA", "trainB"), ("A", "B")):
        if (path / a).is_dir() and (path / b).is_dir():
            return path / a, path / b
    return None


def domain_folder(cfg: dict, domain: str) -> Path | None:
    """A run's training images of domain "A" or "B" (unpaired data), if still there."""
    try:
        path = dataset_path(cfg, must_exist=False)
    except GancliError:
        return None
    domains = _domains(path) if path is not None else None
    return domains["AB".index(domain)] if domains else None


def is_side_by_side(file: Path) -> bool:
    """An A|B pair: at least twice as wide as tall (facades has 512x256 but also 512x157;
    a 3:2 or 16:9 photo is not a pair)."""
    _, w, h = image_header(file)
    return w >= 2 * h


def _paired_files(path: Path) -> tuple[str, list[tuple[Path, Path | None]]]:
    """The layout and (A, B) files, or (file, None) for side-by-side A|B images."""
    domains = _domains(path)
    if domains:
        a_dir, b_dir = domains
        b_files = {p.relative_to(b_dir): p for p in list_images(b_dir)}
        pairs = [(p, b_files[p.relative_to(a_dir)]) for p in list_images(a_dir)
                 if p.relative_to(a_dir) in b_files]
        if not pairs:
            raise GancliError(f"{a_dir} and {b_dir} share no file names; paired folders "
                              "need matching names")
        return "A/B folders", pairs
    files = list_images(path)
    if not files:
        raise GancliError(f"no images found under {path}")
    _, w, h = header(files)
    if w < 2 * h:
        raise GancliError(f"{path} holds neither side-by-side A|B images (width >= 2 x height, "
                          f"its first readable image is {w}x{h}) nor A/ and B/ folders with "
                          "matching names")
    return "side-by-side", [(f, None) for f in files]


def _unpaired_files(path: Path) -> tuple[list[Path], list[Path]]:
    domains = _domains(path)
    if not domains:
        raise GancliError(f"{path} has no trainA/ and trainB/ (or A/ and B/) folders; "
                          "unpaired data needs one folder per domain")
    a, b = (list_images(d) for d in domains)
    for d, files in zip(domains, (a, b), strict=True):
        if not files:
            raise GancliError(f"no images found under {d}")
    return a, b


def describe(cfg: dict, paired: bool) -> dict:
    """Dataset facts without decoding anything (networks are built before data loads)."""
    path = dataset_path(cfg, must_exist=False)
    if path is None:  # a named dataset not downloaded: `inspect` still works
        return _info(cfg["dataset"], 3, cfg["image_size"] or NAMED[cfg["dataset"]], 0)
    if paired:
        layout, files = _paired_files(path)
        channels, w, h = header([a for a, _ in files])
        native = h if layout == "side-by-side" else min(w, h)
        return _info(cfg["dataset"], channels, cfg["image_size"] or native, len(files),
                     layout=layout)
    a, b = _unpaired_files(path)
    channels, w, h = header(a)
    return _info(cfg["dataset"], channels, cfg["image_size"] or min(w, h), max(len(a), len(b)),
                 num_a=len(a), num_b=len(b))


def _info(dataset: str, channels: int, size: int, n: int, **extra) -> dict:
    return {"dataset": dataset, "channels": channels, "image_size": size, "num_classes": 0,
            "classes": [], "num_images": n, **extra}


def load_size(cfg: dict) -> int:
    """Images are stored this large; with --jitter each batch is randomly cropped back."""
    size = cfg["image_size"]
    return round(size * JITTER_SCALE) if cfg.get("jitter") else size


def read_pair(file: Path, channels: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A side-by-side A|B file -> its two halves as uint8 (C, size, size); halves that are
    not square are stretched alike, so the pair stays aligned."""
    both = read_image(file, channels, None)
    half = both.shape[-1] // 2
    a, b = both[..., :half], both[..., half:2 * half]
    return tuple(resize_uint8(x[None], size)[0] for x in (a, b))


def load(cfg: dict, paired: bool) -> tuple[dict[str, torch.Tensor], dict, Skipped]:
    """{"A", "B"} uint8 tensors of equal length, the dataset info, and the files that could
    not be read (left out; a pair loses both images when one cannot be read).

    Unpaired domains differ in size: an epoch covers the larger one once and the smaller
    one is repeated in turn (index i -> i mod n), so `Batches` can draw both together.
    """
    info = describe(cfg, paired)
    path = dataset_path(cfg)
    channels, size = info["channels"], load_size(cfg)
    if paired:
        _, files = _paired_files(path)
        if files[0][1] is None:
            halves, _, skipped = decode([a for a, _ in files],
                                        lambda f: read_pair(f, channels, size))
            a, b = (torch.stack(x) for x in zip(*halves, strict=True))
        else:
            (a, kept_a, skipped), (b, kept_b, skipped_b) = (
                decode(list(side), lambda f: read_image(f, channels, size))
                for side in zip(*files, strict=True))
            by_a, by_b = dict(zip(kept_a, a, strict=True)), dict(zip(kept_b, b, strict=True))
            both = [i for i in by_a if i in by_b]
            if not both:
                raise GancliError(f"no pair under {path} has both images readable")
            a, b = (torch.stack([side[i] for i in both]) for side in (by_a, by_b))
            skipped += skipped_b
        return {"A": a, "B": b}, {**info, "num_images": len(a)}, skipped
    decoded = [decode(files, lambda f: read_image(f, channels, size))
               for files in _unpaired_files(path)]
    a, b = (torch.stack(images) for images, _, _ in decoded)
    n = max(len(a), len(b))
    info = {**info, "num_images": n, "num_a": len(a), "num_b": len(b)}
    a, b = (x[torch.arange(n) % len(x)] for x in (a, b))
    return {"A": a, "B": b}, info, [s for _, _, skipped in decoded for s in skipped]


def jitter(x: torch.Tensor, size: int) -> torch.Tensor:
    """Random size x size crop and horizontal flip per image of a [-1, 1] batch.

    Used through `data.jointly`, which stacks A and B along channels first, so both images
    of a pair get the same crop and flip. Offsets come from torch's CPU RNG (no device sync,
    restored on resume).
    """
    n, _, h, w = x.shape
    tops = torch.randint(0, h - size + 1, (n,)).tolist()
    lefts = torch.randint(0, w - size + 1, (n,)).tolist()
    flips = (torch.rand(n) < 0.5).tolist()
    crops = []
    for i in range(n):
        crop = x[i, :, tops[i]:tops[i] + size, lefts[i]:lefts[i] + size]
        crops.append(crop.flip(-1) if flips[i] else crop)
    return torch.stack(crops)


def real_transform(cfg: dict, paired: bool, channels: int
                   ) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The random changes to every real batch (A and B stacked along channels by
    `data.jointly`): --jitter's crop and flip, then --augment deluxe. A pair shares one
    deluxe draw, so input and target stay aligned and autocontrast stretches both alike;
    unpaired images have nothing to do with each other and get one draw each."""
    steps: list[Callable[[torch.Tensor], torch.Tensor]] = []
    if cfg["jitter"]:
        steps.append(partial(jitter, size=cfg["image_size"]))
    if cfg.get("augment") == "deluxe":
        steps.append(augment.deluxe if paired
                     else partial(_each_image, augment.deluxe, channels))
    return partial(_chain, steps) if steps else None


def _chain(steps: list[Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor
           ) -> torch.Tensor:
    for step in steps:
        x = step(x)
    return x


def _each_image(transform: Callable[[torch.Tensor], torch.Tensor], channels: int,
                x: torch.Tensor) -> torch.Tensor:
    """`transform` on each image of a channel-stacked batch as if it were alone."""
    n, _, h, w = x.shape
    return transform(x.reshape(-1, channels, h, w)).reshape(n, -1, h, w)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The middle size x size of (..., H, W): jittered data's un-jittered view (previews)."""
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    return x[..., top:top + size, left:left + size]
