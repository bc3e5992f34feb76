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

Results go to <out>/variance-<recipe>-<dataset>.json, written after every run (resumable, sealed); by default
<out> is the published results' variance/ folder, which the report reads (its section "Where the difference comes
from", a table and a plot per recipe and dataset), as it reads the oracle's figures.

    lenet-repro variance [--recipe seed-torch-fixed] [--dataset fashion-mnist] [--runs 10] [--arms a,b]
                         [--out docs/results/variance] [--limit N]
"""

from __future__ import annotations

import argparse
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
from experiments.analysis.variance import ARMS as SOURCES
from experiments.analysis.variance import study_file, summary

ARMS = tuple(SOURCES)  # rerun, threads, one-bit, order, weights, seed, framework, defaults
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
    out: str = "docs/results/variance"
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


def run(config: Config) -> int:
    if config.runs < 2:
        raise UserError("--runs must be at least 2: an arm's spread needs two runs")
    path = Path(config.out) / study_file(config.recipe, config.dataset, config.limit)
    print(summary(run_study(path, config)))
    return 0
