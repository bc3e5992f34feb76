"""The side-by-side report, rendered: tables (Markdown, CSV, terminal), sections and plots, from the model of
whatever runs exist (experiments/analysis/model.py), and `Report`, what the pages rendered from templates quote.

Framework-free: it reads run records only. Output is a pure function of the records, so a committed report
can be checked against the committed runs.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import backends
from backends import display_order, label
from backends.oracle import OracleFigures
from common import spec
from common.results import RunStore, variant_name, write_atomic
from experiments.analysis import stats as st
from experiments.analysis.findings import COST_HEADER, STOCK_HEADER, cost_table, findings_table, stock_table
from experiments.analysis.findings import HEADER as FINDINGS_HEADER
from experiments.analysis.model import (
    PLATEAU_ACCURACY,
    Group,
    backend_entries,
    drift_pairs,
    fidelity_rows,
    group_records,
    group_stats,
    is_reference,
    mean_std,
    present_backends,
    side_by_side_rows,
)
from experiments.analysis.oracle_figures import oracle_markdown, read_oracle
from experiments.analysis.variance import read_studies

# What explains each recipe's curves: the blog post's quirks, for the report and the README.
RECIPE_NOTES = {
    "seed-torch": "Softmax inside `forward`, then `CrossEntropyLoss`, which applies log-softmax again: the loss "
    "sees probabilities as logits, so it cannot fall below about 1.46 and its gradients shrink; with lr 0.001 "
    "training starts slowly. ReLU, max pooling, batch 64, momentum 0.9, inputs normalised to [-1, 1].",
    "seed-torch-fixed": "seed-torch with `forward` returning logits: the only change.",
    "seed-mxnet": "Sigmoid, max pooling, Xavier init, lr 0.9, batch 256, loss summed and divided by 256 in "
    "`trainer.step` (also for the last batch of 96). `resize=96` upsamples 28x28 images: Dense(120) gets "
    "16x21x21 = 7,056 inputs (846,720 weights) and the network does 22.5x the FLOPs of the 28x28 one "
    "(12.9 vs 0.57 MFLOP per image, forward), for no new information.",
    "seed-mxnet-28": "seed-mxnet without the resize, as the d2l-zh book ran it (the book trained 5 epochs).",
    "d2l": "d2l-en 0.17: padding 2 (so 16x5x5 before the dense layers), sigmoid, average pooling, Xavier "
    "weights, lr 0.9, batch 256, mean loss over the actual batch.",
}


def _status_note(stats: dict[str, Any]) -> str:
    notes = []
    if stats["diverged"]:
        notes.append(f"{stats['diverged']} diverged")
    if stats["partial"]:
        notes.append(f"{stats['partial']} partial")
    return f" [{', '.join(notes)}]" if notes else ""


def difference_text(comparison: st.Comparison | None) -> str:
    """'+0.01 pp [-0.02, +0.04]': the difference of means and its 95% interval, in percentage points."""
    if comparison is None or math.isnan(comparison.difference):
        return "—"
    text = f"{comparison.difference * 100:+.2f} pp"
    if math.isnan(comparison.low):
        return text
    return text + f" [{comparison.low * 100:+.2f}, {comparison.high * 100:+.2f}]"


def _verdict(comparison: st.Comparison | None) -> str:
    if comparison is None:
        return "—"
    return {"yes": "yes", "no": "**no**", "undecided": "undecided"}[comparison.verdict]


def _cells(stats: dict[str, Any] | None, columns: list[str]) -> list[str]:
    """One backend's cells for the named columns."""
    if stats is None or not stats["n"]:
        return ["—"] * len(columns)
    s = stats
    reach = "never" if not s["seeds_reaching_target"] else f"{s['epochs_to_target']:.1f}"
    if s["seeds_reaching_target"] and s["seeds_reaching_target"] < s["runs"]:
        reach += f" ({s['seeds_reaching_target']}/{s['runs']} seeds)"
    text = {
        "test acc": st.pm(s["test_accuracy_mean"], s["test_accuracy_std"], s["n"], 2, True) + _status_note(s),
        "final train loss": st.pm(s["train_loss_mean"], s["train_loss_std"], s["n"]),
        "s/epoch": f"{s['seconds_per_epoch']:.1f}",
        "train acc": st.pm(s["train_accuracy_mean"], s["train_accuracy_std"], s["n"], 2, True),
        "best test acc": f"{s['best_test_accuracy'] * 100:.2f}%",
        "epochs to target": f"{reach} (≥{s['target_accuracy']:.0%})",
    }
    return [text[column] for column in columns]


DETAIL_COLUMNS = ["test acc", "final train loss", "train acc", "best test acc", "epochs to target", "s/epoch"]


def _markdown(header: list[str], body: list[list[str]]) -> str:
    """A Markdown table from its header cells and its rows' cells."""
    lines = ["| " + " | ".join(cells) + " |" for cells in [header, *body]]
    return "\n".join([lines[0], "|" + "---|" * len(header), *lines[1:]])


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The side-by-side table, readable at any number of backends: recipe x dataset rows, one test accuracy
    column per backend, and one column saying which backends reach the baseline's result (details: the
    differences table and the per-backend table)."""
    names = present_backends(rows)
    common_baseline = names and all(row["baseline"] == names[0] for row in rows)
    header = ["recipe", "dataset", *[f"{label(name)} test acc" for name in names],
              f"same result as {label(names[0]) if common_baseline else 'the baseline'}"]
    body = []
    for row in rows:
        cells = [f"`{row['recipe']}`", row["dataset"], *[_cells(row["stats"].get(name), ["test acc"])[0]
                                                         for name in names]]  # fmt: skip
        verdicts = [f"{label(name)} {_verdict(c)}" + _seed_note(row, name, c) for name, c in row["comparisons"].items()]
        baseline = "" if common_baseline else f" (as {label(row['baseline'])})"
        cells.append(", ".join(verdicts) + baseline if verdicts else "—")
        body.append(cells)
    return _markdown(header, body)


def _seed_note(row: dict[str, Any], name: str, comparison: st.Comparison) -> str:
    """Where a paired comparison's two columns hold different seeds: over which seeds it pairs them."""
    mine, theirs = row["stats"][name]["n"], row["stats"][row["baseline"]]["n"]
    if comparison.test != "paired" or mine == theirs:
        return ""
    return f" (over the {comparison.pairs} seeds both ran)"


def differences_table(rows: list[dict[str, Any]]) -> str:
    """Each backend against the row's baseline in final test accuracy: the difference with its 95% interval, the
    test and the verdict, one line per recipe, dataset and backend."""
    body = []
    for row in rows:
        for name, comparison in row["comparisons"].items():
            test = comparison.test + (f" ({comparison.pairs} seeds)" if comparison.test == "paired" else "")
            p_value = test + ("" if math.isnan(comparison.p) else f", {comparison.p:.2g}")
            body.append([f"`{row['recipe']}`", row["dataset"], f"{label(name)} − {label(row['baseline'])}",
                         difference_text(comparison), p_value, _verdict(comparison)])  # fmt: skip
    return _markdown(["recipe", "dataset", "backends", "test acc difference [95% CI]", "test, p", "same result"],
                     body)


def detail_table(rows: list[dict[str, Any]]) -> str:
    """Every figure of every backend, one line per recipe, dataset and backend."""
    by_label = {(row["recipe"], row["dataset"], label(name)): row["stats"][name] for row in rows
                for name in row["stats"]}  # fmt: skip
    return _backend_table(backend_entries(rows), DETAIL_COLUMNS,
                          lambda group: _cells(by_label[(group.recipe, group.dataset, label(group.backend))],
                                               DETAIL_COLUMNS))  # fmt: skip


def _backend_table(entries: list[tuple[str, str, str, Group]], columns: list[str],
                   cells: Callable[[Group], list[str]], who: str = "backend") -> str:
    """One line per recipe, dataset and group of runs: the given columns, filled in from that group's runs."""
    body = [[f"`{recipe}`", dataset, label, *cells(group)] for recipe, dataset, label, group in entries]
    return _markdown(["recipe", "dataset", who, *columns], body)


def epoch_table(rows: list[dict[str, Any]], field: str = "test_accuracy") -> str:
    """Mean over seeds of a per-epoch figure: one row per recipe, dataset and backend, one column per epoch."""
    epochs = max((s["epochs"] for row in rows for s in row["stats"].values()), default=0)

    def means(group: Group) -> list[str]:
        per_epoch = [[r["epochs"][e][field] for r in group.complete if len(r["epochs"]) > e] for e in range(epochs)]
        return [f"{np.mean(values) * 100:.1f}" if values else "" for values in per_epoch]

    return _backend_table(backend_entries(rows), [str(e) for e in range(1, epochs + 1)], means)


def seed_table(entries: list[tuple[str, str, str, Group]], who: str = "backend") -> str:
    """Seed by seed: final test accuracy and how many epochs ended on the plateau (the spread behind the means)."""
    seeds = sorted({r["seed"] for *_, group in entries for r in group.complete})

    def finals(group: Group) -> list[str]:
        by_seed = {r["seed"]: r for r in group.complete}
        return [_seed_cell(by_seed[seed]) if seed in by_seed else "" for seed in seeds]

    return _backend_table(entries, [f"seed {seed}" for seed in seeds], finals, who)


def fidelity_table(rows: list[dict[str, Any]]) -> str:
    """Does the harness's recipe give what the blog post's script gives? One line per script, backend and mode."""
    header = ["recipe", "dataset", "run by", "test acc", "95% CI of the mean", "s/epoch", "− script [95% CI]",
              "test, p", "reproduces the script"]  # fmt: skip
    body = []
    for row in rows:
        for who, group, comparison in row["entries"]:
            summary, figures = st.summarize(group.finals("test_accuracy")), group_stats(group)
            interval = "—" if math.isnan(summary.low) else f"{summary.low * 100:.2f} – {summary.high * 100:.2f}%"
            cells = [f"`{row['recipe']}`", row["dataset"], who,
                     st.pm(summary.mean, summary.std, summary.n, 2, True) + _status_note(figures), interval,
                     f"{figures['seconds_per_epoch']:.1f}"]
            if comparison is None:
                cells += ["(reference)", "", ""]
            else:
                test = comparison.test + (f" ({comparison.pairs} seeds)" if comparison.test == "paired" else "")
                p_value = test + ("" if math.isnan(comparison.p) else f", {comparison.p:.2g}")
                cells += [difference_text(comparison), p_value, _verdict(comparison)]
            body.append(cells)
    return _markdown(header, body)


def decide_notes(rows: list[dict[str, Any]]) -> list[str]:
    """For each undecided line of the fidelity table: how many seeds would decide it at the measured spreads."""
    notes = []
    for row in rows:
        script = row["entries"][0][1]
        for name, group, comparison in row["entries"][1:]:
            if comparison is None or comparison.verdict != "undecided":
                continue
            first, second = script.finals("test_accuracy"), group.finals("test_accuracy")
            head = (f"- `{row['recipe']}` on {row['dataset']}, {name}: undecided with {len(first)} and "
                    f"{len(second)} seeds")  # fmt: skip
            if min(len(first), len(second)) < 2:
                notes.append(f"{head}; one seed has no spread to go by: a second one will tell how many would "
                             "decide it.")  # fmt: skip
                continue
            need = st.decide_phrase(st.seeds_to_decide(first, second, comparison.test == "paired"))
            notes.append(f"{head}; if the means and spreads stay as measured, {need}.")
    return (["Seeds that would decide each undecided line (the same test at the same level, equal seeds a side "
             "for Welch's test, pairs for the paired one, means and standard deviations as measured):", "",
             *notes, ""] if notes else [])  # fmt: skip


def fidelity_section(rows: list[dict[str, Any]]) -> list[str]:
    """The report's fidelity section: the table, the rule, and each reference run seed by seed."""
    if not rows:
        return []
    entries = [(row["recipe"], row["dataset"], label, group) for row in rows for label, group, _ in row["entries"]]
    return ["## Fidelity: does the harness reproduce the blog post's scripts?", "",
            "The blog post's two scripts, as written, run as reference runs (`make reproduce-seed-scripts`): the "
            "PyTorch "
            "script is the reference for `seed-torch`, the MXNet one for `seed-mxnet`, each also on the other "
            "dataset (the dataset swapped, nothing else). Final test accuracy, mean ± std (n), with the 95% "
            "t-interval of the mean. Each backend and mode is compared with the script (difference of means, "
            "harness − script, with its 95% interval): seed by seed (paired t-test) where the runs start from the "
            "script's own initial weights for their seed (`seed-torch` in shared mode, whose NumPy draw replays "
            "PyTorch's generator, and PyTorch's native mode), by Welch's t-test otherwise. Verdict: "
            f"{st.RULE}.", "",
            fidelity_table(rows), "", *decide_notes(rows),
            "Each run's test accuracy after the last epoch (in brackets: epochs that ended below "
            f"{PLATEAU_ACCURACY:.0%} test accuracy):", "", seed_table(entries, "run by"), ""]


def _seed_cell(record: dict[str, Any]) -> str:
    stuck = sum(e["test_accuracy"] < PLATEAU_ACCURACY for e in record["epochs"])
    return f"{record['epochs'][-1]['test_accuracy'] * 100:.2f}% ({stuck})"


def drift_table(rows: list[dict[str, Any]]) -> str:
    """How far apart two backends' per-step losses move, seed by seed (runs paired by seed): the first framework
    against each other one, and each framework against the float64 reference where it ran. A column names the
    pair only when there is more than one pair."""
    pairs = drift_pairs(present_backends(rows))
    named = len(pairs) > 1
    header = ["recipe", "dataset", *(["pair"] if named else []), "seeds", "steps", "median relative gap",
              "largest relative gap", "first step with gap > 1e-5", "first step with gap > 1e-3"]  # fmt: skip
    body = []
    for row in rows:
        for pair in pairs:
            if set(pair) - set(row["groups"]):
                continue
            by_seed = [{r["seed"]: r for r in row["groups"][b].complete} for b in pair]
            seeds = sorted(set(by_seed[0]) & set(by_seed[1]))
            if not seeds:
                continue
            gaps = [_relative_gap(by_seed[0][s]["step_losses"], by_seed[1][s]["step_losses"]) for s in seeds]
            firsts = [_first_above(gaps, threshold) for threshold in (1e-5, 1e-3)]
            gap_cells = [f"{np.median(np.concatenate(gaps)):.1e}", f"{max(g.max() for g in gaps):.1e}", *firsts]
            pair_cell = [f"{label(pair[1])} vs {label(pair[0])}"] if named else []
            body.append([f"`{row['recipe']}`", row["dataset"], *pair_cell, str(len(seeds)), str(len(gaps[0])),
                         *gap_cells])  # fmt: skip
    return _markdown(header, body)


def _relative_gap(a: list[float], b: list[float]) -> np.ndarray:
    first, second = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.abs(first - second) / np.abs(first)


def _first_above(gaps: list[np.ndarray], threshold: float) -> str:
    """Per seed, the first step (1-based) whose gap exceeds the threshold, or 'never'."""
    return ", ".join(str(int(np.argmax(g > threshold)) + 1) if (g > threshold).any() else "never" for g in gaps)


def summary_table(store: RunStore, variant: str | None = None) -> str:
    """A compact terminal table of what exists: test accuracy per backend (and the blog post's script) side by
    side."""
    groups = group_records(store.records(variant))
    if not groups:
        return f"no runs yet under {store.root}"
    names = backends.display_order({name for by_backend in groups.values() for name in by_backend} |
                                   set(backends.scripts()))  # fmt: skip
    labels = [f"{label(name)} test acc" for name in names]
    lines = [f"{'variant':<28}{'recipe':<18}{'dataset':<15}" + "".join(f"{label:>26}" for label in labels)]
    for (row_variant, dataset, recipe), by_backend in groups.items():
        cells = []
        for name in names:
            s = group_stats(by_backend[name]) if name in by_backend else None
            cells.append("—" if s is None else st.pm(s["test_accuracy_mean"], s["test_accuracy_std"], s["n"], 2, True)
                         + _status_note(s))  # fmt: skip
        lines.append(f"{row_variant:<28}{recipe:<18}{dataset:<15}" + "".join(f"{cell:>26}" for cell in cells))
    return "\n".join(lines)


def csv_text(rows: list[dict[str, Any]]) -> str:
    """One CSV line per (variant, dataset, recipe, backend) with every figure."""
    flat = [s for row in rows for s in row["stats"].values()]
    if not flat:
        return ""
    buffer = io.StringIO()
    fields = [k for k in flat[0] if k != "device"] + ["device"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for s in flat:
        writer.writerow({k: (";".join(v) if isinstance(v, list) else (f"{v:.6g}" if isinstance(v, float) else v))
                         for k, v in s.items()})  # fmt: skip
    return buffer.getvalue()


def plot_path(key: tuple[str, str, str]) -> Path:
    """Where a group's plot lies in a results directory."""
    return Path("plots") / f"{key[0]}_{key[1]}_{key[2]}.png"


@dataclass
class Report:
    """The report of a results directory: its records, their groups and rows (experiments/analysis/model.py), and
    the report's Markdown. The report's files, its plots and every page rendered from templates
    (experiments/docs.py) read their figures here."""

    records: list[dict[str, Any]]
    groups: dict[tuple[str, str, str], dict[str, Group]]
    rows: list[dict[str, Any]]
    text: str  # report.md
    variance: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # the variance study's files (variance/)

    @classmethod
    def build(cls, store: RunStore, mode: str | None = None) -> Report:
        records = [r for r in store.records() if mode is None or r.get("mode", "shared") == mode]
        left_out = len(store.left_out)
        groups = group_records(records)
        rows = side_by_side_rows(groups)
        fidelity = fidelity_rows(groups)
        summary = runs_summary(records) + (f"; {left_out} more left out, their content changed after they were "
                                           "written or damaged (named on stderr)" if left_out else "")  # fmt: skip
        variance = read_studies(store.root)
        text = report_markdown(rows, {key: plot_path(key) for key in groups}, summary, fidelity,
                               read_oracle(store.root), machines_table(records), versions_table(records),
                               findings_table(groups, rows, variance), cost_table(groups),
                               stock_table(groups, PLATEAU_ACCURACY), variance)  # fmt: skip
        return cls(records, groups, rows, text, variance)

    def table(self, header: str) -> str:
        """The report's table whose header row starts with `header` (DOCUMENTED_TABLES names them)."""
        lines = self.text.splitlines()
        span = table_span(lines, header)
        if span is None:
            raise KeyError(f"the report has no table {header!r}")
        return "\n".join(lines[span[0] : span[1]])

    # the tables the README and the docs show, as the report writes them
    results = property(lambda self: self.table(DOCUMENTED_TABLES[0]))
    fidelity = property(lambda self: self.table(DOCUMENTED_TABLES[1]))
    findings = property(lambda self: self.table(DOCUMENTED_TABLES[2]))
    costs = property(lambda self: self.table(DOCUMENTED_TABLES[3]))
    stock = property(lambda self: self.table(DOCUMENTED_TABLES[4]))

    def finals(self, variant: str, dataset: str, recipe: str, backend: str) -> list[float]:
        """The final test accuracies of one group's complete runs (empty where there is none)."""
        group = self.groups.get((variant, dataset, recipe), {}).get(backend)
        return group.finals("test_accuracy") if group else []

    def pm(self, variant: str, dataset: str, recipe: str, backend: str) -> str:
        """A group's final test accuracy as the report writes it: mean ± std (n)."""
        return st.pm(*mean_std(self.finals(variant, dataset, recipe, backend)), digits=2, percent=True)

    @property
    def findings_list(self) -> list[tuple[str, str]]:
        """(what the runs show, the figure behind it) of every finding whose runs exist, in the findings' order."""
        from experiments.analysis.findings import findings

        return findings(self.groups, self.rows, self.variance)

    @property
    def resize_cost(self) -> str:
        """How many times the 28x28 network's FLOPs the 96x96 one does, as the findings write it."""
        return f"{spec.flops_ratio('seed-mxnet', 'seed-mxnet-28'):.1f}"

    def seeds_table(self) -> str:
        """How many complete runs each group has: mode, recipe, dataset, then each backend's count."""
        body = []
        for (variant, dataset, recipe), by_backend in self.groups.items():
            names = display_order(by_backend)
            body.append([variant, f"`{recipe}`", dataset,
                         ", ".join(f"{label(n)} {len(by_backend[n].complete)}" for n in names)])  # fmt: skip
        return _markdown(["mode", "recipe", "dataset", "seeds (complete runs) per backend"], body)

    @property
    def variance_sources(self) -> list[str]:
        """Every source of variance the study can vary (its arms), in words."""
        from experiments.analysis.variance import ARMS

        return list(ARMS.values())

    def variance_arms(self, recipe: str, dataset: str) -> dict[str, dict[str, Any]]:
        """The variance study's arms of a recipe and dataset (those with two runs or more), by arm, ranked by the
        spread of the final test accuracy: each arm's figures (experiments.analysis.variance.arm_summary) and what it
        varies, in words; empty where the study has not run."""
        from experiments.analysis.variance import ARMS, arms_of

        arms = arms_of(self.variance, recipe, dataset)
        return {arm: {**figures, "varies": ARMS[arm]} for arm, figures in arms.items()}

    def made_by(self) -> str:
        """Which releases and processors made each mode's runs (a Markdown table): each framework's own package at
        every version its runs name, and every processor the records name."""
        return made_by_table(self.records)

    plateau = PLATEAU_ACCURACY

    def section(self, heading: str) -> str:
        """The report's section under `## heading` (to the next section of that level), heading left out."""
        lines = self.text.splitlines()
        start = lines.index(f"## {heading}") + 1
        end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
        return "\n".join(lines[start:end]).strip()

    def excerpt(self, section: str, header: str, where: dict[str, str] | None = None) -> str:
        """Some rows of one of the report's tables: the first table in `section` whose header row starts with
        `header`, its rows kept where each column named in `where` holds one of the comma-separated values given
        (a recipe's backticks aside); columns left empty by the rows kept are left out."""
        lines = self.section(section).splitlines()
        span = table_span(lines, header)
        if span is None:
            raise KeyError(f"the report's section {section!r} has no table {header!r}")
        cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines[span[0] : span[1]]]
        names, rows = cells[0], cells[2:]
        for column, values in (where or {}).items():
            index = names.index(column)
            rows = [row for row in rows if row[index].strip("`") in values.split(",")]
        used = [i for i in range(len(names)) if any(row[i] for row in rows)]
        return _markdown([names[i] for i in used], [[row[i] for i in used] for row in rows])

    # ---- single figures, for prose rendered from templates (experiments/docs.py) ----

    def group(self, variant: str, dataset: str, recipe: str, backend: str) -> Group:
        group = self.groups.get((variant, dataset, recipe), {}).get(backend)
        if group is None:
            raise KeyError(f"no runs of {backend} {recipe} on {dataset} ({variant})")
        return group

    def accuracy(self, variant: str, dataset: str, recipe: str, backend: str, seed: int | None = None,
                 epoch: int | None = None, digits: int = 2) -> str:
        """A test accuracy in percent: one seed's (after `epoch`, default the last), or the mean over the complete
        runs of the group after `epoch`."""
        runs = self.group(variant, dataset, recipe, backend).complete
        if seed is not None:
            runs = [r for r in runs if r["seed"] == seed]
            if not runs:
                raise KeyError(f"no complete run of seed {seed} of {backend} {recipe} on {dataset} ({variant})")
        values = [r["epochs"][(epoch or len(r["epochs"])) - 1]["test_accuracy"] for r in runs]
        return f"{100 * float(np.mean(values)):.{digits}f}%"

    def seed_range(self, variant: str, dataset: str, recipe: str, backend: str) -> str:
        """'75.37% to 93.96%': the lowest and highest final test accuracy over the group's seeds."""
        finals = self.finals(variant, dataset, recipe, backend)
        return f"{100 * min(finals):.2f}% to {100 * max(finals):.2f}%"

    def difference(self, variant: str, dataset: str, recipe: str, backend: str) -> str:
        """The backend − the baseline in final test accuracy with its 95% interval, as the report writes it."""
        row = next(r for r in self.rows if (r["variant"], r["dataset"], r["recipe"]) == (variant, dataset, recipe))
        return difference_text(row["comparisons"][backend])

    def seeds(self, variant: str, dataset: str, recipe: str, backend: str) -> int:
        return len(self.group(variant, dataset, recipe, backend).complete)

    def std(self, variant: str, dataset: str, recipe: str, backend: str) -> str:
        """The seed-to-seed standard deviation of the final test accuracy, in points."""
        return f"{100 * mean_std(self.finals(variant, dataset, recipe, backend))[1]:.1f}"

    def seeds_for(self, variant: str, dataset: str, recipe: str, backend: str, sides: int = 1) -> int:
        """About how many seeds a side put a mean (sides=1) or a difference of two independent means (sides=2)
        within ±MARGIN at the stated confidence, at this group's seed-to-seed spread (normal approximation)."""
        from statistics import NormalDist

        z = NormalDist().inv_cdf(1 - st.ALPHA / 2)
        spread = mean_std(self.finals(variant, dataset, recipe, backend))[1]
        return math.ceil(sides * (z * spread / st.MARGIN) ** 2)

    def seconds_per_epoch(self, variant: str, dataset: str, recipe: str, backend: str) -> str:
        return f"{group_stats(self.group(variant, dataset, recipe, backend))['seconds_per_epoch']:.1f}"

    def plateau_epochs(self, variant: str, dataset: str, recipe: str, backend: str) -> str:
        """'2 / 6 / 3': each seed's epochs below the plateau's accuracy, in seed order."""
        runs = sorted(self.group(variant, dataset, recipe, backend).complete, key=lambda r: r["seed"])
        return " / ".join(str(sum(row["test_accuracy"] < PLATEAU_ACCURACY for row in r["epochs"])) for r in runs)

    def left_plateau(self, variant: str, dataset: str, recipe: str, backend: str) -> str:
        """'2 of 10': how many seeds ended above the plateau."""
        finals = self.finals(variant, dataset, recipe, backend)
        return f"{sum(a >= PLATEAU_ACCURACY for a in finals)} of {len(finals)}"

    def runs(self, variant: str | None = None) -> int:
        return sum(variant is None or variant_name(r["mode"], r["limit"], r["epochs_override"]) == variant
                   for r in self.records)  # fmt: skip


PUBLISHED = Path(__file__).resolve().parents[2] / "docs" / "results"


def published_report() -> Report:
    """The model of the committed runs (docs/results/)."""
    return Report.build(RunStore(PUBLISHED))


def write_report(store: RunStore, mode: str | None = None, report: Report | None = None) -> str:
    """Write report.md, report.csv and one PNG per (variant, dataset, recipe) into the results directory (from
    `report` where the caller has built it already)."""
    from experiments.analysis.plots import plot_group
    from experiments.analysis.variance import plot as variance_plot

    report = report or Report.build(store, mode)
    for key, by_backend in report.groups.items():
        write_atomic(store.root / plot_path(key), plot_group(key, by_backend))
    for study in report.variance:
        write_atomic(store.root / variance_plot_path(study), variance_plot(study))
    write_atomic(store.root / "report.md", report.text.encode())
    write_atomic(store.root / "report.csv", csv_text(report.rows).encode())
    left_out = len(store.left_out)
    return (f"wrote {store.root / 'report.md'}, report.csv and {len(report.groups)} plots from {len(report.records)} "
            "runs" + (f" ({left_out} left out: see above)" if left_out else ""))


def machines_table(records: list[dict[str, Any]]) -> str:
    """How many runs of each backend each machine made (by processor; a record that does not name one, by its host
    name), with what the records say of the kernels beyond the processor (kernel_note)."""
    from common.machine import named

    counts: dict[str, dict[str, int]] = {}
    dates: dict[str, list[str]] = {}
    for record in records:
        meta = record.get("meta", {})
        where = named(meta)
        note = backends.kernel_note(record["backend"], meta)
        name = label(record["backend"]) + (f" ({note})" if note else "")
        counts.setdefault(where, {}).setdefault(name, 0)
        counts[where][name] += 1
        dates.setdefault(where, []).append(str(meta.get("started") or "")[:10])
    body = [[where, ", ".join(f"{name} {n}" for name, n in sorted(by.items())),
             f"{min([d for d in dates[where] if d], default='?')} to {max(dates[where]) or '?'}"]
            for where, by in sorted(counts.items())]  # fmt: skip
    return _markdown(["machine (processor, family/model/stepping, widest vector ISA, cores, kernel pins)",
                      "runs", "started"], body)  # fmt: skip


def versions_table(records: list[dict[str, Any]]) -> str:
    """How many runs each set of framework versions made, and in which environment (records name their environment
    and its lock's digest since the environments were split; earlier runs shared one environment)."""
    counts: Counter = Counter()
    for record in records:
        meta = record.get("meta", {})
        versions = ", ".join(f"{package} {version}" for package, version in meta.get("versions", {}).items())
        environment = meta.get("environment")
        where = (f"{environment['name']} (lock {str(environment.get('lock_sha256') or '—')[:12]})" if environment
                 else "one environment for every framework (not locked)")  # fmt: skip
        counts[label(record["backend"]), versions or "not recorded", where] += 1
    body = [[name, versions, where, str(n)] for (name, versions, where), n in sorted(counts.items())]
    return _markdown(["backend", "versions", "environment", "runs"], body)


def made_by_table(records: list[dict[str, Any]]) -> str:
    """mode | runs | releases (each backend's first package, every version) | processors."""
    from common.machine import widest_isa

    modes: dict[str, dict[str, Any]] = {}
    for record in records:
        meta = record.get("meta", {})
        mode = modes.setdefault(record["mode"], {"runs": 0, "releases": defaultdict(set), "processors": set()})
        mode["runs"] += 1
        versions = meta.get("versions", {})
        package = next(iter(versions), None)
        if package is not None:
            mode["releases"][record["backend"]].add(f"{package} {versions[package]}")
        machine = meta.get("machine")
        mode["processors"].add(", ".join(filter(None, [machine.get("cpu", "unknown"), widest_isa(machine)]))
                               if machine else "not recorded")  # fmt: skip
    body = []
    for mode, seen in modes.items():
        releases = "; ".join(f"{label(name)}: {', '.join(sorted(seen['releases'][name], key=_version_key))}"
                             for name in display_order(seen["releases"]))  # fmt: skip
        body.append([mode, str(seen["runs"]), releases, "; ".join(sorted(seen["processors"]))])
    return _markdown(["mode", "runs", "releases (each framework's own package)", "processors"], body)


def _version_key(text: str) -> tuple:
    """'jax 0.4.23' before 'jax 0.10.2'."""
    return tuple(int(part) if part.isdigit() else 0 for part in text.split()[-1].split("+")[0].split("."))


def runs_summary(records: list[dict[str, Any]]) -> str:
    """How many runs, how they ended, the hours their epochs took, and how many of each backend in each mode."""
    statuses = Counter(record.get("status", "?") for record in records)
    hours = sum(epoch.get("seconds", 0.0) for record in records for epoch in record["epochs"]) / 3600
    by_mode: dict[str, Counter] = {}
    for record in sorted(records, key=lambda r: r.get("mode", "shared") != "shared"):  # shared first
        by_mode.setdefault(record.get("mode", "shared"), Counter())[record["backend"]] += 1
    ended = ", ".join(f"{n} {status}" for status, n in statuses.most_common())
    modes = "; ".join(f"{mode}: " + ", ".join(f"{label(name)} {counts[name]}"
                                              for name in backends.display_order(counts))
                      for mode, counts in by_mode.items())  # fmt: skip
    predicted = sum("predictions" in record for record in records)
    return (f"{len(records)} run records ({ended}; {hours:.1f} hours of epochs; {modes}); {predicted} of them record "
            "their test predictions")


def report_markdown(rows: list[dict[str, Any]], plots: dict, runs: str,
                    fidelity: list[dict[str, Any]] | None = None, oracle: list[OracleFigures] | None = None,
                    machines: str | None = None, versions: str | None = None, findings: str | None = None,
                    costs: str | None = None, stock: str | None = None,
                    variance: list[dict[str, Any]] | None = None) -> str:
    """The whole report as Markdown."""
    out = ["# lenet-repro report", "",
           f"Built by `make compare` from {runs}. Each cell: mean ± sample std over seeds (n).",
           "Test accuracy and losses are those after the last epoch; training loss and accuracy are measured during "
           "the epoch, as d2lzh's `train_ch5` reports them. \"Epochs to target\": first epoch whose test accuracy "
           "reaches the stated value, averaged over the seeds that reach it. Seconds per epoch: the median over "
           "every epoch of every seed, test evaluation included, on whatever machine, thread count and load each run "
           "had (the last section lists the machines): a record of what the runs cost, not a speed comparison, which "
           "`lenet-repro bench` makes side by side in one run. \"Same result\": each backend − the baseline (the "
           "first framework that ran the recipe, PyTorch here) in final test accuracy, paired by seed in shared mode "
           "(same weights and batches) and by Welch's t-test in native mode; verdict: "
           f"{st.RULE}. Each variant's first table gives one test accuracy column per backend; the tables below it "
           "give the differences with their intervals and every other figure.",
           ""]  # fmt: skip
    if findings:
        out += ["## Findings", "", "What the runs show, each with the figure behind it (the sections below give "
                "every run; \"points\" are percentage points of test accuracy, intervals are 95%):", "", findings, ""]
    out += fidelity_section(fidelity or [])
    for row in fidelity or []:
        key = (row["variant"], row["dataset"], row["recipe"])
        title = f"{row['recipe']}: the blog post's script and the harness, {row['dataset']}"
        out += [f"![{title}]({plots[key].as_posix()})", ""]
    for variant in dict.fromkeys(row["variant"] for row in rows):
        variant_rows = [row for row in rows if row["variant"] == variant]
        defaults = ([f"Each framework's final test accuracy and how many of its seeds ended still on the plateau "
                     f"(below {PLATEAU_ACCURACY:.0%}):", "", stock, ""] if variant == "stock" and stock else [])
        out += [f"## {variant}", "", _variant_note(variant), "", *defaults, markdown_table(variant_rows), "",
                "Each backend against the baseline, final test accuracy:", "", differences_table(variant_rows), "",
                "More figures for the same runs:", "", detail_table(variant_rows), "",
                "Test accuracy (%) after each epoch, mean over seeds:", "", epoch_table(variant_rows), "",
                f"Each seed's test accuracy after the last epoch (in brackets: how many epochs ended below "
                f"{PLATEAU_ACCURACY:.0%} test accuracy, i.e. on the plateau):", "",
                seed_table(backend_entries(variant_rows)), ""]
        present = present_backends(variant_rows)
        references = [label(name) for name in present if is_reference(name)]
        if variant.startswith("shared") and len(present) > 1:
            out += ["How far the backends' per-step training losses move apart from the same weights and batches "
                    "(relative gap |B − A| / A for the pair \"B vs A\", per step, runs paired by seed"
                    + (f"; {references[0]} is the float64 reference, so \"{label(present[0])} vs {references[0]}\" "
                       f"is how far float32 arithmetic carries {label(present[0])} from the exact math" if references
                       else "") + "):", "", drift_table(variant_rows), ""]  # fmt: skip
        for row in variant_rows:
            key = (row["variant"], row["dataset"], row["recipe"])
            out += [f"![{row['recipe']} on {row['dataset']} ({variant})]({plots[key].as_posix()})", ""]
    out += oracle_section(oracle or [])
    out += variance_section(variance or [])
    if machines:
        out += ["## Where the runs were made", "",
                "Float arithmetic depends on the kernels a framework picks for the processor, so runs made on "
                "different machines drift apart by float rounding from the same weights and batches (`make verify` "
                "measures how far; docs/verify.md). A record that does not name its processor is counted by its host. "
                "TensorFlow's runs also say whether its oneDNN kernels ran: TensorFlow turns them on by default only "
                "on processors with AVX-512 VNNI/BF16, AVX-VNNI or AMX; the backend turns them on everywhere "
                "(docs/tensorflow.md):", "",
                machines, ""]  # fmt: skip
    if costs:
        out += ["## What a run costs", "",
                "Minutes one run of a recipe took, per framework: the median over its committed runs of the seconds of "
                "every epoch, test evaluation included, on the machines above (2 cores; one or two threads a run, "
                "sometimes beside another run). `lenet-repro bench` compares speeds side by side; this is what the "
                "published runs cost:", "", costs, ""]  # fmt: skip
    if versions:
        out += ["## Which versions made the runs", "",
                "Each run keeps the framework versions it was made with; a table above mixes versions where a "
                "backend's runs span an upgrade (docs/environments.md measures what the upgrade changed):", "",
                versions, ""]  # fmt: skip
    out += ["## The recipes", ""]
    for name in dict.fromkeys([row["recipe"] for row in rows] + [row["recipe"] for row in fidelity or []]):
        recipe = spec.get_recipe(name)
        out += [f"### `{name}`", "", RECIPE_NOTES.get(name, recipe.origin), "", "```",
                spec.format_layer_table(spec.layer_rows(recipe)), "```", ""]  # fmt: skip
    return "\n".join(out)


def variance_plot_path(study: dict[str, Any]) -> Path:
    return Path("plots") / f"variance_{study['recipe']}_{study['dataset']}.png"


def variance_section(studies: list[dict[str, Any]]) -> list[str]:
    """The variance study of each recipe and dataset: its arms ranked, and its plot (experiments/analysis/variance)."""
    if not studies:
        return []
    from experiments.analysis.variance import markdown

    out = ["## Where the difference comes from", "",
           "One source of variance at a time (`lenet-repro variance`), each arm's runs from the same start but for "
           "what the arm varies, ranked by the standard deviation of their final test accuracy (95% interval from the "
           "chi-square law). Churn: the share of test images on which two runs of the arm predict differently, "
           "averaged over its pairs (the framework and defaults arms pair the runs of one seed, and their spread "
           "is the standard deviation within a seed, pooled over the seeds). The test set's floor "
           "is the standard deviation of an accuracy p measured on n test images, sqrt(p(1 − p) / n). The library "
           "release and the processor have no arm: no run of an older release or of another processor records its "
           "predictions (docs/environments.md and docs/verify.md measure what they change in the losses and the "
           "final accuracy).", ""]  # fmt: skip
    for study in studies:
        out += [f"### `{study['recipe']}` on {study['dataset']}", "", markdown(study), "",
                f"![where the difference comes from, {study['recipe']} on {study['dataset']}]"
                f"({variance_plot_path(study).as_posix()})", ""]  # fmt: skip
    return out


def oracle_section(figures: list[OracleFigures]) -> list[str]:
    """The oracle's figures (ORACLE_FILE, written by `make oracle`), when they were measured."""
    if not figures:
        return []
    f = figures[0]
    source = backends.info(backends.REFERENCE).module.replace(".", "/") + ".py"
    return ["## The oracle: each framework against the float64 math", "",
            f"The {label(backends.REFERENCE)} backend (`{source}`: "
            "every forward and backward written out, float64, itself checked against central finite differences) is "
            "the reference. From the same initial weights, each "
            f"implementation computes the output, loss and gradients of one batch of {f.examples} real examples, then "
            f"{f.steps} SGD steps (batches of up to {f.step_batch}). Each cell: the largest relative error against "
            "the float64 reference, max |x − x₆₄| / max |x₆₄| (per layer: its weight or bias, whichever is larger). "
            "\"NumPy float32\" is the same NumPy code in float32: where float32 arithmetic alone lands. Written by "
            "`make oracle`; the test suite asserts every framework figure against it.", "",
            oracle_markdown(figures), ""]  # fmt: skip


def _variant_note(variant: str) -> str:
    mode = variant.split("-")[0]
    limit = variant.partition("-limit")[2]
    text = {
        "shared": "Every backend starts each seed from the same initial weights (made in NumPy; for `seed-torch` and "
        "`seed-torch-fixed` they are PyTorch's own for that seed, as the blog post's script draws them) and sees the "
        "same "
        "batches in the same order: their curves differ only by the frameworks' arithmetic.",
        "native": "Each framework uses its own initialisers and its own shuffling, as two independent scripts would "
        "(same distributions, each framework's own random numbers): the backends' curves differ as independent "
        "runs do. The blog post's own scripts, where they ran, are native runs too.",
        "stock": "Each framework as a student's port would have it: its own default initialisers (PyTorch's "
        "kaiming-uniform(a=√5) with uniform biases, Keras's Glorot-uniform, Flax's LeCun-normal, Gluon's "
        "Uniform(0.07), the last three with zero biases), its own random numbers and its own shuffling; everything "
        "else is the recipe's. The backends' curves differ as independent runs do, and by what the defaults change.",
    }[mode]
    return text + (f" Data subset: the first {limit} training and test examples." if limit else "")


# The report's tables that the documentation carries verbatim (README.md all but the second, docs/fidelity.md the
# second), each found by its header row's first cells; tests/test_published.py holds the copies to these.
# The tables the README and the docs show, by their header rows (Report.results, .fidelity, .findings, .costs,
# .stock): the pages rendered from templates take them from the report's model (experiments/docs.py).
DOCUMENTED_TABLES = ("| recipe | dataset | PyTorch test acc |", "| recipe | dataset | run by |", FINDINGS_HEADER,
                     COST_HEADER, STOCK_HEADER)


def table_span(lines: list[str], header: str) -> tuple[int, int] | None:
    """[start, end) of the first Markdown table whose header row starts with `header`, or None."""
    start = next((i for i, line in enumerate(lines) if line.startswith(header)), None)
    if start is None:
        return None
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return start, end
