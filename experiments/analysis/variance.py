"""What the variance study's arms say (experiments/studies/variance.py trains them): per arm, the spread of the
final test accuracy with its 95% interval, the mean pairwise difference, the churn (the share of test images two
runs disagree on), the largest per-class accuracy gap, and the test set's own floor; as a ranked table and a plot
for the report. Reads the study's files, runs nothing."""

from __future__ import annotations

import io
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np

from common import data, seal
from common.results import decode_predictions
from experiments.analysis import stats
from experiments.analysis.plots import DATASET_WORDS, RECIPE_TITLES

# The arms, in the order the study trains them; what each varies, in words.
ARMS = {
    "rerun": "nothing (the same run again)",
    "threads": "the thread count (1 or 2)",
    "one-bit": "the lowest bit of one initial weight",
    "order": "the batch order",
    "weights": "the initial weights",
    "seed": "both (a new seed)",
    "framework": "the framework's arithmetic (shared mode)",
    "defaults": "the framework's defaults (stock mode)",
}
# The variance plot's axis turns logarithmic (above LINEAR_BELOW points) where a source spreads WIDE times the floor
WIDE = 20
LINEAR_BELOW = 0.01
FOLDER = "variance"  # in a results directory: the study's files, one per recipe and dataset


def study_file(recipe: str, dataset: str, limit: int | None = None) -> str:
    """The name of a study's file: variance-<recipe>-<dataset>.json (-limitN before .json for a subset)."""
    return f"variance-{recipe}-{dataset}{f'-limit{limit}' if limit else ''}.json"


def groups(runs: list[dict[str, Any]]) -> list[list[int]]:
    """The runs (indices) an arm compares with one another: all of them, or, where runs form groups (a seed's
    frameworks), each group."""
    if not any("group" in r for r in runs):
        return [list(range(len(runs)))]
    members: dict[int, list[int]] = {}
    for i, r in enumerate(runs):
        members.setdefault(r["group"], []).append(i)
    return list(members.values())


def pairs(runs: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """The pairs (indices) an arm compares: every two runs of one of its groups."""
    return [p for members in groups(runs) for p in itertools.combinations(members, 2)]


def per_class(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The accuracy on each class the labels hold, in class order."""
    return np.array([(predictions[labels == c] == c).mean() for c in np.unique(labels)])


def arm_summary(runs: list[dict[str, Any]], labels: np.ndarray) -> dict[str, Any]:
    """An arm's figures: n, the std of the final test accuracy with its 95% interval (where runs form groups, a
    seed's frameworks, the std within a group pooled over the groups: what the framework changes, not the seed),
    the mean pairwise |difference|, the churn, the largest per-class gap (both over the pairs `pairs` compares),
    whether the runs it compares predicted alike (bitwise equal predictions, every pair), and the test set's floor at
    the arm's mean accuracy."""
    accuracies = [r["test_accuracy"] for r in runs]
    predicted = [decode_predictions(r["predictions"]) for r in runs]
    compared = pairs(runs)
    churn = [float((predicted[i] != predicted[j]).mean()) for i, j in compared]
    gaps = [float(np.abs(per_class(predicted[i], labels) - per_class(predicted[j], labels)).max())
            for i, j in compared]  # fmt: skip
    differences = [abs(accuracies[i] - accuracies[j]) for i, j in compared]
    mean = float(np.mean(accuracies))
    members = groups(runs)  # a seed's frameworks: the spread within a seed, pooled over the seeds
    std, low, high = stats.pooled_std([[accuracies[i] for i in group] for group in members])
    return {"n": len(runs), "mean": mean, "std": 0.0 if len(runs) < 2 else std, "groups": len(members),
            "std_low": low, "std_high": high, "pairs": len(compared),
            "difference": float(np.mean(differences)) if differences else math.nan,
            "churn": float(np.mean(churn)) if churn else math.nan,
            "churn_max": float(np.max(churn)) if churn else math.nan,
            "class_gap": float(np.max(gaps)) if gaps else math.nan,
            "identical": all(np.array_equal(predicted[i], predicted[j]) for i, j in compared),
            "floor": math.sqrt(mean * (1 - mean) / len(labels))}  # fmt: skip


def test_labels(dataset: str, limit: int | None) -> np.ndarray:
    labels = data.load_dataset(dataset).test_labels
    return labels[:limit] if limit else labels


def summary_rows(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(arm, its figures) for every arm with two runs or more, ranked by the spread of the final test accuracy,
    largest first."""
    labels = test_labels(results["dataset"], results.get("limit"))
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for run in results["runs"]:
        by_arm.setdefault(run["arm"], []).append(run)
    rows = [(arm, arm_summary(by_arm[arm], labels)) for arm in ARMS if len(by_arm.get(arm, ())) >= 2]
    return sorted(rows, key=lambda row: -row[1]["std"])


def arms_of(studies: list[dict[str, Any]], recipe: str, dataset: str) -> dict[str, dict[str, Any]]:
    """{arm: its figures} of the study of a recipe and dataset among `studies`, ranked as summary_rows ranks them;
    empty where there is none."""
    study = next((s for s in studies if (s["recipe"], s["dataset"]) == (recipe, dataset)), None)
    return dict(summary_rows(study)) if study else {}


def summary(results: dict[str, Any]) -> str:
    """The arms ranked by the standard deviation of their final test accuracy, with churn and per-class gaps."""
    rows = summary_rows(results)
    lines = [f"{results['recipe']} on {results['dataset']}: one source of variance at a time "
             f"(final test accuracy; churn: the share of test images two runs of the arm disagree on)",
             f"  {'arm':<10} {'n':>3}  {'std (95% CI), pp':<22} {'mean |diff|':>11}  {'churn':>13}  "
             f"{'class gap':>9}  bitwise"]  # fmt: skip
    for arm, s in rows:
        lines.append(f"  {arm:<10} {s['n']:>3}  {s['std'] * 100:5.2f} ({s['std_low'] * 100:.2f} – "
                     f"{s['std_high'] * 100:.2f})    {s['difference'] * 100:8.2f} pp  {s['churn'] * 100:5.2f}% "
                     f"(≤{s['churn_max'] * 100:5.2f}%)  {s['class_gap'] * 100:6.2f} pp  "
                     f"{'equal' if s['identical'] else 'differ'}")  # fmt: skip
    if rows:
        images = len(test_labels(results["dataset"], results.get("limit")))
        lines.append(f"  the test set's floor (sqrt(p(1-p)/n), n = {images}): "
                     f"{max(s['floor'] for _, s in rows) * 100:.2f} pp")  # fmt: skip
    return "\n".join(lines)


def read_studies(root: Path) -> list[dict[str, Any]]:
    """The variance study's files in a results directory (its variance/ folder), by name: those with an arm of two
    runs or more."""
    studies = [seal.read_json(path, "study file") for path in sorted((root / FOLDER).glob("variance-*.json"))]
    return [study for study in studies if summary_rows(study)]


def markdown(results: dict[str, Any]) -> str:
    """The ranked table of one study, for the report."""
    header = "| what varies | runs | std of the final test accuracy [95% CI] | mean pairwise difference | churn (largest pair) | largest per-class gap | predictions |"  # noqa: E501
    body = [header, "|---|---|---|---|---|---|---|"]
    for arm, s in summary_rows(results):
        body.append(f"| {ARMS[arm]} | {s['n']} | {s['std'] * 100:.2f} pp [{s['std_low'] * 100:.2f}, "
                    f"{s['std_high'] * 100:.2f}] | {s['difference'] * 100:.2f} pp | {s['churn'] * 100:.2f}% "
                    f"({s['churn_max'] * 100:.2f}%) | {s['class_gap'] * 100:.2f} pp | "
                    f"{'bitwise equal' if s['identical'] else 'differ'} |")  # fmt: skip
    return "\n".join(body)


def plot(results: dict[str, Any]) -> bytes:
    """PNG bytes, for a projector: one bar per source of variance (the std of the final test accuracy, its 95%
    interval as a whisker), the test set's floor as a line, and each arm's churn beside its bar. Where one source
    spreads far more than the floor (a framework's defaults that stay on the plateau), the axis is logarithmic above
    LINEAR_BELOW points, so the small sources stay in sight beside it."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = summary_rows(results)[::-1]  # the largest at the top
    plt.rcParams.update({"font.size": 14})
    fig, ax = plt.subplots(figsize=(12, 0.75 * len(rows) + 2.8), dpi=90)
    y = np.arange(len(rows))
    stds = np.array([s["std"] for _, s in rows]) * 100
    low = np.nan_to_num(np.array([s["std_low"] for _, s in rows]) * 100)
    high = np.nan_to_num(np.array([s["std_high"] for _, s in rows]) * 100)
    ax.barh(y, stds, color="#4c72b0", xerr=[stds - low, high - stds], capsize=4)
    floor = max(s["floor"] for _, s in rows) * 100
    ax.axvline(floor, color="#c44e52", linestyle="--", linewidth=2)
    ax.text(floor, -0.85, " the test set's floor", color="#c44e52", va="center")
    ax.set_ylim(-1.2, len(rows) - 0.5)
    logarithmic = max(high.max(), stds.max()) > WIDE * floor
    for i, (_, s) in enumerate(rows):
        end = max(high[i], stds[i])
        at = max(end, LINEAR_BELOW) * 1.1 if logarithmic else end + 0.02
        ax.text(at, i, f"  churn {s['churn'] * 100:.1f}%", va="center", fontsize=12)
    ax.set_yticks(y, [f"{ARMS[arm]} (n={s['n']})" for arm, s in rows])
    label = "standard deviation of the final test accuracy (points), 95% interval"
    if logarithmic:
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("symlog", linthresh=LINEAR_BELOW)
        ax.set_xlim(0, max(high.max(), floor) * 40)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        label += f"\n(logarithmic above {LINEAR_BELOW} points)"
    else:
        ax.set_xlim(0, max(high.max(), floor) * 1.35 + 0.05)
    ax.set_xlabel(label)
    fig.suptitle(f"Where the difference comes from\n{RECIPE_TITLES.get(results['recipe'], results['recipe'])}, on "
                 f"{DATASET_WORDS.get(results['dataset'], results['dataset'])}", fontsize=15)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def one_bit_apart(results: dict[str, Any]) -> dict[str, Any] | None:
    """The original run (the rerun arm's first) and the one-bit run whose final accuracy is closest to it among
    those that predict differently: exactly one bit apart at the start. Their accuracies, predictions and the test
    images they disagree on; None where the study has no such pair."""
    original = next((r for r in results["runs"] if r["arm"] == "rerun"), None)
    if original is None:
        return None
    base = decode_predictions(original["predictions"])
    best = None
    for run in (r for r in results["runs"] if r["arm"] == "one-bit"):
        predicted = decode_predictions(run["predictions"])
        differ = np.flatnonzero(predicted != base)
        gap = abs(run["test_accuracy"] - original["test_accuracy"])
        if differ.size and (best is None or (gap, -differ.size) < best[0]):
            best = ((gap, -differ.size), run, predicted, differ)
    if best is None:
        return None
    _, run, predicted, differ = best
    return {"runs": [original, run], "accuracy": [original["test_accuracy"], run["test_accuracy"]],
            "predicted": [base, predicted], "images": differ}  # fmt: skip
