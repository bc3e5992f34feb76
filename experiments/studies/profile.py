"""`lenet-repro profile`: where a training step's time goes, per operation, in every framework, each read by the
framework's own profiler (torch.profiler, mx.profiler, jax.profiler, tf.profiler; cProfile for the NumPy reference),
through the backend's `profile_ops` (common.contract.Profiled).

Each backend and recipe is measured in a fresh process of its own environment, on one thread by default (so that an
operation's time is not split over a thread pool, and the shares add up), on the first batch of the real training
set: a few steps to warm up (compile, build primitives), then `steps` steps timed without the profiler and the
same number under it. The table gives each one's step time and its five biggest operations, as shares of the step
timed without the profiler (a profiler slows what it watches; an operation's own time it reports stays close to
the operation's); `covered` is the share all its operations account for: below 100%, the rest is the framework's
dispatch, Python and the profiler's own cost; above, operations that overlapped (XLA runs independent operations
of a step at once).

    lenet-repro profile [--steps 10] [--threads 1] [--recipes ...] [--backends ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from backends import label, load_backend, names, python_for
from common import spec
from common.arguments import names as chosen_names
from common.arguments import positive_int
from common.contract import Profiled
from common.results import write_atomic
from experiments.studies import child as child_process
from experiments.studies.bench import BACKEND_RECIPES

NAME = "profile"
HELP = "where one training step's time goes, per operation, in each framework (its own profiler)"
WARM_STEPS = 3
TOP = 5


@dataclass(frozen=True)
class Config:
    steps: int = 10  # training steps timed, and as many profiled
    threads: int = 1  # threads each framework runs on
    recipes: str | None = None  # comma-separated; None: the recipes `make bench-backends` times
    backends: str | None = None  # comma-separated; None: every registered backend
    out: str | None = None  # also write the Markdown table to this file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=positive_int, default=Config.steps, help="steps timed, and steps profiled")
    parser.add_argument("--threads", type=positive_int, default=Config.threads)
    parser.add_argument("--recipes", help=f"comma-separated, default: {','.join(r for r, _, _ in BACKEND_RECIPES)}")
    parser.add_argument("--backends", help="comma-separated, default: every registered backend")
    parser.add_argument("--out", help="also write the Markdown table to this file")


def child(payload: dict) -> int:
    """Profile one backend on one recipe in this process (the backend's environment): print the figures as JSON."""
    import json

    from experiments.running.runs import prepare_data

    backend = load_backend(payload["backend"])
    threads = backend.configure_threads()
    recipe = spec.get_recipe(payload["recipe"])
    batch = prepare_data(payload["dataset"], recipe, recipe.batch_size)  # the real training set's first batch
    x, y = batch.train_images[: recipe.batch_size], batch.train_labels[: recipe.batch_size]
    model = backend.build_model(recipe, "cpu", 0)
    for _ in range(WARM_STEPS):
        backend.train_step(model, x, y)
    steps = payload["steps"]
    start = time.perf_counter()
    for _ in range(steps):
        backend.train_step(model, x, y)
    seconds = time.perf_counter() - start
    figures = {"steps": steps, "threads": threads, "seconds": seconds, "ops": None}
    if isinstance(backend, Profiled):
        figures["ops"] = backend.profile_ops(model, x, y, steps)
    print(json.dumps(figures))
    return 0


def row(recipe: str, name: str, figures: dict) -> str:
    """One line of the table."""
    step_ms = figures["seconds"] / figures["steps"] * 1e3
    if figures["ops"] is None:
        return f"| `{recipe}` | {label(name)} | {step_ms:.1f} | no profiler (`profile_ops`) | |"
    wall = figures["seconds"]  # the same number of steps, unprofiled
    top = sorted(figures["ops"].items(), key=lambda item: -item[1])[:TOP]
    cells = "<br>".join(f"{share:.0%} `{op}`" for op, share in ((op, t / wall) for op, t in top))
    return f"| `{recipe}` | {label(name)} | {step_ms:.1f} | {cells} | {sum(figures['ops'].values()) / wall:.0%} |"


def header(threads: int) -> str:
    """The table's head."""
    return (f"| recipe | framework | ms a step ({threads} thread{'s' * (threads > 1)}) | the five biggest operations, "
            "share of the step | covered |\n|---|---|---|---|---|")  # fmt: skip


def run(config: Config) -> int:
    """`lenet-repro profile`: every backend on every recipe, one fresh process each; print (and write) the table."""
    recipes = {recipe: dataset for recipe, dataset, _ in BACKEND_RECIPES}
    chosen = chosen_names("recipe", config.recipes, spec.RECIPES) if config.recipes else list(recipes)
    backends = chosen_names("backend", config.backends, names())
    print(header(config.threads), flush=True)
    rows = []
    for recipe in chosen:
        dataset = recipes.get(recipe, spec.get_recipe(recipe).dataset)
        for name in backends:
            payload = {"backend": name, "recipe": recipe, "dataset": dataset, "steps": config.steps}
            rows.append(row(recipe, name, child_process.measure(python_for(name), NAME, payload, config.threads)))
            print(rows[-1], flush=True)
    if config.out:
        write_atomic(Path(config.out), "\n".join([header(config.threads), *rows, ""]).encode())
        print(f"wrote {config.out}")
    return 0
