"""`gancli export`: a trained run as a small, sample-only copy in a new folder: its
sampling networks as fp16 (or fp32) PyTorch weights, or as ONNX graphs that are checked
against PyTorch before the export is kept."""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from gancli import checkpoint, rundir
from gancli.errors import GancliError
from gancli.runs import first_line, restore
from gancli.trainers.base import Trainer

console = Console(stderr=True, soft_wrap=True)  # paths stay whole in logs

FORMATS = ("pt", "onnx")
TOLERANCE = 1e-4  # largest |PyTorch - onnxruntime| an ONNX export may differ by
CHECK_BATCH = 3  # the check runs another batch size than the export traced: dynamic batch
OPSET = 18
# What a run folder's record an export copies along (the pictures, logs and run page)
RECORD = ("config.json", "metrics.jsonl", "losses.csv", "loss_curves.png", "real_vs_fake.png",
          "index.html", "samples")


def export_run(target: str, out: Path, half: bool = True, root: Path | None = None,
               fmt: str = "pt") -> None:
    """Copy a run's sampling networks (the pt format: a checkpoint `sample`, `inspect`
    and `translate` read; onnx: one graph a network, verified) plus its config, logs and
    pictures into the new folder `out`."""
    if fmt not in FORMATS:
        raise GancliError(f"--format must be one of {', '.join(FORMATS)}, not '{fmt}'")
    trainer, ckpt = restore(target, torch.device("cpu"), root)
    # only what samples: the discriminators go, and so does a generator whose EMA copy
    # samples in its place (half the size)
    keep = [k for k in trainer.nets
            if k not in trainer.discriminators and f"{k}_ema" not in trainer.nets]
    src: Path = ckpt["path"].parent
    out = Path(out)
    holder = rundir.held_by(out)
    if holder:
        raise GancliError(f"cannot export into {out}: {rundir.busy(out, holder)}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GancliError(f"export writes a new folder; {out} already exists"
                          + ("" if out.is_dir() else " as a file") + " (pick another name)")
    existed = out.exists()
    try:
        if fmt == "onnx":
            said = export_onnx(trainer, [k.removesuffix("_ema") for k in keep], out)
        else:
            said = export_pt(ckpt, keep, half, out)
        for name in RECORD:
            if (src / name).is_dir():
                shutil.copytree(src / name, out / name, dirs_exist_ok=True)
            elif (src / name).exists():
                shutil.copy2(src / name, out / name)
    except (OSError, GancliError) as exc:
        shutil.rmtree(out, ignore_errors=True)  # no half export is left to be mistaken
        if existed:
            out.mkdir(exist_ok=True)
        if isinstance(exc, GancliError):
            raise GancliError(f"{exc}; nothing was exported") from None
        reason = exc.strerror or first_line(exc)
        raise GancliError(f"cannot write {exc.filename or out}: {reason}; the run {src} is "
                          "untouched and the partial export was removed") from None
    console.print(f"{said} -> {out}")


def export_pt(ckpt: dict, keep: list[str], half: bool, out: Path) -> str:
    """The sampling networks' weights as a checkpoint without optimizers."""
    slim = checkpoint.export(ckpt, keep, half)
    slim["state"] = {**slim["state"], "commands": [*slim["state"].get("commands", []),
                                                   shlex.join(["gancli", *sys.argv[1:]])]}
    checkpoint.save(out / checkpoint.FILENAME, slim)
    size = (out / checkpoint.FILENAME).stat().st_size / 1e6
    return f"exported {', '.join(keep)} ({'fp16' if half else 'fp32'}, {size:.1f} MB)"


def export_onnx(trainer: Trainer, names: list[str], out: Path) -> str:
    """Each sampling network as NAME.onnx (fp32, any batch size), and onnx.json saying
    what goes in and out of each and how far onnxruntime's outputs were from PyTorch's.
    A graph that differs by more than TOLERANCE is refused: a one-line error, no files."""
    ort = _onnx_runtime()
    out.mkdir(parents=True, exist_ok=True)
    graphs, said = {}, []
    for name in names:
        net = trainer.sampler(name).eval()
        file = out / f"{name}.onnx"
        inputs = trainer.export_inputs(name, 2, torch.Generator().manual_seed(0))
        batch = torch.export.Dim("batch", min=1)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the exporter's notes on its own internals
                torch.onnx.export(net, tuple(inputs.values()), str(file), dynamo=True,
                                  input_names=list(inputs),
                                  output_names=[trainer.export_output],
                                  dynamic_shapes=tuple({0: batch} for _ in inputs),
                                  opset_version=OPSET, external_data=False, verbose=False)
        except Exception as exc:  # noqa: BLE001 - torch.export's many errors, in one line
            raise GancliError(f"{name} cannot be exported to ONNX ({first_line(exc)})"
                              ) from None
        check = trainer.export_inputs(name, CHECK_BATCH, torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected = net(*check.values()).float().numpy()
        got = run_onnx(ort, file, {k: v.numpy() for k, v in check.items()})
        diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else np.inf
        if not diff <= TOLERANCE:
            raise GancliError(f"the ONNX graph of {name} differs from PyTorch by {diff:.3g} "
                              f"(largest absolute difference over a batch of {CHECK_BATCH}), "
                              f"more than {TOLERANCE:g}")
        graphs[file.name] = {
            "network": name,
            "inputs": {k: {"shape": ["batch", *v.shape[1:]], "dtype": str(v.dtype)
                           .removeprefix("torch.")} for k, v in check.items()},
            "output": trainer.export_output, "max_abs_diff": diff}
        said.append(f"{file.name} (max |PyTorch - onnxruntime| {diff:.2g})")
    manifest = {"model": trainer.spec.name, "graphs": graphs, **trainer.export_notes()}
    checkpoint.atomic_write(out / "onnx.json", json.dumps(manifest, indent=2).encode())
    return "exported " + ", ".join(said)


def run_onnx(ort, file: Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """onnxruntime's output of the graph in `file` on the CPU; a graph it cannot run (e.g.
    one whose batch size was fixed when traced) is a one-line error."""
    try:
        session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        return session.run(None, inputs)[0]
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own error types
        raise GancliError(f"onnxruntime cannot run {file.name} on a batch of {CHECK_BATCH} "
                          f"({first_line(exc)})") from None


def _onnx_runtime():
    """onnxruntime, once torch.onnx's exporter has what it needs (onnx, onnxscript), or a
    one-line error saying what to install."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError as exc:
        # no brackets ("gancli[onnx]"): the error line is printed as rich markup
        raise GancliError(f"--format onnx needs {exc.name} (pip install onnx onnxscript "
                          "onnxruntime)") from None
    return onnxruntime
