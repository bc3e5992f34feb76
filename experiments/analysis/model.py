"""The report's model of a results directory: the records grouped by (variant, dataset, recipe) and backend, each
group's statistics, each backend compared with the baseline, and each framework and mode compared with the blog
post's scripts. Framework-free; it reads records only and renders nothing (experiments/analysis/report.py renders
it)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

import backends
from common import spec
from common.results import variant_name
from experiments.analysis import stats as st


def is_reference(name: str) -> bool:
    """Whether a backend is the float64 reference (an unregistered name counts as a framework)."""
    entry = backends.registry().get(name)
    return entry is not None and entry.role == "reference"


def backend_order(present) -> list[str]:
    """The backends that implement the contract (not the blog post's scripts) among `present`, in registry order."""
    return backends.order(set(present) - set(backends.scripts()))


def drift_pairs(present) -> list[tuple[str, str]]:
    """Pairs whose per-step losses the drift table follows (the first is the reference of the relative gap): the
    first framework against each other framework, and the float64 reference against each framework."""
    names = backend_order(present)
    frameworks = [name for name in names if not is_reference(name)]
    references = [name for name in names if is_reference(name)]
    return [(frameworks[0], other) for other in frameworks[1:]] + [(r, f) for r in references for f in frameworks]


# The accuracy whose first epoch the report states, per dataset.
TARGET_ACCURACY = {"mnist": 0.98, "fashion-mnist": 0.80}


# Below this test accuracy a 10-class network is still on its plateau (predicting one class or near it).
PLATEAU_ACCURACY = 0.20


@dataclass
class Group:
    """The runs of one (variant, dataset, recipe, backend), one per seed."""

    variant: str
    dataset: str
    recipe: str
    backend: str
    records: list[dict[str, Any]]

    @property
    def complete(self) -> list[dict[str, Any]]:
        """The runs that finished: only they enter means (diverged and partial runs are counted apart)."""
        return [r for r in self.records if r["status"] == "complete"]

    def finals(self, field: str) -> list[float]:
        return [r["epochs"][-1][field] for r in self.complete]

    @property
    def diverged(self) -> int:
        return sum(r["status"] == "diverged" for r in self.records)

    @property
    def partial(self) -> int:
        return sum(r["status"] == "partial" for r in self.records)


def group_records(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Group]]:
    """{(variant, dataset, recipe): {backend: Group}} in recipe order."""
    groups: dict[tuple[str, str, str], dict[str, Group]] = defaultdict(dict)
    for record in records:
        variant = variant_name(record["mode"], record["limit"], record["epochs_override"])
        row = (variant, record["dataset"], record["recipe"])
        group = groups[row].setdefault(record["backend"], Group(*row, record["backend"], []))
        group.records.append(record)
    recipe_rank = {name: i for i, name in enumerate(spec.RECIPES)}
    # shared runs first (the default), then native; MNIST before Fashion-MNIST, recipes in spec order
    ordered = sorted(groups, key=lambda k: (not k[0].startswith("shared"), k[0], k[1] != "mnist",
                                            recipe_rank.get(k[2], 99), k[2]))  # fmt: skip
    return {key: groups[key] for key in ordered}


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """(mean, sample std (0 for one value), n); NaN mean for no values."""
    if not values:
        return math.nan, math.nan, 0
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0, len(array)


def epochs_to_reach(group: Group, target: float) -> tuple[float, int]:
    """(mean first epoch whose test accuracy >= target, over the seeds that reached it; how many did)."""
    firsts = [
        next(row["epoch"] for row in r["epochs"] if row["test_accuracy"] >= target)
        for r in group.complete
        if any(row["test_accuracy"] >= target for row in r["epochs"])
    ]
    return (float(np.mean(firsts)) if firsts else math.nan), len(firsts)


def group_stats(group: Group) -> dict[str, Any]:
    """Every figure the tables show for one group."""
    target = TARGET_ACCURACY.get(group.dataset, 0.9)
    reach, reached = epochs_to_reach(group, target)
    seconds = [row["seconds"] for r in group.complete for row in r["epochs"]]
    stats = {
        "variant": group.variant, "dataset": group.dataset, "recipe": group.recipe, "backend": group.backend,
        "runs": len(group.complete), "diverged": group.diverged, "partial": group.partial,
        "epochs": max((len(r["epochs"]) for r in group.complete), default=0),
        "best_test_accuracy": mean_std([max(row["test_accuracy"] for row in r["epochs"])
                                        for r in group.complete])[0],
        "target_accuracy": target, "epochs_to_target": reach, "seeds_reaching_target": reached,
        # The median, not the mean: one busy moment on a shared machine must not move the figure.
        "seconds_per_epoch": float(np.median(seconds)) if seconds else math.nan,
        "device": sorted({r["meta"]["device"] for r in group.records}),
    }  # fmt: skip
    for field in ("train_loss", "train_accuracy", "test_accuracy", "test_loss"):
        stats[f"{field}_mean"], stats[f"{field}_std"], stats["n"] = mean_std(group.finals(field))
    return stats


def side_by_side_rows(groups) -> list[dict[str, Any]]:
    """One row per (variant, dataset, recipe) with every backend's stats, and each backend compared with the
    row's first framework (the baseline: PyTorch where it ran)."""
    rows = []
    for (variant, dataset, recipe), by_backend in groups.items():
        names = backend_order(by_backend)
        if not names:
            continue  # only the blog post's script ran here: the fidelity table shows it
        baseline = next((name for name in names if not is_reference(name)), names[0])
        row: dict[str, Any] = {"variant": variant, "dataset": dataset, "recipe": recipe, "baseline": baseline,
                               "stats": {name: group_stats(by_backend[name]) for name in names},
                               "groups": {name: by_backend[name] for name in names}}  # fmt: skip
        row["comparisons"] = {name: backend_comparison(variant, by_backend[baseline], by_backend[name])
                              for name in names if name != baseline}  # fmt: skip
        rows.append(row)
    return rows


def backend_comparison(variant: str, first: Group, second: Group) -> st.Comparison:
    """second − first in final test accuracy: paired by seed in shared mode (same weights and batches), else Welch."""
    if variant.startswith("shared"):
        return paired_by_seed(first, second)
    return st.welch(first.finals("test_accuracy"), second.finals("test_accuracy"))


def paired_by_seed(first: Group, second: Group) -> st.Comparison:
    """second − first in final test accuracy, paired over the seeds both groups finished."""
    a, b = ({r["seed"]: r["epochs"][-1]["test_accuracy"] for r in g.complete} for g in (first, second))
    seeds = sorted(set(a) & set(b))
    return st.paired([a[s] for s in seeds], [b[s] for s in seeds])


def present_backends(rows: list[dict[str, Any]]) -> list[str]:
    """The backends that have runs in these rows, in registry order (each only where it ran)."""
    return backend_order({name for row in rows for name in row["stats"]})


def backend_entries(rows: list[dict[str, Any]]) -> list[tuple[str, str, str, Group]]:
    """(recipe, dataset, label, group) for each backend of each row, in registry order."""
    return [(row["recipe"], row["dataset"], backends.label(name), row["groups"][name])
            for row in rows for name in row["groups"]]  # fmt: skip


def starts_like_script(recipe: str, mode: str, backend: str, group: Group) -> bool:
    """Whether each run of `group` starts from the blog post's script's own initial weights for its seed, so that the
    two can be compared seed by seed: where the recipe's shared draw replays the generator of the script's
    framework (`common.init.SOURCES`, the registry's `generator`: PyTorch's after torch.manual_seed(seed), for
    seed-torch), shared-mode runs start from the script's weights, and so do native-mode runs of a backend that
    draws from that very generator (PyTorch's own, conv2's weights in channels-last order)."""
    from common.init import SOURCES

    spec_recipe = spec.get_recipe(recipe)
    script = backends.registry().get(spec_recipe.script_backend or "")
    if script is None or not group.complete or SOURCES[spec_recipe.init] != script.generator:
        return False
    if mode == "native":
        entry = backends.registry().get(backend)
        return entry is not None and entry.generator == script.generator
    return all(r["meta"].get("init_source") == script.generator for r in group.complete)


def script_comparison(recipe: str, mode: str, backend: str, script: Group, group: Group) -> st.Comparison:
    """group − script in final test accuracy: paired by seed where the runs start from the script's weights,
    Welch's test otherwise."""
    if starts_like_script(recipe, mode, backend, group):
        return paired_by_seed(script, group)
    return st.welch(script.finals("test_accuracy"), group.finals("test_accuracy"))


def fidelity_rows(groups) -> list[dict[str, Any]]:
    """Per seed recipe and dataset with reference runs of the blog post's script: the script's final test accuracy,
    then each backend in each mode (with the same overrides), each compared with the script."""
    recipe_rank = {name: i for i, name in enumerate(spec.RECIPES)}
    rows = []
    for (variant, dataset, recipe), by_backend in groups.items():
        name = next((n for n in backends.scripts() if n in by_backend), None)
        script = by_backend[name] if name else None
        if name is None or script is None or not script.complete:
            continue
        overrides = variant.removeprefix("native")  # "", or "-epochs2-limit512": compare like with like
        entries = [(backends.label(name), script, None)]
        for mode in ("shared", "native"):
            others = groups.get((mode + overrides, dataset, recipe), {})
            for name in backend_order(others):
                if others[name].complete:
                    group = others[name]
                    entries.append((f"{backends.label(name)}, {mode}", group,
                                    script_comparison(recipe, mode, name, script, group)))
        rows.append({"variant": variant, "dataset": dataset, "recipe": recipe, "entries": entries})
    return sorted(rows, key=lambda row: (row["variant"], recipe_rank.get(row["recipe"], 99), row["dataset"] != "mnist"))
