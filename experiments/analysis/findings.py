"""The findings table: what the runs show, in plain words, with the one measured figure behind each.

Every figure is computed from the records (through the report's groups), so the README's copy of this table
(rendered by `make docs`) cannot fall behind the runs. A finding whose runs are not there yet is
left out, not guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import backends
from common import spec
from experiments.analysis import stats as st

Groups = dict[tuple[str, str, str], dict[str, Any]]  # (variant, dataset, recipe) -> {backend: report.Group}
Rows = list[dict[str, Any]]  # report.side_by_side_rows: each row's stats and comparisons with its baseline
Studies = list[dict[str, Any]]  # the variance study's files (experiments.analysis.variance.read_studies)

HEADER = "| what the runs show | measured |"


def _accuracies(groups: Groups, variant: str, dataset: str, recipe: str, backend: str) -> dict[int, float]:
    """{seed: final test accuracy} of one group's complete runs (empty when the group is missing)."""
    group = groups.get((variant, dataset, recipe), {}).get(backend)
    if group is None:
        return {}
    return {r["seed"]: r["epochs"][-1]["test_accuracy"] for r in group.complete}


DATASET_NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}


def _pm(values) -> str:
    """Mean ± std (n) in percent, as the report writes it (no ± for one run)."""
    s = st.summarize(list(values))
    return st.pm(s.mean, s.std, s.n, 2, True)


def same_result(groups: Groups, rows: Rows, studies: Studies) -> str | None:
    """Shared mode: the widest 95% interval of any backend's difference from the baseline, over every recipe (the
    report's own comparisons, paired by seed)."""
    base, widest = backends.baseline(), None
    for row in rows:
        if row["variant"] != "shared" or row["baseline"] != base:
            continue
        for name, c in row["comparisons"].items():
            if c.pairs < 2:
                continue
            bound = max(abs(c.low), abs(c.high))
            if widest is None or bound > widest[0]:
                widest = (bound, c, name, row["recipe"], row["dataset"])
    if widest is None:
        return None
    bound, c, name, recipe, dataset = widest
    return (f"every backend within {bound * 100:.2f} points of {backends.label(base)} on every recipe and "
            f"dataset (widest paired 95% interval: {backends.label(name)}, `{recipe}` on "
            f"{DATASET_NAMES.get(dataset, dataset)}, "
            f"{c.difference * 100:+.2f} [{c.low * 100:+.2f}, {c.high * 100:+.2f}])")


def one_line(groups: Groups, rows: Rows, studies: Studies) -> str | None:
    """The softmax inside the blog post's `forward`: seed-torch against seed-torch-fixed on MNIST, the baseline,
    shared."""
    base = backends.baseline()
    quirk, fixed = (_accuracies(groups, "shared", "mnist", r, base) for r in ("seed-torch", "seed-torch-fixed"))
    if len(quirk) < 2 or len(fixed) < 2:
        return None
    return f"MNIST {_pm(quirk.values())} with it, {_pm(fixed.values())} without ({backends.label(base)})"


def seed_lottery(groups: Groups, rows: Rows, studies: Studies) -> str | None:
    """How far the seed alone moves the blog post's PyTorch script on MNIST: its lowest and highest seed."""
    script = {seed: accuracy for name in backends.scripts()
              for seed, accuracy in _accuracies(groups, "native", "mnist", "seed-torch", name).items()}  # fmt: skip
    if len(script) < 2:
        return None
    values = sorted(script.values())
    return (f"the blog post's PyTorch script on MNIST: {values[0] * 100:.2f}% to {values[-1] * 100:.2f}% over "
            f"{len(values)} seeds")


def resize(groups: Groups, rows: Rows, studies: Studies) -> str | None:
    """What `resize=96` buys on Fashion-MNIST and MNIST (seed-mxnet against seed-mxnet-28, the baseline, seeds
    both ran) and what it costs in FLOPs."""
    base, parts = backends.baseline(), []
    for dataset in ("fashion-mnist", "mnist"):
        big, small = (_accuracies(groups, "shared", dataset, r, base) for r in ("seed-mxnet", "seed-mxnet-28"))
        seeds = sorted(set(big) & set(small))
        if len(seeds) < 2:
            return None
        c = st.paired([small[s] for s in seeds], [big[s] for s in seeds])
        parts.append(f"{DATASET_NAMES.get(dataset, dataset)} {c.difference * 100:+.2f} points "
                     f"[{c.low * 100:+.2f}, {c.high * 100:+.2f}] (n={len(seeds)})")
    flops = spec.flops_ratio("seed-mxnet", "seed-mxnet-28")
    return f"{', '.join(parts)}, for {flops:.1f}x the FLOPs ({backends.label(base)}, paired by seed)"


def defaults(groups: Groups, rows: Rows, studies: Studies) -> str | None:
    """Stock mode: `d2l` on MNIST with each framework's own default initialisers."""
    by_backend = groups.get(("stock", "mnist", "d2l"), {})
    finals = {name: _accuracies(groups, "stock", "mnist", "d2l", name) for name in backends.order(by_backend)}
    cells = [f"{backends.label(name)} {_pm(values.values())}" for name, values in finals.items() if values]
    return f"`d2l` on MNIST: {', '.join(cells)}" if cells else None


def one_bit(groups: Groups, rows: Rows, studies: Studies) -> str | None:
    """The variance study of `seed-torch-fixed` on Fashion-MNIST: what one bit of one initial weight moves after
    training, the accuracy against the answers, beside a new seed."""
    from experiments.analysis.variance import arms_of

    arms = arms_of(studies, "seed-torch-fixed", "fashion-mnist")
    if "one-bit" not in arms or "seed" not in arms:
        return None
    bit, seed = arms["one-bit"], arms["seed"]
    return (f"`seed-torch-fixed`, Fashion-MNIST: one bit moves the accuracy {bit['difference'] * 100:.2f} points and "
            f"{bit['churn'] * 100:.2f}% of the answers; a new seed {seed['difference'] * 100:.2f} points and "
            f"{seed['churn'] * 100:.2f}% (means over the pairs of {bit['n']} runs)")


# (what the runs show, in plain words; the figure behind it)
FINDINGS: list[tuple[str, Callable[[Groups, Rows, Studies], str | None]]] = [
    ("From the same initial weights and the same batches, the frameworks give the same result: they differ only "
     "in float rounding", same_result),
    ("One line decides the blog post's PyTorch script: its `forward` ends in a softmax, and the loss applies another",
     one_line),
    ("With that line in place, the random seed alone decides how far the script gets", seed_lottery),
    ("Resizing 28x28 images to 96x96 (the blog post's MXNet script) helps on Fashion-MNIST only, at a large cost",
     resize),
    ("Each framework's own default initialisers (stock mode) decide whether a sigmoid LeNet leaves its plateau",
     defaults),
    ("Two runs one bit apart at the start end at nearly the same accuracy, yet answer many test images differently",
     one_bit),
]  # fmt: skip


def findings(groups: Groups, rows: Rows, studies: Studies) -> list[tuple[str, str]]:
    """(what the runs show, the figure behind it) of every finding whose runs exist, in the findings' order, from
    the report's groups, its side-by-side rows and the variance study's files."""
    found = [(text, figure(groups, rows, studies)) for text, figure in FINDINGS]
    return [(text, measured) for text, measured in found if measured]


def findings_table(groups: Groups, rows: Rows, studies: Studies) -> str | None:
    """The findings whose runs exist, as a Markdown table (None when none do)."""
    found = findings(groups, rows, studies)
    if not found:
        return None
    return "\n".join([HEADER, "|---|---|"] + [f"| {text} | {measured} |" for text, measured in found])


COST_HEADER = "| recipe | epochs | minutes a run takes (one seed, one dataset; median over the committed runs) |"


def cost_table(groups: Groups) -> str | None:
    """What one run of each recipe cost in each framework, from the records: the median over a framework's complete
    runs of the recipe (every mode, both datasets) of the run's seconds, epochs and test evaluation included."""
    minutes: dict[str, dict[str, list[float]]] = {}
    epochs: dict[str, int] = {}
    for (variant, _, recipe), by_backend in groups.items():
        if "-" in variant:  # a subset or a shortened run: not what a whole run costs
            continue
        for name, group in by_backend.items():
            for record in group.complete:
                seconds = sum(row["seconds"] for row in record["epochs"])
                minutes.setdefault(recipe, {}).setdefault(name, []).append(seconds / 60)
                epochs[recipe] = len(record["epochs"])
    if not minutes:
        return None
    rows = []
    for recipe in sorted(minutes, key=lambda r: list(spec.RECIPES).index(r) if r in spec.RECIPES else 99):
        by_backend = minutes[recipe]
        cells = ", ".join(f"{backends.label(n)} {float(np.median(by_backend[n])):.1f}"
                          for n in backends.display_order(by_backend))  # fmt: skip
        rows.append(f"| `{recipe}` | {epochs[recipe]} | {cells} |")
    hours = sum(row["seconds"] for by_backend in groups.values() for group in by_backend.values()
                for record in group.records for row in record["epochs"]) / 3600  # fmt: skip
    rows.append(f"| every committed run | | {hours:.1f} hours of training and testing in all, one run after another |")
    return "\n".join([COST_HEADER, "|---|---|---|"] + rows)


STOCK_HEADER = "| recipe, each framework on its own defaults | dataset |"


def stock_table(groups: Groups, plateau: float = 0.20) -> str | None:
    """Stock mode, one row per recipe and dataset: each framework's final test accuracy, mean ± std (n), and how
    many of its seeds ended still on the plateau (test accuracy below `plateau`)."""
    rows, names = [], []
    for (variant, dataset, recipe), by_backend in groups.items():
        if variant == "stock":
            names += [name for name in backends.order(by_backend) if name not in names]
            rows.append((recipe, dataset))
    if not rows:
        return None
    lines = [STOCK_HEADER + "".join(f" {backends.label(n)} |" for n in names), "|---|---|" + "---|" * len(names)]
    for recipe, dataset in rows:
        cells = []
        for name in names:
            finals = list(_accuracies(groups, "stock", dataset, recipe, name).values())
            stuck = sum(value < plateau for value in finals)
            cells.append(f"{_pm(finals)}, {stuck} on the plateau" if finals else "—")
        lines.append(f"| `{recipe}` | {DATASET_NAMES.get(dataset, dataset)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
