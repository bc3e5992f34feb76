"""What the results explorer shows, as JSON: every run of a results directory (its per-epoch figures exact, its
per-step training loss thinned), grouped and compared as the report groups and compares them
(experiments/analysis/model.py: the same groups, statistics, paired or Welch differences and verdicts), and the
variance study's table. Reads records only; experiments/explorer.py puts it into the page."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from backends import display_order
from common.results import RunKey
from experiments.analysis import stats as st
from experiments.analysis.model import group_stats
from experiments.analysis.plots import BAND_ALPHA, DATASET_WORDS, MODE_WORDS, RECIPE_TITLES, style
from experiments.analysis.report import Report, difference_text
from experiments.analysis.variance import ARMS, FOLDER, study_file, summary_rows

# The per-step training loss of a run is drawn from at most this many points: each the mean of `window`
# consecutive steps (window = ceil(steps / STEP_POINTS)). Every per-epoch figure and every table entry is exact.
STEP_POINTS = 200
EPOCH_FIELDS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
# The view the page opens on (where its runs exist): the README's first plot, each framework on its own defaults
FIRST_VIEW = {"variant": "stock", "dataset": "mnist", "recipe": "d2l"}
# matplotlib's line styles (the registry's) as Plotly's dash patterns
DASHES = {"-": "solid", "--": "dash", "-.": "dashdot", ":": "dot"}


def thin(values: list[float | None], points: int = STEP_POINTS) -> tuple[int, list[float | None]]:
    """(window, the means of each `window` consecutive values): at most `points` of them; a window holding a
    missing value (a diverged step) is missing too."""
    if not values:
        return 1, []
    window = max(1, math.ceil(len(values) / points))
    out: list[float | None] = []
    for start in range(0, len(values), window):
        chunk = values[start : start + window]
        out.append(None if any(v is None for v in chunk) else float(np.mean(chunk)))
    return window, out


def dash(linestyle: Any) -> str:
    """A matplotlib line style as a Plotly dash: a named one, or an on-off sequence (0, (on, off)) in pixels."""
    if isinstance(linestyle, str):
        return DASHES.get(linestyle, "solid")
    on_off = linestyle[1]
    return ",".join(f"{2 * length}px" for length in on_off)


def _rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), digits)


def run_entry(record: dict[str, Any], path: Path, page_folder: Path) -> dict[str, Any]:
    """One run: its seed and status, the link to its record from the page, the thinned per-step training loss and
    its exact per-epoch figures."""
    window, losses = thin(record.get("step_losses") or [])
    return {
        "seed": record["seed"], "status": record["status"],
        "file": Path(os.path.relpath(path, page_folder)).as_posix(),
        "window": window, "steps": len(record.get("step_losses") or []),
        "loss": [_rounded(v, 5) for v in losses],
        "epochs": {field: [_rounded(row[field]) for row in record["epochs"]] for field in EPOCH_FIELDS},
    }  # fmt: skip


def record_key(record: dict[str, Any]) -> RunKey:
    """The key a record was written under (its path in the results directory: RunKey.relative)."""
    return RunKey(record["backend"], record["dataset"], record["recipe"], record["seed"], record["mode"],
                  record["limit"], record["epochs_override"])  # fmt: skip


def _comparison(comparison: st.Comparison | None) -> dict[str, Any] | None:
    """A difference from the baseline as the report writes it (the same function) and its parts."""
    if comparison is None:
        return None
    return {"text": difference_text(comparison), "difference": _rounded(comparison.difference),
            "low": _rounded(comparison.low), "high": _rounded(comparison.high), "p": _rounded(comparison.p, 4),
            "test": comparison.test, "pairs": comparison.pairs, "verdict": comparison.verdict}  # fmt: skip


def _row(stats: dict[str, Any]) -> dict[str, Any]:
    """A backend's entries in the table: the report's statistics, and the final test accuracy as the report writes
    it (mean ± std (n))."""
    return {"n": stats["n"], "diverged": stats["diverged"], "partial": stats["partial"],
            "test_accuracy": st.pm(stats["test_accuracy_mean"], stats["test_accuracy_std"], stats["n"], digits=2,
                                   percent=True),
            "test_accuracy_mean": _rounded(stats["test_accuracy_mean"]),
            "train_loss": st.pm(stats["train_loss_mean"], stats["train_loss_std"], stats["n"], digits=4),
            "seconds_per_epoch": _rounded(stats["seconds_per_epoch"], 1)}  # fmt: skip


def explorer_data(report: Report, root: Path, page_folder: Path) -> dict[str, Any]:
    """Everything the page shows, from the report's model of the results directory `root`; links to records are
    relative to `page_folder` (where the page is written)."""
    rows = {(row["variant"], row["dataset"], row["recipe"]): row for row in report.rows}
    groups, names = [], set()
    for key, by_backend in report.groups.items():
        variant, dataset, recipe = key
        row = rows.get(key)
        entries = {}
        for name in display_order(by_backend):
            group = by_backend[name]
            names.add(name)
            stats = row["stats"][name] if row and name in row["stats"] else group_stats(group)
            comparison = row["comparisons"].get(name) if row else None
            entries[name] = {
                "runs": [run_entry(r, root / record_key(r).relative(".json"), page_folder)
                         for r in sorted(group.records, key=lambda r: r["seed"])],
                "row": _row(stats), "comparison": _comparison(comparison),
            }  # fmt: skip
        groups.append({"variant": variant, "mode": variant.split("-")[0], "dataset": dataset, "recipe": recipe,
                       "baseline": row["baseline"] if row else None, "backends": entries})  # fmt: skip
    looks = {name: style(name) for name in names}
    return {
        "runs": len(report.records),
        "backends": {name: {"label": look["label"], "color": look["color"], "dash": dash(look["linestyle"])}
                     for name, look in looks.items()},
        "order": display_order(names),
        "recipes": {name: RECIPE_TITLES.get(name, name) for name in dict.fromkeys(g["recipe"] for g in groups)},
        "datasets": {name: DATASET_WORDS.get(name, name) for name in dict.fromkeys(g["dataset"] for g in groups)},
        "variants": {v: MODE_WORDS.get(v.split("-")[0], v) for v in dict.fromkeys(g["variant"] for g in groups)},
        "step_points": STEP_POINTS, "margin": st.MARGIN, "first": FIRST_VIEW, "band_alpha": BAND_ALPHA,
        "groups": groups,
        "variance": [variance_entry(study, root, page_folder) for study in report.variance],
    }  # fmt: skip


def variance_entry(study: dict[str, Any], root: Path, page_folder: Path) -> dict[str, Any]:
    """The variance study's ranked table for one recipe and dataset (experiments/analysis/variance.py's figures),
    and the link to the study's file, whose runs it is computed from."""
    path = root / FOLDER / study_file(study["recipe"], study["dataset"], study.get("limit"))
    return {"recipe": study["recipe"], "dataset": study["dataset"],
            "file": Path(os.path.relpath(path, page_folder)).as_posix(),
            "rows": [{"arm": arm, "what": ARMS[arm], **{k: _rounded(v) if isinstance(v, float) else v
                                                         for k, v in s.items()}}
                     for arm, s in summary_rows(study)]}  # fmt: skip
