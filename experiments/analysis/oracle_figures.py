"""The oracle's stored figures (DIR/oracle.json, written by `lenet-repro oracle`): read them and show them as a
table. Reads JSON only: measuring is backends.oracle's job, run by experiments.studies.oracle."""

from __future__ import annotations

import json
from pathlib import Path

from backends import label
from backends.oracle import FLOAT32, OracleFigures

ORACLE_FILE = "oracle.json"


def figure_label(name: str) -> str:
    """'PyTorch', or 'NumPy float32' for the reference in float32."""
    return f"{label(name.removesuffix('-float32'))} float32" if name == FLOAT32 else label(name)


def read_oracle(results: Path) -> list[OracleFigures]:
    """The figures stored in DIR/oracle.json, or none."""
    path = Path(results) / ORACLE_FILE
    if not path.exists():
        return []
    return [OracleFigures(**f) for f in json.loads(path.read_text())["figures"]]


def oracle_markdown(figures: list[OracleFigures]) -> str:
    """One row per recipe and framework (and float32 NumPy): output, loss, each layer's largest gradient error,
    the per-step losses and the weights after the steps."""
    if not figures:
        return ""
    layers = list(dict.fromkeys(name.rsplit(".", 1)[0] for f in figures for name in f.gradients))
    header = ["recipe", "framework", "output", "loss", *[f"grad {layer}" for layer in layers],
              "step losses", "weights after"]  # fmt: skip
    body = []
    for f in figures:
        per_layer = [max((e for n, e in f.gradients.items() if n.rsplit(".", 1)[0] == layer), default=None)
                     for layer in layers]  # fmt: skip
        body.append([f"`{f.recipe}`", figure_label(f.framework), f"{f.output:.1e}", f"{f.loss:.1e}",
                     *["" if e is None else f"{e:.1e}" for e in per_layer],
                     f"{f.step_losses:.1e}", f"{max(f.weights_after.values()):.1e}"])  # fmt: skip
    lines = ["| " + " | ".join(cells) + " |" for cells in [header, *body]]
    return "\n".join([lines[0], "|" + "---|" * len(header), *lines[1:]])
