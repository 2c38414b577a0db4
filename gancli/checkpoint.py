"""Checkpoints: written atomically, loaded without running code, found by model or run name."""

from __future__ import annotations

import io
import os
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import torch

from gancli import __version__
from gancli.errors import GancliError

FORMAT = "gancli-checkpoint/1"
FILENAME = "checkpoint.pt"
# Runs shipped with gancli (pretrained MNIST models, the reference classifier), found even
# outside the repository.
SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"


def default_dir() -> Path:
    """Where runs live: $GANCLI_CHECKPOINTS or ./checkpoints."""
    return Path(os.environ.get("GANCLI_CHECKPOINTS", "checkpoints"))


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temp file beside `path`, fsync, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give files the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_output(path: Path, data: bytes) -> None:
    """atomic_write for what a user asked for (a grid, a GIF, statistics): a path that
    cannot be written is a one-line error, not a traceback."""
    try:
        atomic_write(Path(path), data)
    except OSError as exc:
        raise GancliError(f"cannot write {path}: {exc.strerror or exc}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save(path: Path, payload: dict[str, Any]) -> None:
    """Serialise in memory first, so a failure while pickling never touches the file."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": __version__, **payload}, buf)
    atomic_write(path, buf.getvalue())


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with weights_only=True (no code runs); anything else is a one-line error."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise GancliError(f"checkpoint {path} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file (a text file gives KeyError)
        reason = ("not a PyTorch file" if isinstance(exc, KeyError) else
                  textwrap.shorten(str(exc).strip().splitlines()[0], 120, placeholder="...")
                  if str(exc).strip() else type(exc).__name__)
        raise GancliError(f"{path} is not a readable gancli checkpoint ({reason})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise GancliError(f"{path} is not a gancli checkpoint")
    return ckpt


def export(ckpt: dict[str, Any], keep: list[str], half: bool = True) -> dict[str, Any]:
    """A small, sample-only copy: just the `keep` networks, optionally in fp16, no optimizers.

    Such a file is for `sample`, `translate`, `fid` and `inspect`; it cannot be resumed.
    """
    nets = {k: {n: (t.half() if half and t.is_floating_point() else t) for n, t in sd.items()}
            for k, sd in ckpt["nets"].items() if k in keep}
    # Only what sampling needs: recipes' training state (fake pools, step counters) stays out.
    return {**{k: ckpt[k] for k in ("config", "info", "state")}, "nets": nets, "opts": {},
            "exported": True}


def newest_run(model: str, root: Path) -> Path:
    """The run of `model` under `root` whose checkpoint was written last; without one, the
    pretrained run shipped with gancli, so `gancli sample cgan` works from any folder."""
    found = sorted((root / model).glob(f"*/{FILENAME}"), key=lambda p: p.stat().st_mtime)
    if found:
        return found[-1]
    shipped = sorted((SHIPPED / model).glob(f"pretrained*/{FILENAME}"))
    if shipped:
        return shipped[0]
    raise GancliError(
        f"no trained {model} run in {root}/{model}; train one with `gancli train {model}`, "
        "or point --checkpoints-dir (or $GANCLI_CHECKPOINTS) at the folder that has it")


def resolve(target: str, root: Path, models: dict) -> Path:
    """Map a model name, run folder, run name or checkpoint file to a checkpoint file."""
    path = Path(target)
    if path.is_file():
        return path
    if path.is_dir():
        if (path / FILENAME).is_file():
            return path / FILENAME
        raise GancliError(f"{path} holds no {FILENAME}")
    if target in models:
        return newest_run(target, root)
    if (root / target / FILENAME).is_file():  # MODEL/RUN under the checkpoints folder
        return root / target / FILENAME
    by_name = sorted(root.glob(f"*/{target}/{FILENAME}"))
    if len(by_name) == 1:
        return by_name[0]
    if by_name:
        raise GancliError(f"run name '{target}' is ambiguous: "
                          + ", ".join(str(p.parent) for p in by_name)
                          + "; give MODEL/RUN or the folder")
    raise GancliError(
        f"'{target}' is neither a model ({', '.join(models)}), a run folder nor a checkpoint"
    )
