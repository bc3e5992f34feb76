"""`make bench-grid`: how the cost of the publication grows with work, on this machine, measured in one run.

Two questions:

1. **Runs side by side on the grid.** The same runs (`--runs` seeds of one recipe and dataset, `--epochs` each) on a
   local Ray instance, once as one run at a time with every core's thread (`--workers 1 --threads N`) and once as N
   runs at once with one thread each (`--workers N --threads 1`): wall time (Ray's start included, as `make
   publish` sees it) and epochs per hour while training (runs at once / seconds an epoch, the runs' own records).
2. **Seeds batched in one process.** Where a framework can train several seeds in one process (the backend's
   optional `seeds_step`: jax.vmap in JAX, torch.func.vmap's grouped convolutions in PyTorch), 1, 2 and 4 seeds of
   the recipe at once on every core, against the backend's own training step (one seed): examples per second, all
   seeds together.

    lenet-repro bench-grid [--backend torch] [--recipe d2l] [--dataset mnist] [--runs 4] [--epochs 2] [--limit N]
                           [--steps 20] [--batched torch,jax]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from dataclasses import dataclass

import backends
from backends import baseline, frameworks, label, load_backend, python_for
from common import data, spec
from common.arguments import choice, names, positive_int
from common.contract import Batched
from common.results import RunKey, RunStore
from experiments.studies import child as child_process

NAME = "bench-grid"
HELP = "grid throughput (one run on every core against a run per core) and seeds batched in one process"
SEEDS_BATCHED = (1, 2, 4)
WARM_STEPS = 2


@dataclass(frozen=True)
class Config:
    backend: str | None = None  # the framework whose runs the grid trains; None: the registry's baseline
    recipe: str = "d2l"
    dataset: str = "mnist"
    runs: int = 4  # seeds trained in each grid setting
    epochs: int = 2  # epochs of each run (the training set, and a test pass, each)
    limit: int | None = None  # examples of each split the runs use; None: the whole dataset
    steps: int = 20  # training steps timed for each number of seeds batched
    batched: str | None = None  # frameworks timed (comma-separated): their own step, and their batched seeds where
    #                              they have seeds_step; None: every framework


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", type=choice("backend", backends.frameworks),
                        help="the framework the grid runs (default: the baseline, "
                             f"{backends.label(backends.baseline())})")  # fmt: skip
    parser.add_argument("--recipe", default=Config.recipe)
    parser.add_argument("--dataset", default=Config.dataset)
    parser.add_argument("--runs", type=positive_int, default=Config.runs, help="seeds trained in each grid setting")
    parser.add_argument("--epochs", type=positive_int, default=Config.epochs)
    parser.add_argument("--limit", type=positive_int, help="examples of each split the runs use (default: all)")
    parser.add_argument("--steps", type=positive_int, default=Config.steps, help="steps timed per number of seeds")
    parser.add_argument("--batched", help="frameworks timed: their own step, and their batched seeds where they "
                                          "can (default: every framework)")


def grid_setting(config: Config, workers: int, threads: int) -> dict:
    """Train the runs on a fresh local Ray instance with `workers` at once and `threads` each, in a scratch results
    directory; wall seconds and the runs' own epoch seconds."""
    from experiments.running.executors import make_executor
    from experiments.running.grid import RunSettings, run_keys

    with tempfile.TemporaryDirectory(prefix="bench-grid-") as scratch:
        store = RunStore(scratch)
        keys = [RunKey(config.backend, config.dataset, config.recipe, seed, "shared", config.limit, config.epochs)
                for seed in range(config.runs)]  # fmt: skip
        settings = RunSettings("cpu", threads)
        start = time.perf_counter()
        run_keys(keys, store, lambda: make_executor(store, settings, workers, None))
        wall = time.perf_counter() - start
        records = [store.load_record(key) for key in keys]
    epochs = [epoch["seconds"] for record in records for epoch in record["epochs"]]
    return {"workers": workers, "threads": threads, "wall": wall, "epochs": len(epochs),
            "epoch_seconds": sum(epochs) / len(epochs)}  # fmt: skip


def child(payload: dict) -> int:
    """Time `seeds_step` for 1, 2 and 4 seeds and the backend's own train_step, on the real training set's first
    batches, in this process (the backend's environment): print examples per second as JSON."""
    from experiments.running.runs import prepare_data

    backend = load_backend(payload["backend"])
    threads = backend.configure_threads()
    recipe = spec.get_recipe(payload["recipe"])
    n, steps = recipe.batch_size, payload["steps"]
    prepared = prepare_data(payload["dataset"], recipe, n * max(SEEDS_BATCHED))
    images, labels = prepared.train_images[: n * max(SEEDS_BATCHED)], prepared.train_labels[: n * max(SEEDS_BATCHED)]
    model = backend.build_model(recipe, "cpu", 0)
    rates: dict[str, float] = {"alone": _rate(lambda: backend.train_step(model, images[:n], labels[:n]), n, steps)}
    if isinstance(backend, Batched):
        for seeds in SEEDS_BATCHED:
            x = images[: seeds * n].reshape(seeds, n, *images.shape[1:])
            y = labels[: seeds * n].reshape(seeds, n)
            step = backend.seeds_step(recipe, seeds)
            rates[str(seeds)] = _rate(lambda: step(x, y), seeds * n, steps)  # noqa: B023 - called at once
    print(json.dumps({"threads": threads, "rates": rates}))
    return 0


def _rate(step, examples: int, steps: int) -> float:
    """Examples per second of `steps` calls of step(), after a warm-up."""
    for _ in range(WARM_STEPS):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return examples * steps / (time.perf_counter() - start)


def run(config: Config) -> int:
    """`lenet-repro bench-grid`: both settings of the grid, then the batched seeds; print what each gives."""
    config = dataclasses.replace(config, backend=config.backend or baseline())
    names("backend", config.backend, frameworks())
    names("recipe", config.recipe, spec.RECIPES)
    names("dataset", config.dataset, data.DATASETS)
    batched = names("framework", config.batched, frameworks())
    cores = len(os.sched_getaffinity(0))
    print(f"machine: {cores} cores; {config.runs} runs of {config.recipe} on {config.dataset} in "
          f"{label(config.backend)}, {config.epochs} epoch(s) each, on a local Ray instance:")  # fmt: skip
    settings = [grid_setting(config, 1, cores), grid_setting(config, cores, 1)] if cores > 1 else [
        grid_setting(config, 1, 1)]  # fmt: skip
    for s in settings:
        s["rate"] = s["workers"] * 3600 / s["epoch_seconds"]  # epochs an hour while training
        print(f"  {s['workers']} run(s) at once, {s['threads']} thread(s) each: {s['epoch_seconds']:5.1f} s an epoch "
              f"(test pass included), {s['rate']:5.0f} epochs/hour while training; {s['wall']:4.0f} s for the "
              f"{s['epochs']} epochs with Ray's start, {s['epochs'] / s['wall'] * 3600:5.0f} epochs/hour",
              flush=True)  # fmt: skip
    if len(settings) == 2:
        better, other = sorted(settings, key=lambda s: -s["rate"])
        print(f"  best on {cores} cores: {better['workers']} run(s) at once with {better['threads']} thread(s) each, "
              f"{better['rate'] / other['rate']:.2f}x the other's epochs per hour while training")  # fmt: skip
    print(f"seeds of {config.recipe} batched in one process, every core, {config.steps} steps each "
          "(examples per second, all seeds together):")
    for name in batched:
        payload = {"backend": name, "recipe": config.recipe, "dataset": config.dataset, "steps": config.steps}
        result = child_process.measure(python_for(name), __name__.rpartition(".")[2], payload)
        rates = result["rates"]
        cells = [f"own step {rates['alone']:6.0f}"] + [f"{seeds} seed(s) {rates[str(seeds)]:6.0f} "
                                                       f"({rates[str(seeds)] / rates['alone']:.2f}x)"
                                                       for seeds in SEEDS_BATCHED if str(seeds) in rates]  # fmt: skip
        if len(cells) == 1:
            cells.append("no batched step (seeds_step): one seed per process")
        print(f"  {label(name):<12} " + ", ".join(cells), flush=True)
    return 0
