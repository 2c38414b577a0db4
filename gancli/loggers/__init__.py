"""Loggers by the name --log gives them. A new logger is one `hooks.Logger` subclass in
one file of this folder, and one line here; a logger's own imports (TensorBoard) load only
when a run asks for it."""

from __future__ import annotations

import importlib

from gancli.errors import GancliError
from gancli.hooks import Logger

LOGGERS = {
    "files": "gancli.loggers.files:FilesLogger",
    "tensorboard": "gancli.loggers.tensorboard:TensorBoardLogger",
    "html": "gancli.loggers.html:HtmlLogger",
}
ALWAYS = "files"  # the run's own record: resume, inspect, export and best.pt read it


def parse(text: str) -> list[str]:
    """'tensorboard,html' -> ['files', 'tensorboard', 'html'] (files always first: the
    others may read what it wrote this epoch), or a one-line error naming the valid ones."""
    names = [w.strip() for w in text.split(",") if w.strip()]
    unknown = [n for n in names if n not in LOGGERS]
    if unknown:
        raise GancliError(f"--log {unknown[0]}: no such logger (choose from "
                          f"{', '.join(LOGGERS)}, comma-separated)")
    return list(dict.fromkeys([ALWAYS, *names]))


def make(text: str) -> list[Logger]:
    """The loggers --log asks for, built (each checks its own requirements here, before
    training starts)."""
    out = []
    for name in parse(text):
        module, _, cls = LOGGERS[name].partition(":")
        out.append(getattr(importlib.import_module(module), cls)())
    return out
