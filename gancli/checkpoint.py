"""Checkpoints: written atomically, loaded without running code, found by model or run name."""

from __future__ import annotations

import io
import os
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gancli import __version__, registry
from gancli.errors import GancliError, WriteError
from gancli.registry import Opt

FORMAT_NAME = "gancli-checkpoint/"
FORMAT = FORMAT_NAME + "1"
FILENAME = "checkpoint.pt"
# Runs shipped with gancli (pretrained MNIST models, the reference classifier), found even
# outside the repository.
SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"


def default_dir() -> Path:
    """Where runs live: $GANCLI_CHECKPOINTS or ./checkpoints."""
    return Path(os.environ.get("GANCLI_CHECKPOINTS", "checkpoints"))


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temp file beside `path`, fsync, then rename: readers never see half a file.

    An OSError names `path` itself (not the temp file), so a full disk says what it was
    writing."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give files the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise


def write_output(path: Path, data: bytes) -> None:
    """atomic_write for what a user asked for (a grid, a GIF, statistics): a path that
    cannot be written is a one-line error, not a traceback."""
    try:
        atomic_write(Path(path), data)
    except OSError as exc:
        raise WriteError.of(exc) from None


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
    """Load with weights_only=True (no code runs) and check what it holds as a command line
    would be checked; anything else is a one-line error naming the file."""
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
    kind = ckpt.get("format") if isinstance(ckpt, dict) else None
    if not isinstance(kind, str) or not kind.startswith(FORMAT_NAME):
        raise GancliError(f"{path} is not a gancli checkpoint")
    if kind != FORMAT:
        raise GancliError(f"{path} was written by gancli {ckpt.get('version', '?')} in "
                          f"checkpoint format {kind.removeprefix(FORMAT_NAME)}; this gancli "
                          f"({__version__}) reads format {FORMAT.removeprefix(FORMAT_NAME)}"
                          " (a newer gancli reads it)")
    try:
        check(ckpt)
    except GancliError as exc:
        raise GancliError(f"{path}: {exc}") from None
    return ckpt


# What a checkpoint's `info` (dataset facts) and `state` (progress) must be; the config is
# checked with the command line's option table (registry).
INFO = {"channels": Opt(3, "image channels", low=1), "image_size": Opt(32, "pixels", low=1),
        "num_classes": Opt(0, "labelled classes", low=0), "classes": Opt([], "class names")}
STATE = {"epoch": Opt(0, "complete epochs", low=0), "step": Opt(0, "optimizer steps", low=0),
         "step_in_epoch": Opt(0, "steps into the next epoch", low=0),
         "seconds": Opt(0.0, "training wall time", low=0), "commands": Opt([], "commands")}
OPTIONAL = ("seconds", "commands")  # what the engine's RunState can do without


def check(ckpt: dict[str, Any]) -> None:
    """A checkpoint written elsewhere (another gancli, a script, an editor) is checked before
    networks are built from it: its config by the option table, its dataset facts and its
    progress by INFO and STATE."""
    for part in ("config", "info", "state", "nets"):
        if not isinstance(ckpt.get(part), dict):
            raise GancliError(f"it holds no {part} (a gancli checkpoint has config, info, "
                              "state and nets)")
    cfg, info = ckpt["config"], ckpt["info"]
    if not isinstance(cfg.get("model"), str) or cfg["model"] not in registry.MODELS:
        raise GancliError(f"config model {cfg.get('model')!r} is none of this gancli's models "
                          f"({', '.join(registry.MODELS)})")
    registry.get(cfg["model"]).check_stored(cfg)
    for part, table in (("info", INFO), ("state", STATE)):
        for key, opt in table.items():
            if key in ckpt[part]:
                opt.validate(f"{part} {key}", ckpt[part][key])
            elif key not in OPTIONAL:
                raise GancliError(f"{part} has no {key}")
    unknown = next((k for k in ckpt["state"] if k not in STATE), None)
    if unknown:
        raise GancliError(f"state has an unknown entry {unknown!r}")
    classes = info["classes"]
    if info["num_classes"] and (len(classes) != info["num_classes"]
                                or not all(isinstance(c, str) for c in classes)):
        raise GancliError(f"info classes must be {info['num_classes']} names (num_classes), "
                          f"not {classes!r:.80}")


def check_weights(nets: dict[str, nn.Module], saved: dict[str, Any], exported: bool,
                  model: str) -> None:
    """Weights that do not fit the networks rebuilt from the config: one line naming the
    first tensor that differs (torch's own error lists them all across many lines)."""
    for name, net in nets.items():
        theirs = saved.get(name)
        if theirs is None and exported:
            continue  # an exported run keeps only the networks that sample
        if not isinstance(theirs, dict):
            raise GancliError(f"it holds no weights for {name} of its {model}")
        ours = net.state_dict()
        for key, tensor in ours.items():
            found = theirs.get(key)
            if not torch.is_tensor(found):
                raise GancliError(f"weights {name}.{key} are missing (its config builds a "
                                  f"{model} that has them)")
            if found.shape != tensor.shape:
                raise GancliError(f"weights {name}.{key} are {_shape(found)} in the file, but "
                                  f"the {model} its config builds has {_shape(tensor)}")
        extra = next((k for k in theirs if k not in ours), None)
        if extra:
            raise GancliError(f"weights {name}.{extra} are in the file, but the {model} its "
                              "config builds has no such tensor")
    extra = next((k for k in saved if k not in nets), None)
    if extra:
        raise GancliError(f"weights of a network {extra} are in the file, but the {model} its "
                          "config builds has none")


def _shape(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) or "a scalar"


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
