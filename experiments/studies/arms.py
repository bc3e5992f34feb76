"""What the two training studies share: runs of one recipe, seed by seed and arm by arm, where the arms differ in
one thing only (the initial weights' source in `init-study`, the batch order in `order-study`), resumable.

`run_arms` trains the (seed, arm) pairs missing from the study's JSON file, seed by seed so that the arms stay
balanced when it is interrupted, and writes the file after every run (atomically); `by_arm` groups a measure of
the runs by arm for the comparisons; `arm_line` and `difference_text` print them alike in both studies.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import data, seal, spec
from common.arguments import THREADS_HELP, choice, positive_int
from experiments.analysis import stats


@dataclass(frozen=True)
class ArmsConfig:
    """What every study that trains arms side by side takes (each study adds its own fields and defaults)."""

    seeds: int = 10
    recipe: str = "d2l"
    dataset: str = "mnist"
    out: str = "docs/studies"  # the folder of the study's JSON file
    limit: int | None = None  # the first N training and test examples only
    threads: int | None = None


def add_arms_arguments(parser: argparse.ArgumentParser, defaults: ArmsConfig) -> None:
    """The options of ArmsConfig's fields, with the study's own defaults."""
    parser.add_argument("--seeds", type=positive_int, default=defaults.seeds)
    parser.add_argument("--recipe", default=defaults.recipe, type=choice("recipe", lambda: spec.RECIPES))
    parser.add_argument("--dataset", default=defaults.dataset, type=choice("dataset", lambda: data.DATASETS))
    parser.add_argument("--out", default=defaults.out, help="folder of the study's JSON file")
    parser.add_argument("--limit", type=positive_int)
    parser.add_argument("--threads", type=positive_int, help=THREADS_HELP)


def run_arms(path: Path, header: dict[str, Any], seeds: int, arms: Sequence[str],
             train: Callable[[int, str], dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    """Train each (seed, arm) not yet in `path` with `train(seed, arm)`; returns the study (header + runs)."""
    results = seal.read_json(path, "study file") if path.exists() else {**header, "runs": []}
    done = {(r["seed"], r["arm"]) for r in results["runs"]}
    for seed in range(seeds):
        for arm in arms:
            if (seed, arm) not in done:
                results["runs"].append({"seed": seed, "arm": arm, **train(seed, arm)})
                seal.write_json(path, results)
                print(f"seed {seed} {arm}: {results['runs'][-1]['test_accuracy']:.4f}", flush=True)
    return results


def by_arm(results: dict[str, Any], value: Callable[[dict[str, Any]], float | None]) -> dict[str, list[float]]:
    """`value(run)` of every run that has one, grouped by arm in the order the arms first appear."""
    grouped: dict[str, list[float]] = {}
    for run in results["runs"]:
        v = value(run)
        if v is not None:
            grouped.setdefault(run["arm"], []).append(v)
    return grouped


def train_and_test(backend: Any, model: Any, data: Any, epochs: int,
                   order: Callable[[int], Any]) -> dict[str, Any]:  # fmt: skip
    """Train `model` for `epochs` epochs, epoch k in `order(k)`, then test it: the final test accuracy and loss,
    the mean training loss of every epoch (where a run leaves a plateau shows in the first), and the threads the
    framework trained with (`backend.configure_threads()`: OMP_NUM_THREADS, which `--threads` sets, else every core)."""
    from common.train import evaluate, train_epoch

    threads = backend.configure_threads()
    epoch_losses = []
    for epoch in range(epochs):
        outcome = train_epoch(backend, model, data.train_images, data.train_labels, order(epoch))
        epoch_losses.append(outcome.loss_sum / outcome.examples)
    test_loss, test_accuracy = evaluate(backend, model, data.test_images, data.test_labels)
    return {"test_accuracy": test_accuracy, "test_loss": test_loss, "epoch_losses": epoch_losses, "threads": threads}


def arm_line(arm: str, values: list[float], width: int) -> str:
    """One arm's final test accuracy: mean ± std (n) and the 95% interval of the mean, in percent."""
    s = stats.summarize(values)
    return (f"  {arm:<{width}} {s.mean * 100:.2f}% ± {s.std * 100:.2f} (n={s.n}), "
            f"95% CI {s.low * 100:.2f} – {s.high * 100:.2f}%")  # fmt: skip


def difference_text(c: stats.Comparison, percent: bool) -> str:
    """A difference of means and its 95% interval: in percentage points (accuracy) or as is (loss)."""
    scale, unit, digits = (100, " pp", 2) if percent else (1, "", 4)
    return (f"{c.difference * scale:+.{digits}f}{unit}, 95% CI [{c.low * scale:+.{digits}f}, "
            f"{c.high * scale:+.{digits}f}]")  # fmt: skip
