"""What does d2l-en's batch-level shuffle change? A paired study of the two training orders.

d2l-en's JAX and TensorFlow loaders batch the training set before they shuffle it
(`tf.data.Dataset.from_tensor_slices(...).batch(batch_size).shuffle(...)`): every epoch sees the same batches,
consecutive examples in the file's order, in a new order. PyTorch's `DataLoader(shuffle=True)`, Gluon's
`DataLoader(shuffle=True)` and this project's harness shuffle the examples, so every epoch makes new batches.
For each seed a backend (PyTorch by default) trains the recipe twice from the same initial weights (shared
mode's, `common.init`): once in the harness's order (arm `examples`, what a shared-mode run trains) and once
with d2l-en's fixed batches in a seeded order (arm `batches`, `common.batches.batch_order`). Only the order
differs, so the runs pair by seed (paired t-test, experiments.analysis.stats).

Results go to <out>/order-<recipe>-<dataset>.json, written after every run (resumable).

    lenet-repro order-study [--seeds 10] [--recipe d2l] [--dataset mnist] [--backend torch] [--out docs/studies]
                            [--limit N] [--threads T]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import backends
from common.arguments import choice
from experiments.analysis import stats
from experiments.studies.arms import (
    ArmsConfig,
    add_arms_arguments,
    arm_line,
    by_arm,
    difference_text,
    run_arms,
    train_and_test,
)

ARMS = ("examples", "batches")


def train_arm(recipe_name: str, dataset: str, seed: int, arm: str, backend_name: str,
              limit: int | None = None) -> dict:  # fmt: skip
    """Train one (seed, arm) from shared mode's initial weights for `seed`, in the arm's order."""
    from backends import load_backend
    from common import spec
    from common.batches import batch_order, epoch_order
    from common.results import RunKey
    from experiments.running.runs import prepare_data, start_model

    backend = load_backend(backend_name)
    recipe = spec.get_recipe(recipe_name)
    model = start_model(backend, RunKey(backend_name, dataset, recipe_name, seed, "shared"), recipe, "cpu")
    data = prepare_data(dataset, recipe, limit)
    n = len(data.train_labels)
    if arm == "examples":
        order = lambda epoch: epoch_order(seed, epoch, n, recipe.shuffle)  # noqa: E731
    else:
        order = lambda epoch: batch_order(seed, epoch, n, recipe.batch_size)  # noqa: E731
    return train_and_test(backend, model, data, recipe.epochs, order)


def study(path: Path, recipe: str, dataset: str, seeds: int, backend: str | None = None,
          limit: int | None = None) -> dict:  # fmt: skip
    """Run the missing (seed, arm) pairs, seed by seed so the arms stay balanced; save after each. `backend`
    trains both arms (default: the registry's baseline)."""
    from backends import baseline

    backend = backend or baseline()
    header = {"recipe": recipe, "dataset": dataset, "backend": backend, "limit": limit}
    return run_arms(path, header, seeds, ARMS, lambda seed, arm: train_arm(recipe, dataset, seed, arm, backend, limit))


def summary(results: dict) -> str:
    """Each arm as mean ± std (n) with its 95% interval, and the paired difference batches − examples on the final
    test accuracy, the first epoch's and the last epoch's training loss; when the accuracy is undecided, the seeds that
    would decide it; and whether the two arms spread alike (Pitman-Morgan)."""
    lines = [f"{results['recipe']} on {results['dataset']} ({results['backend']}), same initial weights, order:"]
    finals = by_arm(results, lambda r: r["test_accuracy"])
    lines += [arm_line(arm, values, 8) for arm, values in finals.items()]
    pairs = {arm: {r["seed"]: r for r in results["runs"] if r["arm"] == arm} for arm in ARMS}
    seeds = sorted(set(pairs["examples"]) & set(pairs["batches"]))
    if len(seeds) < 2:
        return "\n".join(lines)
    accuracy = None
    for measure, value, percent in (("final test accuracy", lambda r: r["test_accuracy"], True),
                                    ("first-epoch loss", lambda r: r["epoch_losses"][0], False),
                                    ("last-epoch loss", lambda r: r["epoch_losses"][-1], False)):  # fmt: skip
        c = stats.paired([value(pairs["examples"][s]) for s in seeds], [value(pairs["batches"][s]) for s in seeds])
        accuracy = c if percent else accuracy
        lines.append(f"  batches − examples, {measure}: {difference_text(c, percent)}, paired ({c.pairs} seeds), "
                     f"p = {c.p:.2g}" + (f", same result: {c.verdict}" if percent else ""))  # fmt: skip
    examples, batches = ([pairs[arm][s]["test_accuracy"] for s in seeds] for arm in ARMS)
    if accuracy.verdict == "undecided":
        need = stats.seeds_to_decide(examples, batches, is_paired=True)
        lines.append(f"  at the measured spread of the differences, {stats.decide_phrase(need, 'paired seeds')}")
    spread = stats.paired_spread(examples, batches)
    lines.append(f"  spread of the final test accuracy: examples {spread.first * 100:.2f} pp, batches "
                 f"{spread.second * 100:.2f} pp, ratio {spread.ratio:.2f}, "
                 f"Pitman-Morgan paired test p = {spread.p:.2g}")  # fmt: skip
    return "\n".join(lines)


NAME = "order-study"
HELP = "d2l-en's batch-level shuffle against the example shuffle (same weights, paired by seed)"


@dataclass(frozen=True)
class Config(ArmsConfig):
    backend: str | None = None  # the framework that trains both arms; None: the baseline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_arms_arguments(parser, Config())
    parser.add_argument("--backend", type=choice("backend", backends.frameworks),
                        help="the framework that trains both arms (default: the baseline, "
                             f"{backends.label(backends.baseline())})")


def run(config: Config) -> int:
    """`lenet-repro order-study`: run the missing (seed, arm) pairs, then print the comparison."""
    suffix = f"-limit{config.limit}" if config.limit else ""
    path = Path(config.out) / f"order-{config.recipe}-{config.dataset}{suffix}.json"
    print(summary(study(path, config.recipe, config.dataset, config.seeds, config.backend, config.limit)))
    return 0
