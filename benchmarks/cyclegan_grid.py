"""The seed's CycleGAN experiments as a table and one figure per dataset: patch vs dc
discriminator, with and without the cycle loss, at two budgets, judged on held-out images.

    python benchmarks/cyclegan_grid.py RUNS --test-a DIR --test-b DIR --classifier RUN \\
        --name apple2orange --out OUT [--prefix a2o]

RUNS holds the runs `<prefix>-<disc>-c<cycle weight>` (the larger budget) and the same
names with `-s<steps>` (the smaller budget: a copy of the run taken at that step). Each is
scored by `gancli translate` in both directions, exactly as a user would run it: cycle L1
(A -> B -> A on held-out A, and B -> A -> B), and FID/KID of the translations against the
held-out images of the other domain in the given classifier's features (a domain
classifier trained on the training images; it needs no download). Writes OUT/results.json,
OUT/<name>.png and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CONFIGS = [("patch", 10), ("patch", 0), ("dc", 10), ("dc", 0)]
SHOWN = 4  # held-out images per direction in the figure


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", type=Path, help="folder of the cyclegan runs")
    p.add_argument("--test-a", type=Path, required=True)
    p.add_argument("--test-b", type=Path, required=True)
    p.add_argument("--classifier", required=True, help="domain classifier run (features)")
    p.add_argument("--name", required=True, help="dataset name for the figure and table")
    p.add_argument("--prefix", required=True, help="run names start with this")
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


def budgets(runs: Path, prefix: str) -> list[str]:
    """Run-name suffix of each budget found: the snapshot copies, then the finished runs."""
    snaps = sorted({p.name.rsplit("-s", 1)[1] for p in runs.glob(f"{prefix}-*-s*")}, key=int)
    return [f"-s{s}" for s in snaps] + [""]


def steps_of(run: Path) -> int:
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    return ckpt["state"]["step"]


def translate(run: Path, inputs: Path, direction: str, args: argparse.Namespace,
              out: Path) -> dict:
    """`gancli translate` of one held-out domain; its metrics.json."""
    cmd = ["gancli", "translate", str(run), str(inputs), "--direction", direction,
           "--features", "classifier", "--classifier", args.classifier, "--out", str(out),
           "--num-threads", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
    return json.loads((out / "metrics.json").read_text())


def load(path: Path, size: int) -> torch.Tensor:
    image = Image.open(path).convert("RGB").resize((size, size))
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def figure(rows: list[tuple[str, list[Path]]], path: Path, title: str) -> None:
    """One labelled row of images per configuration (inputs first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(rows[0][1])
    fig, axes = plt.subplots(len(rows), n, figsize=(0.9 * n + 1.6, 0.9 * len(rows) + 0.5),
                             squeeze=False)
    for r, (label, files) in enumerate(rows):
        for c, f in enumerate(files):
            ax = axes[r][c]
            ax.imshow(load(f, 64).permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, 1 - 0.35 / (0.9 * len(rows) + 0.5)))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    shown = {d: sorted(p.name for p in folder.iterdir())[:SHOWN]
             for d, folder in (("AtoB", args.test_a), ("BtoA", args.test_b))}
    results, rows = [], [("input", [args.test_a / f for f in shown["AtoB"]]
                          + [args.test_b / f for f in shown["BtoA"]])]
    for suffix in budgets(args.runs, args.prefix):
        for disc, cycle in CONFIGS:
            name = f"{args.prefix}-{disc}-c{cycle}{suffix}"
            run = args.runs / name
            if not (run / "checkpoint.pt").is_file():
                print(f"missing: {run}", file=sys.stderr)
                continue
            row = {"run": name, "disc": disc, "cycle_weight": cycle, "steps": steps_of(run)}
            files = []
            for direction, inputs in (("AtoB", args.test_a), ("BtoA", args.test_b)):
                out = args.out / name / direction
                m = translate(run, inputs, direction, args, out)["metrics"]
                row[direction] = {"cycle L1": m["cycle L1"],
                                  **{k.split()[0]: v for k, v in m.items()
                                     if k.startswith(("FID", "KID"))}}
                files += [out / f for f in shown[direction]]
            results.append(row)
            rows.append((f"{disc} D, cycle {cycle}\n{row['steps']} steps", files))
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    figure(rows, args.out / f"{args.name}.png",
           f"{args.name}, held-out: {SHOWN} A -> B (left), {SHOWN} B -> A (right)")
    print(f"| {args.name} | D | cycle | steps | cycle L1 A->B->A | B->A->B | KID A->B vs B "
          "| KID B->A vs A | FID A->B | FID B->A |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        a, b = r["AtoB"], r["BtoA"]
        print(f"| | {r['disc']} | {r['cycle_weight']} | {r['steps']} | {a['cycle L1']:.3f} | "
              f"{b['cycle L1']:.3f} | {a['KID']:.3f} | {b['KID']:.3f} | {a['FID']:.2f} | "
              f"{b['FID']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
