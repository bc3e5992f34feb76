"""Where the difference comes from: one recipe and dataset, one source of variance varied at a time, each arm's runs
compared by their final test accuracy and by what they predicted on every test image.

The arms (ARMS), each of `--runs` runs (at least 10; the framework and defaults arms: `--runs` runs in all, each
seed's runs compared among themselves):

    rerun       everything the same (seed 0's weights and batch order, one thread): are the runs bitwise equal?
    threads     the same, alternately on one thread and on two (a convolution sums in another order)
    one-bit     seed 0's start with the lowest bit of one initial weight flipped (a different weight each run)
    order       seed 0's initial weights, run k's batch order
    weights     run k's initial weights, seed 0's batch order
    seed        run k's weights and order: a new seed
    framework   shared mode: every implementation from seed s's weights and batches (the frameworks' arithmetic)
    defaults    stock mode: every framework on its own defaults, its own generator and shuffle, seed s

Every arm but framework and defaults trains in the baseline framework (PyTorch), shared mode's weights and orders.
Each run records its final test accuracy and its 10,000 test predictions (common.results.encode_predictions); the
summary gives, per arm, the standard deviation of the final test accuracy with its 95% interval, the mean pairwise
difference, the churn (the share of test images on which two runs disagree, averaged over the pairs), the largest
per-class accuracy gap between two runs, and the test set's own floor, sqrt(p(1 − p) / n) (Jordan, ICLR 2024).

Results go to <out>/variance-<recipe>-<dataset>.json, written after every run (resumable, sealed).

    lenet-repro variance [--recipe seed-torch-fixed] [--dataset fashion-mnist] [--runs 10] [--arms a,b]
                         [--out docs/studies] [--limit N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import backends
from common import data, seal, spec
from common.arguments import choice, name_list, positive_int
from common.errors import UserError
from experiments.analysis import stats

ARMS = ("rerun", "threads", "one-bit", "order", "weights", "seed", "framework", "defaults")
IN_BASELINE = ARMS[:6]  # the arms the baseline framework trains alone
MIN_RUNS = 10

NAME = "variance"
HELP = "where the difference comes from: one source of variance at a time, with churn and per-class gaps"


@dataclass(frozen=True)
class Config:
    recipe: str = "seed-torch-fixed"
    dataset: str = "fashion-mnist"
    runs: int = MIN_RUNS
    arms: tuple[str, ...] = ARMS
    out: str = "docs/studies"
    limit: int | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", default=Config.recipe, type=choice("recipe", lambda: spec.RECIPES))
    parser.add_argument("--dataset", default=Config.dataset, type=choice("dataset", lambda: data.DATASETS))
    parser.add_argument("--runs", type=positive_int, default=MIN_RUNS,
                        help=f"runs per arm (at least {MIN_RUNS} for a published arm)")
    parser.add_argument("--arms", default=ARMS, type=name_list("arm", lambda: ARMS),
                        help=f"comma-separated, default all: {','.join(ARMS)}")
    parser.add_argument("--out", default=Config.out, help="folder of the study's JSON file")
    parser.add_argument("--limit", type=positive_int, help="the first N training and test examples only")


# ---- what each run is ----------------------------------------------------------------------------------------


def plan(arm: str, runs: int) -> list[dict[str, Any]]:
    """The runs of an arm, each as what sets it apart: its seed for the weights and for the order, the backend that
    trains it, its mode, its threads, the weight whose lowest bit is flipped."""
    base = backends.baseline()
    if arm == "rerun":
        return [{"weights": 0, "order": 0, "backend": base, "threads": 1} for _ in range(runs)]
    if arm == "threads":
        return [{"weights": 0, "order": 0, "backend": base, "threads": 1 + k % 2} for k in range(runs)]
    if arm == "one-bit":
        return [{"weights": 0, "order": 0, "backend": base, "threads": 1, "flip": k} for k in range(runs)]
    if arm == "order":
        return [{"weights": 0, "order": k, "backend": base, "threads": 1} for k in range(runs)]
    if arm == "weights":
        return [{"weights": k, "order": 0, "backend": base, "threads": 1} for k in range(runs)]
    if arm == "seed":
        return [{"weights": k, "order": k, "backend": base, "threads": 1} for k in range(runs)]
    names = backends.names() if arm == "framework" else backends.with_defaults()
    mode = "shared" if arm == "framework" else "stock"
    seeds = math.ceil(runs / len(names))
    return [{"weights": s, "order": s, "backend": name, "threads": 1, "mode": mode, "group": s}
            for s in range(seeds) for name in names]  # fmt: skip


def flipped_index(weights: dict[str, np.ndarray], k: int) -> tuple[str, int]:
    """The k-th weight whose lowest bit the one-bit arm flips: spread over every parameter tensor, a fixed stride
    apart, so that each run moves another weight (a deterministic choice: the study is repeatable)."""
    names = sorted(weights)
    name = names[k % len(names)]
    size = weights[name].size
    return name, (k // len(names) * 7919 + 13) % size


def flip_lowest_bit(weights: dict[str, np.ndarray], name: str, index: int) -> dict[str, np.ndarray]:
    out = {k: v.copy() for k, v in weights.items()}
    flat = out[name].reshape(-1).view(np.uint32)
    flat[index] ^= np.uint32(1)
    return out


def train_run(recipe_name: str, dataset: str, what: dict[str, Any], limit: int | None) -> dict[str, Any]:
    """Train one run of the study in this process (its backend loaded here, or driven in its own environment) and
    test it: final test accuracy and loss, and its predictions on every test image."""
    from backends import load_backend
    from common.batches import epoch_order
    from common.init import initial_weights
    from common.results import encode_predictions
    from common.train import predict, training_order
    from experiments.running.runs import prepare_data
    from experiments.studies.arms import train_and_test

    recipe = spec.get_recipe(recipe_name, {"init": "stock"} if what.get("mode") == "stock" else None)
    backend = load_backend(what["backend"])
    model = backend.build_model(recipe, "cpu", seed=what["weights"])
    extra: dict[str, Any] = {}
    if what.get("mode") != "stock":
        weights = initial_weights(recipe, what["weights"])
        if "flip" in what:
            name, index = flipped_index(weights, what["flip"])
            weights = flip_lowest_bit(weights, name, index)
            extra["flipped"] = f"{name}[{index}]"
        backend.set_weights(model, weights)
    prepared = prepare_data(dataset, recipe, limit)
    n = len(prepared.train_labels)
    if what.get("mode") == "stock":
        order = lambda epoch: training_order(backend, recipe, "stock", what["order"], epoch, n)  # noqa: E731
    else:
        order = lambda epoch: epoch_order(what["order"], epoch, n, recipe.shuffle)  # noqa: E731
    outcome = train_and_test(backend, model, prepared, recipe.epochs, order)
    predictions = predict(backend, model, prepared.test_images)
    return {**outcome, **extra, "predictions": encode_predictions(predictions)}


def run_study(path: Path, config: Config) -> dict[str, Any]:
    """Train every planned run not yet in `path`, arm by arm; the file is written after each run."""
    header = {"recipe": config.recipe, "dataset": config.dataset, "limit": config.limit, "runs": []}
    results = seal.read_json(path, "study file") if path.exists() else header
    for arm in config.arms:
        for k, what in enumerate(plan(arm, config.runs)):
            if any(r["arm"] == arm and r["k"] == k for r in results["runs"]):
                continue
            result = run_child(config, what)
            results["runs"].append({"arm": arm, "k": k, **what, **result})
            seal.write_json(path, results)
            print(f"{arm} {k} ({what['backend']}): {result['test_accuracy']:.4f}", flush=True)
    return results


def run_child(config: Config, what: dict[str, Any]) -> dict[str, Any]:
    """One run in a fresh process of its backend's environment, with its thread count (a framework reads its
    threads once, at import)."""
    from experiments.studies.child import measure

    payload = {"recipe": config.recipe, "dataset": config.dataset, "what": what, "limit": config.limit}
    return measure(backends.python_for(what["backend"]), "variance", payload, threads=what["threads"], timeout=7200)


def child(payload: dict[str, Any]) -> int:
    """One run of the study, in a fresh process: print its figures and predictions as JSON."""
    print(json.dumps(train_run(payload["recipe"], payload["dataset"], payload["what"], payload["limit"])))
    return 0


# ---- what the arms say ---------------------------------------------------------------------------------------


def pairs(runs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The pairs an arm compares: every two of its runs, or, where runs form groups (a seed's frameworks), every
    two of a group."""
    if any("group" in r for r in runs):
        groups: dict[int, list[dict[str, Any]]] = {}
        for r in runs:
            groups.setdefault(r["group"], []).append(r)
        return [p for members in groups.values() for p in itertools.combinations(members, 2)]
    return list(itertools.combinations(runs, 2))


def per_class(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The accuracy on each class the labels hold, in class order."""
    return np.array([(predictions[labels == c] == c).mean() for c in np.unique(labels)])


def arm_summary(runs: list[dict[str, Any]], labels: np.ndarray) -> dict[str, Any]:
    """An arm's figures: n, the std of the final test accuracy with its 95% interval, the mean pairwise |difference|,
    the churn, the largest per-class gap, whether every run predicted alike (bitwise equal predictions), and the
    test set's floor at the arm's mean accuracy."""
    from common.results import decode_predictions

    accuracies = [r["test_accuracy"] for r in runs]
    predicted = [decode_predictions(r["predictions"]) for r in runs]
    index = {id(r): i for i, r in enumerate(runs)}
    compared = [(index[id(a)], index[id(b)]) for a, b in pairs(runs)]
    churn = [float((predicted[i] != predicted[j]).mean()) for i, j in compared]
    gaps = [float(np.abs(per_class(predicted[i], labels) - per_class(predicted[j], labels)).max()) for i, j in compared]
    differences = [abs(accuracies[i] - accuracies[j]) for i, j in compared]
    low, high = stats.std_interval(accuracies)
    mean = float(np.mean(accuracies))
    return {"n": len(runs), "mean": mean, "std": float(np.std(accuracies, ddof=1)) if len(runs) > 1 else 0.0,
            "std_low": low, "std_high": high, "pairs": len(compared),
            "difference": float(np.mean(differences)) if differences else math.nan,
            "churn": float(np.mean(churn)) if churn else math.nan,
            "churn_max": float(np.max(churn)) if churn else math.nan,
            "class_gap": float(np.max(gaps)) if gaps else math.nan,
            "identical": all(np.array_equal(predicted[0], p) for p in predicted[1:]),
            "floor": math.sqrt(mean * (1 - mean) / len(labels))}  # fmt: skip


def summary_rows(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    labels = test_labels(results["dataset"], results.get("limit"))
    by_arm: dict[str, list[dict[str, Any]]] = {}
    for run in results["runs"]:
        by_arm.setdefault(run["arm"], []).append(run)
    return [(arm, arm_summary(by_arm[arm], labels)) for arm in ARMS if arm in by_arm]


def test_labels(dataset: str, limit: int | None) -> np.ndarray:
    labels = data.load_dataset(dataset).test_labels
    return labels[:limit] if limit else labels


def summary(results: dict[str, Any]) -> str:
    """The arms ranked by the standard deviation of their final test accuracy, with churn and per-class gaps."""
    rows = sorted(summary_rows(results), key=lambda row: -row[1]["std"])
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
        floor = max(s["floor"] for _, s in rows)
        images = len(test_labels(results["dataset"], results.get("limit")))
        lines.append(f"  the test set's floor (sqrt(p(1-p)/n), n = {images}): {floor * 100:.2f} pp")
    return "\n".join(lines)


def run(config: Config) -> int:
    if config.runs < 2:
        raise UserError("--runs must be at least 2: an arm's spread needs two runs")
    suffix = f"-limit{config.limit}" if config.limit else ""
    path = Path(config.out) / f"variance-{config.recipe}-{config.dataset}{suffix}.json"
    print(summary(run_study(path, config)))
    return 0
