"""What the upgrade to today's releases changed: the tables of docs/environments.md, from the JSON files that
`lenet-repro verify --json` wrote into docs/upgrade/ (the same runs replayed with the old and the new releases,
and against the committed records)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import backends
from common import spec

UPGRADE = Path(__file__).resolve().parents[2] / "docs" / "upgrade"


def _label(backend: str) -> str:
    entry = backends.registry().get(backend)
    return backends.label(backend) + (" reference" if entry is not None and entry.role == "reference" else "")


def _outcomes(*names: str) -> list[dict[str, Any]]:
    return [outcome for name in names for path in sorted(UPGRADE.glob(name))
            for outcome in json.loads(path.read_text())["outcomes"]]  # fmt: skip


def side_by_side_table() -> str:
    """Per framework and recipe (both datasets): the verdict of the new releases against the old on the first steps,
    the earliest differing step, the worst step-loss difference."""
    by: dict[str, dict[str, list[dict]]] = {}
    versions: dict[str, str] = {}
    for outcome in _outcomes("side-by-side.json"):
        _, _, recipe, run = outcome["run"].split("/")
        backend = run.split("-seed")[0]
        by.setdefault(backend, {}).setdefault(recipe, []).append(outcome)
        versions[backend] = outcome["versions"]
    columns = " | ".join(f"`{recipe}`" for recipe in spec.RECIPES)
    lines = [f"| framework | what changed | {columns} | worst step-loss difference |",
             "|---" * (len(spec.RECIPES) + 3) + "|"]
    for backend in backends.order(by):
        cells = []
        for recipe in spec.RECIPES:
            outcomes = by[backend].get(recipe)
            if not outcomes:
                cells.append("—")
                continue
            verdicts = {o["verdict"] for o in outcomes}
            verdict = ("different" if "different result" in verdicts else
                       "float drift" if "float drift" in verdicts else "identical")  # fmt: skip
            first = [o["first_diff"] for o in outcomes if o["first_diff"]]
            cells.append(verdict + (f" (step {min(first)})" if first else ""))
        worst = max(o["max_rel"] for outcomes in by[backend].values() for o in outcomes)
        lines.append(f"| {_label(backend)} | {versions[backend]} | " + " | ".join(cells) + f" | {worst:.1e} |")
    return "\n".join(lines)


def full_table() -> str:
    """The runs trained to the end with the new releases: committed test accuracy against now."""
    outcomes = sorted(_outcomes("full-*.json"), key=lambda o: o["run"])
    lines = ["| run | threads | first differing step | test accuracy committed → now | verdict |",
             "|---|---|---|---|---|"]
    for o in outcomes:
        first = f"step {o['first_diff']}" if o["first_diff"] else "—"
        lines.append(f"| `{o['run']}` | {o['threads']} | {first} | {o['acc_then']:.2%} → {o['acc_now']:.2%} | "
                     f"{o['verdict']} |")
    return "\n".join(lines)


def worst_rerun() -> str:
    """The largest |now − committed| test accuracy of the runs trained to the end, in points."""
    return f"{100 * max(abs(o['acc_now'] - o['acc_then']) for o in _outcomes('full-*.json')):.2f}"


def full_runs() -> int:
    """How many committed runs were trained again to the end with the new releases."""
    return len(_outcomes("full-*.json"))


def quick_runs() -> int:
    """How many committed runs the quick replay against the records covered."""
    return len(_outcomes("quick.json"))


def quick_verdicts() -> set[str]:
    return {o["verdict"] for o in _outcomes("quick.json")}


def worst_step(name: str = "side-by-side.json") -> str:
    return f"{max(o['max_rel'] for o in _outcomes(name)):.1e}"
