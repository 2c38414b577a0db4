"""Datasets decoded once into uint8 tensors, and shuffled batches drawn from memory.

Decoding every image once and batching by indexing a tensor keeps PIL out of the
training loop: on a 2-core laptop per-sample transforms would cost more than the model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from gancli.errors import GancliError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
DIGITS = [str(d) for d in range(10)]
T = TypeVar("T")


@dataclass(frozen=True)
class Builtin:
    """A torchvision dataset: its class, shape and the files it needs on disk."""

    cls: str
    channels: int
    size: int
    classes: list[str]
    files: str


BUILTINS: dict[str, Builtin] = {
    "mnist": Builtin("MNIST", 1, 28, DIGITS,
                     "MNIST/raw/train-images-idx3-ubyte (and the 3 other IDX files)"),
    "fashion-mnist": Builtin(
        "FashionMNIST", 1, 28,
        ["t-shirt", "trouser", "pullover", "dress", "coat",
         "sandal", "shirt", "sneaker", "bag", "ankle-boot"],
        "FashionMNIST/raw/train-images-idx3-ubyte (and the 3 other IDX files)",
    ),
    "cifar10": Builtin(
        "CIFAR10", 3, 32,
        ["airplane", "automobile", "bird", "cat", "deer",
         "dog", "frog", "horse", "ship", "truck"],
        "cifar-10-batches-py/ (or cifar-10-python.tar.gz)",
    ),
    "mnist-mini": Builtin("", 1, 28, DIGITS, "gancli/assets/mnist_mini.npz (ships with gancli)"),
}


def default_root() -> Path:
    """Where torchvision datasets are downloaded: $GANCLI_DATA or ~/.cache/gancli/data."""
    return Path(os.environ.get("GANCLI_DATA", Path.home() / ".cache" / "gancli" / "data"))


def run_root(cfg: dict) -> Path:
    """Where a trained run's data is now: the folder it was trained from if that still
    exists (runs shipped with gancli or copied from another machine may name one that
    does not), else the default."""
    stored = cfg.get("data_root")
    if stored and Path(stored).expanduser().is_dir():
        return Path(stored).expanduser()
    return default_root()


# Files left out because they could not be decoded, each with the reason.
Skipped = list[tuple[Path, str]]


@dataclass
class ImageSet:
    """A whole dataset in memory: uint8 images (N, C, H, W) and optional int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor | None
    classes: list[str] = field(default_factory=list)
    skipped: Skipped = field(default_factory=list)  # unreadable files left out

    def info(self, spec: str) -> dict:
        """What a checkpoint needs to rebuild networks without the data: shape and classes."""
        return {
            "dataset": spec,
            "channels": int(self.images.shape[1]),
            "image_size": int(self.images.shape[-1]),
            "num_classes": len(self.classes) if self.labels is not None else 0,
            "classes": list(self.classes) if self.labels is not None else [],
            "num_images": int(self.images.shape[0]),
        }


def describe(spec: str, image_size: int | None = None) -> dict:
    """Dataset info without loading anything (for `inspect MODEL`); folders are peeked at."""
    if spec in BUILTINS:
        b = BUILTINS[spec]
        size = image_size or b.size
        return {"dataset": spec, "channels": b.channels, "image_size": size,
                "num_classes": len(b.classes), "classes": b.classes, "num_images": 0}
    path = _folder_path(spec)
    files = list_images(path)
    if not files:
        raise GancliError(f"no images found under {path}")
    classes = _folder_classes(path)
    channels, width, height = header(files)
    native = min(width, height)
    return {"dataset": spec, "channels": channels, "image_size": image_size or native,
            "num_classes": len(classes), "classes": classes, "num_images": len(files)}


def load(spec: str, root: Path | None = None, image_size: int | None = None,
         train: bool = True) -> ImageSet:
    """Load `mnist`, `fashion-mnist`, `cifar10`, `mnist-mini` or `folder:PATH` into memory."""
    if spec == "mnist-mini":
        with np.load(Path(__file__).parent / "assets" / "mnist_mini.npz") as z:
            data = ImageSet(torch.from_numpy(z["images"]).unsqueeze(1),
                            torch.from_numpy(z["labels"]).long(), DIGITS)
    elif spec in BUILTINS:
        data = _load_torchvision(spec, Path(root) if root else default_root(), train)
    else:
        data = _load_folder(_folder_path(spec), image_size)
    if image_size and data.images.shape[-1] != image_size:
        data.images = resize_uint8(data.images, image_size)
    return data


def _load_torchvision(spec: str, root: Path, train: bool) -> ImageSet:
    import torchvision.datasets as tvd

    b = BUILTINS[spec]
    try:
        ds = getattr(tvd, b.cls)(root=str(root), train=train, download=True)
    except Exception as exc:  # offline, partial download, bad checksum
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GancliError(
            f"{spec} is not in {root} and could not be downloaded ({reason}); "
            f"put {b.files} under {root} or pass --data-root"
        ) from None
    images = torch.as_tensor(np.asarray(ds.data))
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
    return ImageSet(images.contiguous(), torch.as_tensor(ds.targets).long(), b.classes)


def _folder_path(spec: str) -> Path:
    if not spec.startswith("folder:"):
        names = ", ".join([*BUILTINS, "folder:PATH"])
        raise GancliError(f"unknown dataset '{spec}' (choose from {names})")
    if not spec.removeprefix("folder:").strip():
        raise GancliError("folder: needs a path, e.g. folder:../shared/data/grumpy_cats/B")
    path = Path(spec.removeprefix("folder:")).expanduser()
    if not path.is_dir():
        raise GancliError(f"dataset folder {path} does not exist")
    return path


def list_images(path: Path) -> list[Path]:
    """Every image file under `path`, recursively, in a stable order."""
    return sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _folder_classes(path: Path) -> list[str]:
    """Sub-folders that hold images are classes (ImageFolder); none means unlabelled."""
    subdirs = sorted(d for d in path.iterdir() if d.is_dir() and list_images(d))
    return [d.name for d in subdirs]


def image_header(file: Path) -> tuple[int, int, int]:
    """(channels, width, height) from the file's header; PIL's error if it has none."""
    from PIL import Image

    with Image.open(file) as im:
        return (1 if im.mode in ("L", "1", "I;16", "I") else 3), *im.size


def header(files: list[Path]) -> tuple[int, int, int]:
    """image_header of the first file that has one: what a folder's images are like, even
    when some are broken."""
    failures = []
    for file in files:
        try:
            return image_header(file)
        except Exception as exc:  # noqa: BLE001 - any undecodable file is skipped alike
            failures.append(f"{file.name}: {unreadable_reason(file, exc)}")
    raise GancliError(f"none of the {len(files)} image files under {common_folder(files)} "
                      f"can be read (e.g. {failures[0]})")


def common_folder(files: list[Path]) -> Path:
    return Path(os.path.commonpath([f.parent for f in files])) if files else Path(".")


def decode(files: list[Path], read: Callable[[Path], T]) -> tuple[list[T], list[int], Skipped]:
    """Decode every file in parallel. Files that cannot be read (truncated, not an image,
    empty) are left out and listed with their reason, so one broken file among hundreds does
    not stop a command; none readable at all is an error. Returns the decoded values, the
    indices of the files they came from and the skipped files."""
    def attempt(file: Path) -> tuple[T | None, str | None]:
        try:
            return read(file), None
        except Exception as exc:  # noqa: BLE001 - decoders raise many kinds for bad files
            return None, unreadable_reason(file, exc)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(attempt, files))
    kept = [i for i, (_, why) in enumerate(results) if why is None]
    skipped = [(files[i], why) for i, (_, why) in enumerate(results) if why is not None]
    if files and not kept:
        first, why = skipped[0]
        raise GancliError(f"none of the {len(files)} images under {common_folder(files)} can be "
                          f"read (e.g. {first.name}: {why})")
    return [results[i][0] for i in kept], kept, skipped


def unreadable_reason(path: Path, exc: BaseException) -> str:
    """Why a file is no usable image, in a few words."""
    from PIL import UnidentifiedImageError

    try:
        if path.stat().st_size == 0:
            return "empty file"
    except OSError as err:
        return err.strerror or "cannot be opened"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image"
    text = str(exc).strip()
    return text.splitlines()[0][:100] if text else type(exc).__name__


def skipped_warning(skipped: Skipped, listing: Path | None) -> str:
    """The one warning line every command prints for unreadable files: how many, and where
    they are all listed (without a listing file, their names and reasons)."""
    where = (f"listed in {listing}" if listing else
             "; ".join(f"{path}: {why}" for path, why in skipped))
    return f"skipped {len(skipped)} unreadable image file{'s' * (len(skipped) != 1)} ({where})"


def skipped_listing(skipped: Skipped) -> bytes:
    """unreadable.txt: one 'path<TAB>reason' line per skipped file."""
    return "".join(f"{path}\t{why}\n" for path, why in skipped).encode()


def read_image(path: Path, channels: int, size: int | None) -> torch.Tensor:
    """Decode one file to uint8 (C, H, W): shorter side resized to `size`, centre-cropped."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L" if channels == 1 else "RGB")
        if size:
            w, h = im.size
            scale = size / min(w, h)
            if scale != 1:
                im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                               resample=3)  # bicubic
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
        arr = np.asarray(im, dtype=np.uint8)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(arr.copy())


def _load_folder(path: Path, image_size: int | None) -> ImageSet:
    info = describe(f"folder:{path}", image_size)
    size, channels = info["image_size"], info["channels"]
    files = list_images(path)
    images, kept, skipped = decode(files, lambda p: read_image(p, channels, size))
    files = [files[i] for i in kept]
    classes = info["classes"]
    labels = None
    if classes:
        index = {c: i for i, c in enumerate(classes)}
        rel = [p.relative_to(path).parts for p in files]
        keep = [i for i, parts in enumerate(rel) if len(parts) > 1 and parts[0] in index]
        images = [images[i] for i in keep]
        labels = torch.tensor([index[rel[i][0]] for i in keep], dtype=torch.long)
    return ImageSet(torch.stack(images), labels, classes, skipped)


def resize_uint8(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Resize a uint8 batch once, in chunks so a 60k dataset does not need 4x its memory."""
    out = []
    for part in images.split(chunk):
        x = F.interpolate(part.float(), size=(size, size), mode="bilinear",
                          antialias=True, align_corners=False)
        out.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the range every generator's tanh produces."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255]."""
    return images.detach().add(1).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


class Batches:
    """Mini-batches from in-memory tensors; epoch e's order depends only on (seed, e).

    Because the order is a pure function of the epoch, resuming mid-epoch just skips the
    batches already seen, and a resumed run sees exactly what an uninterrupted one would.
    Under torchrun (`world` > 1) this is the distributed sampler: every rank draws the same
    permutation and takes every world-th image from offset `rank`, equal counts on each.
    """

    def __init__(self, tensors: dict[str, torch.Tensor], batch_size: int, seed: int,
                 device: torch.device, drop_last: bool = True,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 rank: int = 0, world: int = 1) -> None:
        total = len(next(iter(tensors.values())))
        n = total // world
        if n == 0:
            raise GancliError("the dataset holds no images" if not total else
                              f"{total} images cannot be shared by {world} processes")
        self.total, self.n, self.rank, self.world = total, n, rank, world
        self.batch_size = min(batch_size, n)
        self.seed = seed
        self.drop_last = drop_last
        self.transform = transform
        self.tensors = {k: v.to(device) for k, v in tensors.items()}

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.total, generator=g)[self.rank::self.world][:self.n]

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        device = next(iter(self.tensors.values())).device
        perm = self.order(epoch).to(device)  # one copy per epoch, not one per batch
        for i in range(skip, len(self)):
            idx = perm[i * self.batch_size:(i + 1) * self.batch_size]
            batch = {k: (to_float(v[idx]) if v.dtype == torch.uint8 else v[idx])
                     for k, v in self.tensors.items()}
            yield jointly(batch, self.transform) if self.transform else batch


def jointly(batch: dict[str, torch.Tensor],
            transform: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
    """Apply one random transform to all image tensors of a batch at once (stacked along
    channels), so the two images of a pix2pix pair get the same crop and flip."""
    keys = [k for k, v in batch.items() if v.is_floating_point() and v.ndim == 4]
    sizes = [batch[k].shape[1] for k in keys]
    out = transform(torch.cat([batch[k] for k in keys], dim=1))
    return {**batch, **dict(zip(keys, out.split(sizes, dim=1), strict=True))}
