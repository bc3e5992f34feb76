"""`make bench`: the blog post's scripts as written against the harness, same recipe, dataset and work, one run: the
harness in the script's own framework, and in every other framework (the fastest way to the script's result).

Each measurement runs in a fresh process (so imports, threads and memory are each side's own), and each
repetition starts the sides one further along (`rotated`), so that machine noise hits every side alike. Both
sides time the same number of optimiser steps of the same batch size, training only (the blog post's MXNet
script runs train_ch5 with its test pass switched off); one-time set-up (building datasets, resizing) is
timed apart. The machine's peak FLOP/s is taken from a float32 GEMM measured in the same run.

    lenet-repro bench [--reps 5] [--steps N]

`--backends` (`make bench-backends`) times every registered backend instead (the frameworks and the float64
NumPy reference), on the harness's own loop for the same recipes and steps, in fresh processes, interleaved, and
prints each one's seconds per epoch and its cost as a multiple of the fastest's, against its goal (the registry's
`speed_goal`); `--malloc-default` times the backends it names a second time with glibc's own malloc.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import time
from dataclasses import dataclass

import numpy as np

from backends import frameworks, info, label, names, python_for
from common import spec
from common.arguments import name_list, positive_int
from common.batches import epoch_order, steps_per_epoch
from common.memory import MALLOC_ENV
from experiments.running.seed_scripts import SCRIPTS
from experiments.studies import child as child_process

TRAIN_EXAMPLES = 60_000


@dataclass(frozen=True)
class Pair:
    """One comparison: a seed script and the harness on the same recipe, dataset and backend."""

    recipe: str
    dataset: str
    backend: str
    seed_module: str
    target: float  # the speed-up of the harness in the script's own framework that the project promises
    fastest_target: float = 0.0  # the speed-up of the harness's fastest framework on the same recipe
    steps: int = 0  # steps timed by default (about the same seconds for each script)


# Each seed script against the harness on its own recipe, dataset and framework (the spec's script_backend), and
# against the harness's fastest framework: (goal in the script's framework, goal for the fastest, steps timed).
TARGETS = {"seed-torch": (3.0, 4.5, 600), "seed-mxnet": (1.5, 4.0, 30)}
PAIRS = tuple(Pair(name, spec.get_recipe(name).dataset, str(spec.get_recipe(name).script_backend), SCRIPTS[name],
                   *TARGETS[name]) for name in SCRIPTS)  # fmt: skip
# --backends: (recipe, dataset, steps timed) for every registered backend side by side
BACKEND_RECIPES = (("seed-torch-fixed", "mnist", 200), ("d2l", "mnist", 40), ("seed-mxnet", "fashion-mnist", 4))


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def harness_side(pair: Pair, steps: int) -> dict:
    """Time `steps` training steps of the harness (the same train_epoch that real runs use)."""
    from backends import load_backend
    from common.results import RunKey
    from common.train import train_epoch
    from experiments.running.runs import prepare_data, start_model

    start = time.perf_counter()
    recipe = spec.get_recipe(pair.recipe)
    backend = load_backend(pair.backend)
    threads = backend.configure_threads()
    prepared = prepare_data(pair.dataset, recipe, None)  # the whole dataset, decoded and preprocessed once
    model = start_model(backend, RunKey(pair.backend, pair.dataset, pair.recipe, 0, "shared"), recipe, "cpu")
    order = epoch_order(0, 0, len(prepared.train_labels))[: steps * recipe.batch_size]
    # The first calls build oneDNN primitives, Gluon's cached graph, or compile XLA's step (JAX's jit): timed apart.
    warm = order[: 2 * recipe.batch_size]
    warm_start = time.perf_counter()
    train_epoch(backend, model, prepared.train_images, prepared.train_labels, warm)
    setup = time.perf_counter() - start
    warmup = time.perf_counter() - warm_start
    outcome = train_epoch(backend, model, prepared.train_images, prepared.train_labels, order)
    return {"seconds": outcome.seconds, "steps": len(outcome.step_losses), "examples": outcome.examples,
            "setup_seconds": setup, "warmup_seconds": warmup, "threads": threads,
            "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def seed_side(pair: Pair, steps: int) -> dict:
    """Time `steps` training steps of the blog post's script, as written."""
    import importlib

    module = importlib.import_module(pair.seed_module)
    result = module.run(epochs=1, max_steps=steps, quiet=True, seed=0, evaluate=False)  # the training steps alone
    return {"seconds": result["seconds"], "steps": result["steps"], "examples": result["examples"],
            "setup_seconds": result["setup_seconds"], "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def measure(side: str, pair: Pair, steps: int, env: dict[str, str] | None = None) -> dict:
    """One measurement in a fresh process (with `env` added to its environment)."""
    payload = {"side": side, "recipe": pair.recipe, "dataset": pair.dataset, "backend": pair.backend,
               "seed_module": pair.seed_module, "steps": steps}  # fmt: skip
    return child_process.measure(python_for(pair.backend), "bench", payload, timeout=600, env=env)


def gemm_peak_flops(size: int = 2048, repeats: int = 5) -> float:
    """Best float32 GEMM rate of this machine (NumPy's BLAS on every core), FLOP/s."""
    rng = np.random.default_rng(0)
    a, b = rng.random((size, size), dtype=np.float32), rng.random((size, size), dtype=np.float32)
    a @ b  # warm-up
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def medians(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """For each side, the median of every figure over its repetitions."""
    return {side: {key: statistics.median(r[key] for r in results) for key in results[0]}
            for side, results in runs.items()}  # fmt: skip


def rotated(sides: list[str], rep: int) -> list[str]:
    """The sides in the order repetition `rep` measures them: each repetition starts one further along."""
    shift = rep % len(sides)
    return sides[shift:] + sides[:shift]


def epoch_seconds(figures: dict, steps_a_epoch: int) -> float:
    """Seconds an epoch of `steps_a_epoch` steps takes at a measurement's seconds per step."""
    return figures["seconds"] / figures["steps"] * steps_a_epoch


def compare(pair: Pair, steps: int, reps: int) -> dict:
    """Interleaved repetitions of the blog post's script, the harness in its framework and the harness in every other
    framework, rotating the order; medians by side ("seed", "harness", then each other framework's name)."""
    others = [name for name in frameworks() if name != pair.backend]
    sides = ["seed", "harness", *others]
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for rep in range(reps):
        for side in rotated(sides, rep):
            if side in others:
                runs[side].append(measure("harness", dataclasses.replace(pair, backend=side), steps))
            else:
                runs[side].append(measure(side, pair, steps))
    return medians(runs)


DEFAULT_MALLOC = " (glibc's malloc)"  # the side of a backend timed with LENET_REPRO_MALLOC=default


def compare_backends(recipe: str, dataset: str, steps: int, reps: int, malloc_default: tuple[str, ...] = ()
                     ) -> dict[str, dict]:  # fmt: skip
    """The harness's training steps for each backend, and each of `malloc_default` again with glibc's own malloc
    (common/memory.py), fresh processes, rotating the order; medians."""
    timed = names() + [name + DEFAULT_MALLOC for name in malloc_default]
    runs: dict[str, list[dict]] = {name: [] for name in timed}
    for rep in range(reps):
        for side in rotated(timed, rep):
            name = side.removesuffix(DEFAULT_MALLOC)
            env = {MALLOC_ENV: "default"} if side != name else None
            runs[side].append(measure("harness", Pair(recipe, dataset, name, "", 0.0), steps, env))
    return medians(runs)


def side_label(side: str) -> str:
    """A backend's label, or its label and glibc's malloc for its side timed without freed memory kept."""
    name = side.removesuffix(DEFAULT_MALLOC)
    return label(name) + side[len(name):]


def backend_lines(recipe_name: str, dataset: str, result: dict[str, dict], peak: float) -> list[str]:
    """What `make bench-backends` prints for one recipe."""
    recipe = spec.get_recipe(recipe_name)
    per_epoch_steps = steps_per_epoch(TRAIN_EXAMPLES, recipe.batch_size, recipe.last_batch)
    training_flops = spec.flops_per_example(recipe)[1]
    steps = int(next(iter(result.values()))["steps"])
    lines = [f"{recipe_name} on {dataset}, {steps} steps of {recipe.batch_size}, median of the repetitions:"]
    epoch = {}
    for name, r in result.items():
        epoch[name] = epoch_seconds(r, per_epoch_steps)
        rate = r["examples"] / r["seconds"]
        lines.append(f"  {side_label(name):<26} {epoch[name]:8.1f} s/epoch  {rate:9.0f} examples/s  "
                     f"{r['threads']:.0f} threads  {training_flops * rate / peak:6.1%} of peak FLOP/s  "
                     f"first 2 steps (compile, warm-up) {r['warmup_seconds']:5.2f} s")  # fmt: skip
    fastest = min((name for name in epoch if not name.endswith(DEFAULT_MALLOC)), key=epoch.__getitem__)
    for name in epoch:
        ratio, goal = epoch[name] / epoch[fastest], info(name).speed_goal if name in names() else None
        verdict = "" if goal is None else f" (goal ≤ {goal:.2f}x: {'meets' if ratio <= goal else 'BELOW'})"
        lines.append(f"  {side_label(name)} takes {ratio:.2f}x the fastest's time ({label(fastest)}){verdict}")
    return lines


def report_lines(pair: Pair, result: dict, peak: float) -> list[str]:
    """What `make bench` prints for one pair."""
    recipe = spec.get_recipe(pair.recipe)
    per_epoch_steps = steps_per_epoch(TRAIN_EXAMPLES, recipe.batch_size, recipe.last_batch)
    training_flops = spec.flops_per_example(recipe)[1]
    lines = [f"{pair.recipe} on {pair.dataset} ({pair.backend}), {int(result['seed']['steps'])} steps of "
             f"{recipe.batch_size}, median of the repetitions:"]  # fmt: skip
    for side, shown in (("seed", "seed script"), ("harness", "harness")):
        r = result[side]
        rate = r["examples"] / r["seconds"]
        lines.append(
            f"  {shown:<12} {epoch_seconds(r, per_epoch_steps):8.1f} s/epoch  {rate:9.0f} examples/s  "
            f"peak memory {r['peak_rss_mb']:6.0f} MB  set-up {r['setup_seconds']:5.1f} s  "
            f"{training_flops * rate / peak:6.1%} of peak FLOP/s"
        )
    speedup = result["seed"]["seconds"] / result["harness"]["seconds"]
    verdict = "meets" if speedup >= pair.target else "BELOW"
    lines.append(f"  {pair.recipe}: speedup {speedup:.1f}x in {label(pair.backend)} (goal ≥ {pair.target:.1f}x, "
                 f"docs/speed.md: {verdict})")  # fmt: skip
    harnesses = {pair.backend if side == "harness" else side: r for side, r in result.items() if side != "seed"}
    epochs = {name: epoch_seconds(r, per_epoch_steps) for name, r in harnesses.items()}
    lines.append("  the harness in each framework: " + ", ".join(f"{label(name)} {seconds:.1f} s/epoch"
                                                               for name, seconds in epochs.items()))  # fmt: skip
    fastest = min(epochs, key=epochs.__getitem__)
    fastest_speedup = epoch_seconds(result["seed"], per_epoch_steps) / epochs[fastest]
    verdict = "meets" if fastest_speedup >= pair.fastest_target else "BELOW"
    lines.append(f"  {pair.recipe}: fastest framework {label(fastest)}, {fastest_speedup:.1f}x the seed script "
                 f"(goal ≥ {pair.fastest_target:.1f}x, docs/speed.md: {verdict})")  # fmt: skip
    return lines


NAME = "bench"
HELP = "time the blog post's scripts against the harness, or the backends (--backends), side by side in one run"


@dataclass(frozen=True)
class Config:
    reps: int = 5  # interleaved repetitions of each side; medians are reported
    backends: bool = False  # every registered backend side by side, instead of the blog post's scripts
    steps: int | None = None  # training steps timed per side; None: each script's own
    malloc_default: tuple[str, ...] = ()  # with --backends: these backends also timed with glibc's own malloc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reps", type=positive_int, default=Config.reps)
    parser.add_argument("--backends", action="store_true", help="time every registered backend side by side")
    parser.add_argument("--steps", type=positive_int,
                        help="training steps timed per side (default: each script's own, about equal seconds)")
    parser.add_argument("--malloc-default", type=name_list("backend", names), default=(),
                        help="with --backends: also time these backends with glibc's own malloc, which gives freed "
                             "memory back (LENET_REPRO_MALLOC=default; common/memory.py)")


def child(payload: dict) -> int:
    """One side of one measurement, in a fresh process of the backend's environment: print its figures as JSON."""
    pair = Pair(payload["recipe"], payload["dataset"], payload["backend"], payload["seed_module"], 0.0)
    side = seed_side if payload["side"] == "seed" else harness_side
    print(json.dumps(side(pair, payload["steps"])))
    return 0


def run(config: Config) -> int:
    """`lenet-repro bench`: the blog post's scripts against the harness, or (--backends) every backend."""
    started = time.perf_counter()
    peak = gemm_peak_flops()
    print(f"machine: {os.cpu_count()} cores; float32 GEMM peak {peak / 1e9:.1f} GFLOP/s (NumPy, 2048x2048)")
    if config.backends:
        for recipe, dataset, steps in BACKEND_RECIPES:
            result = compare_backends(recipe, dataset, steps, config.reps, config.malloc_default)
            for line in backend_lines(recipe, dataset, result, peak):
                print(line, flush=True)
        print(f"bench finished in {time.perf_counter() - started:.0f} s")
        return 0
    for pair in PAIRS:
        for line in report_lines(pair, compare(pair, config.steps or pair.steps, config.reps), peak):
            print(line, flush=True)
    print(f"bench finished in {time.perf_counter() - started:.0f} s")
    return 0

