"""The thin command line over experiments.runs and experiments.report (the Make targets call it).

    python -m experiments run --backend torch|mxnet|numpy|script [--recipes a,b] [--datasets ...] [--seeds N]
                              [--epochs E] [--limit N] [--results DIR] [--device auto|cpu|gpu]
                              [--mode shared|native] [--threads T] [--workers N] [--ray-address HOST:PORT]
    (--workers: up to N runs at once on a local Ray instance; --ray-address, or RAY_ADDRESS: an existing cluster)
    (backend 'script': the seed's own scripts, for seed-torch and seed-mxnet, always in native mode)
    python -m experiments compare [--results DIR] [--mode shared|native]
    python -m experiments layers RECIPE [--backend spec|torch|mxnet|numpy]
"""

from __future__ import annotations

import argparse
import os
import sys

from common import data, spec
from common.errors import UserError, unknown_name
from common.results import MODES, SCRIPT_BACKEND, RunKey, RunStore, variant_name

BACKEND_NAMES = ("torch", "mxnet", "numpy", SCRIPT_BACKEND)
DEVICES = ("auto", "cpu", "gpu")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one UserError line instead of usage text."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see `python -m experiments {self.prog.split()[-1]} --help`)")


def _names(kind: str, text: str | None, valid) -> list[str]:
    """Split a comma-separated list and check every name (empty: all valid names)."""
    if not text:
        return list(valid)
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in valid:
            raise unknown_name(kind, name, valid)
    return names


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _ray_address(text: str) -> str:
    from experiments.grid import host_port

    host_port(text)  # a UserError (one line) for a malformed address
    return text


def _choice(kind: str, valid):
    def check(text: str) -> str:
        if text not in valid:
            raise unknown_name(kind, text, valid)
        return text

    return check


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", required=True, type=_choice("backend", BACKEND_NAMES))
    parser.add_argument("--epochs", type=positive_int, help="override every recipe's number of epochs")
    parser.add_argument("--limit", type=positive_int, help="use only the first N training and N test examples")
    parser.add_argument("--results", default="results", help="results directory")
    parser.add_argument("--device", default="auto", type=_choice("device", DEVICES))
    parser.add_argument("--mode", type=_choice("mode", MODES),
                        help="default: shared for the backends, native for script (the only mode it has)")
    parser.add_argument("--threads", type=positive_int,
                        help="threads per run (default: every core; with Ray: cores / workers, 1 on a cluster)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m experiments", description="lenet-repro: train and compare LeNet recipes")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="train recipes x datasets x seeds with one backend (resumable)")
    _add_run_options(run)
    run.add_argument("--recipes", help=f"comma-separated, default all: {','.join(spec.RECIPES)}")
    run.add_argument("--datasets", help=f"comma-separated, default all: {','.join(data.DATASETS)}")
    run.add_argument("--seeds", type=positive_int, default=1, help="number of seeds (0..N-1)")
    run.add_argument("--workers", type=positive_int,
                     help="run up to N runs at once as Ray tasks (a local Ray instance unless --ray-address)")
    run.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS") or None, type=_ray_address,
                     help="an existing Ray cluster, host:port or 'auto' (default: $RAY_ADDRESS)")

    one = commands.add_parser("run-one", help="train one run in this process (used by `run`)")
    _add_run_options(one)
    one.add_argument("--recipe", required=True, type=_choice("recipe", spec.RECIPES))
    one.add_argument("--dataset", required=True, type=_choice("dataset", data.DATASETS))
    one.add_argument("--seed", type=int, default=0)
    one.add_argument("--locked", action="store_true", help=argparse.SUPPRESS)  # the driver holds the run's lock

    compare = commands.add_parser("compare", help="build report.md, report.csv and plots from existing runs")
    compare.add_argument("--results", default="results")
    compare.add_argument("--mode", default=None, type=_choice("mode", MODES), help="default: every mode present")

    layers = commands.add_parser("layers", help="print a recipe's per-layer table")
    layers.add_argument("recipes", nargs="*", help="default: all recipes")
    layers.add_argument("--backend", default="spec", type=_choice("table source", ("spec", "torch", "mxnet", "numpy")))
    return parser


def _mode(args: argparse.Namespace) -> str:
    """The run mode: as given, else native for the seed's scripts and shared for the backends."""
    return args.mode or ("native" if args.backend == SCRIPT_BACKEND else "shared")


def run_grid(args: argparse.Namespace) -> int:
    """Every unfinished run, sequentially or on Ray (experiments.grid), then the side-by-side table of what exists."""
    from experiments.grid import RunSettings, default_threads, make_executor, run_keys
    from experiments.report import summary_table
    from experiments.seed_scripts import SCRIPTS

    store = RunStore(args.results)
    args.mode = _mode(args)
    recipes = SCRIPTS if args.backend == SCRIPT_BACKEND else spec.RECIPES
    keys = [
        RunKey(args.backend, dataset, recipe, seed, args.mode, args.limit, args.epochs)
        for recipe in _names("recipe", args.recipes, recipes)
        for dataset in _names("dataset", args.datasets, data.DATASETS)
        for seed in range(args.seeds)
    ]
    settings = RunSettings(args.device, args.threads or default_threads(args.workers, args.ray_address))
    run_keys(keys, store, lambda: make_executor(store, settings, args.workers, args.ray_address))
    print(summary_table(store, variant_name(args.mode, args.limit, args.epochs)))
    return 0


def run_one(args: argparse.Namespace) -> int:
    from experiments.runs import Progress, train_run, use_threads

    use_threads(args.threads)  # before the framework is imported
    key = RunKey(args.backend, args.dataset, args.recipe, args.seed, _mode(args), args.limit, args.epochs)
    store = RunStore(args.results)
    lock = None if args.locked else store.try_lock(key)
    if not args.locked and lock is None:
        raise UserError(f"{key.label()} is being trained by another process; run it again when that one ends")
    try:
        record = train_run(key, store, args.device, Progress(key, key.spec().epochs))
    finally:
        if lock is not None:
            lock.release()
    if record["status"] == "diverged":
        print(f"[{key.label()}] diverged at step {record['diverged_at_step']} (non-finite loss)", file=sys.stderr)
    return 0


def print_layers(args: argparse.Namespace) -> int:
    from experiments.layers import framework_layer_rows

    for name in args.recipes or list(spec.RECIPES):
        recipe = spec.get_recipe(name)
        rows = spec.layer_rows(recipe) if args.backend == "spec" else framework_layer_rows(recipe, args.backend)
        print(spec.format_layer_table(rows, f"{recipe.name} ({args.backend}): {recipe.origin}"))
        print()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return run_grid(args)
    if args.command == "run-one":
        return run_one(args)
    if args.command == "compare":
        from experiments.report import write_report

        print(write_report(RunStore(args.results), args.mode))
        return 0
    return print_layers(args)
