"""What replaying the committed runs shows, as tables: what the upgrade to today's releases changed
(docs/environments.md, from the JSON files `lenet-repro verify --json` wrote into docs/upgrade/: the same runs
replayed with the old and the new releases, and against the committed records), and a real `make verify`
(docs/verify.md, from docs/verify/quick.json)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import backends
from common import spec

UPGRADE = Path(__file__).resolve().parents[2] / "docs" / "upgrade"
VERIFY = UPGRADE.parent / "verify" / "quick.json"  # `lenet-repro verify --json docs/verify/quick.json`


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


def _verified(path: Path = VERIFY) -> dict[str, Any]:
    return json.loads(path.read_text())


def verify_machines(path: Path = VERIFY) -> str:
    """The machine a `make verify` replayed the runs on, and those their records name, with how many runs each."""
    document = _verified(path)
    lines = ["| | machine | runs |", "|---|---|---|",
             f"| replayed on | {document['this_machine']} | {len(document['outcomes'])} |"]
    made = Counter(o["made_on"] for o in document["outcomes"])
    return "\n".join(lines + [f"| made on | {machine} | {n} |" for machine, n in made.items()])


def verify_outcomes(path: Path = VERIFY) -> str:
    """Each replayed run: threads, steps compared, the first step that differs, the largest relative difference of
    a step loss, the verdict."""
    lines = ["| run | threads | steps | first differing step | largest relative difference | verdict |",
             "|---|---|---|---|---|---|"]
    for o in _verified(path)["outcomes"]:
        first = o["first_diff"] or "—"
        lines.append(f"| `{o['run']}` | {o['threads']} | {o['steps']} | {first} | {o['max_rel']:.1e} | "
                     f"{o['verdict']} |")
    return "\n".join(lines)


def verify_releases(path: Path = VERIFY) -> str:
    """What the replay ran with that the records were not made with (packages and kernel settings), with how many
    runs each difference concerns; the outcomes name them as "name then -> now", joined by ", "."""
    changes: Counter[tuple[str, str, str]] = Counter()
    for o in _verified(path)["outcomes"]:
        for change in filter(None, o["versions"].split(", ")):
            name, _, moved = change.partition(" ")
            then, _, now = moved.partition(" -> ")
            changes[name, then, now] += 1
    lines = ["| package or kernel setting | the committed runs | the replay | runs |", "|---|---|---|---|"]
    return "\n".join(lines + [f"| {name} | {then} | {now} | {n} |" for (name, then, now), n in changes.items()])


def verify_verdicts(path: Path = VERIFY) -> str:
    """How many runs got each verdict: '22 identical, 22 float drift'."""
    counts = Counter(o["verdict"] for o in _verified(path)["outcomes"])
    return ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
