"""`gancli inspect`: what a model's networks look like, layer by layer, and what a run holds."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from gancli import registry, rundir, runs
from gancli.trainers.base import Trainer

console = Console()


def trace(net: nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[tuple[str, str, str, int]]:
    """(name, layer type, output shape, own parameters) for every leaf layer, in call order.

    A spectrally normalised layer is one leaf: its `parametrizations` are not layers.
    """
    rows: list[tuple[str, str, str, int]] = []
    hooks = []
    for name, module in net.named_modules():
        if (name and "parametrizations" not in name.split(".")
                and all(child == "parametrizations" for child, _ in module.named_children())):
            def hook(mod, args, out, name=name):
                shape = tuple(out.shape[1:]) if torch.is_tensor(out) else "-"
                params = sum(p.numel() for p in mod.parameters())
                rows.append((name, type(mod).__name__, str(shape), params))
            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            net.eval()
            net(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return rows


def network_table(name: str, net: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Table:
    total = sum(p.numel() for p in net.parameters())
    shapes = ", ".join(str(tuple(x.shape[1:])) for x in inputs)
    table = Table(title=f"{name}: {type(net).__name__}  input {shapes}  "
                        f"{total:,} parameters", title_justify="left")
    table.add_column("layer")
    table.add_column("type")
    table.add_column("output shape (C, H, W)")
    table.add_column("params", justify="right")
    for layer, kind, shape, params in trace(net, inputs):
        table.add_row(layer, kind, shape, f"{params:,}" if params else "")
    return table


def show_networks(trainer: Trainer) -> None:
    for name, inputs in trainer.example_inputs().items():
        console.print(network_table(name, trainer.nets[name], inputs))
    total = sum(p.numel() for net in trainer.nets.values() for p in net.parameters())
    console.print(f"[bold]total parameters:[/] {total:,}")
    for title, columns, rows in trainer.summaries():
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        console.print(table)


def inspect_model(model: str, overrides: dict) -> None:
    """Networks of `model` as `train` would build them with these options."""
    cfg = registry.get(model).config(overrides)
    info = runs.describe_data(registry.get(model), cfg)
    cfg["image_size"] = info["image_size"]
    trainer = runs.build_trainer(cfg, info, torch.device("cpu"))
    console.print(f"[bold]{model}[/]: {registry.get(model).summary}  "
                  f"({info['channels']}x{cfg['image_size']}x{cfg['image_size']}, {cfg['dataset']})")
    show_networks(trainer)
    console.print(options_table(registry.get(model), cfg))


def options_table(spec: registry.ModelSpec, cfg: dict) -> Table:
    """What each of the model's own options does (`--help` has room only for names)."""
    table = Table(title=f"{spec.name} options", title_justify="left")
    for column in ("command", "option", "value", "what it does"):
        table.add_column(column)
    for command, options in (("train", spec.options), ("sample", spec.sample_options),
                             ("translate", spec.translate_options)):
        for key, opt in options.items():
            value = cfg.get(key, opt.default) if command == "train" else opt.default
            choices = f" ({'|'.join(opt.choices)})" if opt.choices else ""
            table.add_row(command, "--" + key.replace("_", "-"), str(value),
                          opt.help + choices)
    return table


def inspect_run(target: str, root: Path | None = None) -> None:
    """A trained run: its config, progress, last metrics, files, then its networks."""
    trainer, ckpt = runs.restore(target, torch.device("cpu"), root)
    path: Path = ckpt["path"]
    cfg, state = ckpt["config"], ckpt["state"]
    table = Table(title=f"run {path.parent}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("model", f"{cfg['model']} ({registry.get(cfg['model']).summary})")
    table.add_row("gancli version", str(ckpt.get("version")))
    table.add_row("dataset", f"{cfg['dataset']} ({ckpt['info']['num_images']} images, "
                             f"{runs.counted(ckpt['info']['channels'], 'channel')})")
    table.add_row("trained", f"{runs.counted(state['epoch'], 'epoch')}, "
                             f"{runs.counted(state['step'], 'step')}"
                             + (f" (+{state['step_in_epoch']} into the next)"
                                if state["step_in_epoch"] else ""))
    if state.get("commands"):
        table.add_row("wall time", f"{state['seconds']:.0f} s of training")
        table.add_row("commands", "\n".join(state["commands"]))
    if ckpt.get("exported"):
        table.add_row("weights", f"exported: {', '.join(ckpt['nets'])} only (sample-only "
                                 "copy; the other networks are untrained)")
    lines = rundir.complete_lines(path.parent / "metrics.jsonl")  # the run may be training
    if lines:
        last = json.loads(lines[-1])
        shown = {k: v for k, v in last.items() if isinstance(v, float)}
        table.add_row("last epoch", "  ".join(f"{k} {v:.4g}" for k, v in shown.items()))
        rows = [json.loads(line) for line in lines]
        fids = [f"{r['epoch']}:{r['fid']:.2f}" for r in rows if "fid" in r]
        if fids:
            table.add_row("FID history", "  ".join(fids))
    options = {k: v for k, v in cfg.items() if k not in ("model",)}
    table.add_row("config", "  ".join(f"{k}={v}" for k, v in options.items()))
    files = sorted(p for p in path.parent.rglob("*") if p.is_file())
    table.add_row("files", "\n".join(str(p) for p in files[:12])
                  + (f"\n... {len(files) - 12} more" if len(files) > 12 else ""))
    console.print(table)
    show_networks(trainer)
