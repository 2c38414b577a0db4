"""--log html: RUN/index.html, one self-contained page rewritten after every epoch: the
latest grid, a strip of every epoch's grid, loss curves, the epoch table, the config and
the command history. Pictures are embedded as data URIs and the page has no script, so it
opens from the file system (or as an e-mail attachment) with no server and no network.

It is drawn from what the files logger wrote this epoch (metrics.jsonl, the grids,
loss_curves.png), so a resumed run's page shows its whole history."""

from __future__ import annotations

import base64
import html
import io
import json
import numbers
from datetime import datetime
from pathlib import Path

from gancli import checkpoint
from gancli.hooks import Logger, Pictures
from gancli.loggers.files import read_rows
from gancli.rundir import Run
from gancli.trainers.base import Trainer

PAGE = "index.html"
LATEST = 480  # pixels: about how wide the latest grid is drawn
THUMB = 96  # pixels: the strip's grids are shrunk to this height, so 100 epochs stay small
ROW_KEYS = ("epoch", "step", "complete", "images_per_s", "seconds")

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;padding:0 16px;
color:#1d2330;background:#fafbfc}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.facts{color:#5b6473;margin-bottom:16px}
.top{display:flex;gap:24px;flex-wrap:wrap;align-items:flex-start}
figure{margin:0}.top figure{flex:1 1 420px}img{max-width:100%;height:auto}
.pix{image-rendering:pixelated}
figcaption{color:#5b6473;font-size:12px}
.strip{display:flex;gap:8px;overflow-x:auto;padding-bottom:6px}
.strip figure{text-align:center;flex:none}
.strip img{height:96px;border:1px solid #d5d9e0}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
td,th{padding:3px 10px;border-bottom:1px solid #e3e6eb;text-align:right}
th{background:#eef1f5}td.k,th.k{text-align:left}
.cfg{columns:3 260px;column-gap:24px}.cfg div{break-inside:avoid;padding:1px 0;
overflow-wrap:anywhere}.cfg b{font-weight:600;margin-right:6px}
pre{background:#eef1f5;padding:10px;overflow-x:auto;white-space:pre-wrap}
"""


class HtmlLogger(Logger):
    name = "html"

    def __init__(self) -> None:
        self.thumbs: dict[tuple[Path, int], str] = {}  # (grid, mtime) -> data URI

    def start(self, run: Run, trainer: Trainer, config: dict, step: int) -> None:
        self.run, self.config = run, config
        self.titles = {"epoch": "epoch", "step": "step", **trainer.metrics,
                       "images_per_s": "img/s", "seconds": "sec"}

    def pictures(self, row: dict, pictures: Pictures) -> None:
        checkpoint.atomic_write(self.run.dir / PAGE, self.page().encode())

    def page(self) -> str:
        """The whole page from the run's files as they are now."""
        cfg, rows = self.config, read_rows(self.run)
        grids = sorted((self.run.dir / "samples").glob("epoch_*.png"))
        last = rows[-1] if rows else {}
        name = f"{cfg['model']} · {self.run.dir.name}"
        facts = (f"{cfg['dataset']}, {cfg['image_size']}px · epoch {last.get('epoch', 0)} of "
                 f"{cfg['epochs']} · step {last.get('step', 0)} · updated "
                 f"{datetime.now():%Y-%m-%d %H:%M:%S}")
        parts = [f"<h1>{esc(name)}</h1><div class=facts>{esc(facts)}</div><div class=top>"]
        if grids:
            parts.append(figure(grids[-1].read_bytes(), f"epoch {last.get('epoch')} (fixed "
                                "inputs)", fit=LATEST))
        curves, compared = self.run.dir / "loss_curves.png", self.run.dir / "real_vs_fake.png"
        if curves.is_file():
            parts.append(figure(curves.read_bytes(), "losses per step (light: each step, "
                                "dark: moving average)"))
        parts.append("</div>")
        if grids:
            parts.append("<h2>Every epoch</h2><div class=strip>" + "".join(
                f"<figure><img src='{self.thumb(g)}' alt='{g.stem}'>"
                f"<figcaption>{int(g.stem.split('_')[1])}</figcaption></figure>"
                for g in grids) + "</div>")
        if compared.is_file():
            parts.append("<h2>Real and generated</h2>"
                         + figure(compared.read_bytes(), "the latest epoch's grid beside "
                                  "training images"))
        parts.append("<h2>Epochs</h2>" + self.table(rows))
        parts.append("<h2>Config</h2>" + config_table(cfg))
        parts.append("<h2>Commands</h2><pre>" + esc("\n".join(cfg.get("commands", [])))
                     + "</pre>")
        return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
                f"<title>{esc(name)}</title><style>{STYLE}</style></head><body>"
                + "".join(parts) + "</body></html>\n")

    def table(self, rows: list[dict]) -> str:
        """The epoch table: the recipe's losses, any evaluated metric, speed."""
        keys = list(dict.fromkeys(k for r in rows for k, v in r.items()
                                  if isinstance(v, numbers.Real) and k != "complete"))
        keys.sort(key=lambda k: (k in ROW_KEYS[2:], k not in ROW_KEYS))  # place, values, speed
        head = "".join(f"<th>{esc(self.titles.get(k, k))}</th>" for k in keys)
        body = "".join("<tr>" + "".join(f"<td>{cell(r, k)}</td>" for k in keys) + "</tr>"
                       for r in rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    def thumb(self, grid: Path) -> str:
        """A grid shrunk to the strip's height, encoded once per file version."""
        from PIL import Image

        key = (grid, grid.stat().st_mtime_ns)
        if key not in self.thumbs:
            image = Image.open(grid)
            scale = THUMB / image.height
            if scale < 1:
                image = image.resize((max(1, round(image.width * scale)), THUMB),
                                     Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            self.thumbs[key] = data_uri(buf.getvalue())
        return self.thumbs[key]


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def figure(png: bytes, caption: str, fit: int = 0) -> str:
    """An embedded picture; with `fit`, a small one is drawn at a whole multiple of its
    size up to about `fit` pixels wide, with sharp pixels (a 28px MNIST grid is tiny)."""
    from PIL import Image

    width = Image.open(io.BytesIO(png)).width
    scale = max(1, fit // width) if fit else 1
    size = f" class=pix width={width * scale}" if scale > 1 else ""
    return (f"<figure><img src='{data_uri(png)}' alt='{esc(caption)}'{size}>"
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def cell(row: dict, key: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    if key == "epoch":
        return f"{value}" + ("" if row.get("complete", True) else "*")
    if isinstance(value, int):
        return str(value)
    return f"{value:.0f}" if key == "images_per_s" else f"{value:.4g}"


def config_table(cfg: dict) -> str:
    """Every option and data fact, in columns: a config has 30 to 50 entries."""
    shown = {k: v for k, v in cfg.items() if k != "commands"}
    return "<div class=cfg>" + "".join(
        f"<div><b>{esc(k)}</b> {esc(json.dumps(v))}</div>" for k, v in shown.items()) + "</div>"
