"""`lenet-repro`: one command line for every job (the Make targets call it). `lenet-repro --help` lists every
command, each with its own `--help`; the main ones:

    lenet-repro run --backend NAME [--recipes a,b] [--datasets ...] [--seeds N] [--epochs E] [--limit N]
                    [--results DIR] [--device auto|cpu|gpu] [--mode shared|native] [--threads T] [--workers N]
                    [--ray-address HOST:PORT]
    lenet-repro demo [--results DIR]           the three findings, trained live in a few minutes (demo.html, demo.json)
    lenet-repro compare [--results DIR] [--mode shared|native|stock] [--explorer]
    lenet-repro layers [RECIPE ...] [--backend spec|NAME]
    lenet-repro backends                       the registered backends (built in and plug-ins)
    lenet-repro conformance [--backend NAME]   the conformance suite against one or every backend
    lenet-repro data provision|verify|summary [DATASET ...]
    lenet-repro oracle [--results DIR]         each framework against the float64 reference
    lenet-repro bench [--backends]             speed, side by side in one run
    lenet-repro profile, bench-grid            where a step's time goes; the grid's throughput
    lenet-repro docs [--check]                 README.md and docs/*.md rendered from docs/src/, figures from records
    lenet-repro timings [--measure ...]        how long the README's commands take (docs/timings.json)
    lenet-repro notebook ipynb|html|check      the teaching notebook
    lenet-repro handout                        the one-page handout, printable (build/handout.html)
    lenet-repro explorer [--results DIR]       every run in one self-contained page, offline (build/explorer.html)
    lenet-repro init-study [--seeds N] ...     the crossed initialisation study
    lenet-repro init-weights [--seeds N] ...   the initial weights of each generator, beyond their marginals
    lenet-repro order-study [--seeds N] ...    d2l-en's batch-level shuffle against the example shuffle
    lenet-repro verify [--full] [--runs ...]   re-run a sample of the published runs here: how close do they land?

Backend names come from the registry (backends/__init__.py), plug-ins included; `script` runs the blog post's own
scripts. `python -m experiments ...` is the same command. Every command has `--help`; a bad argument is one
line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable

import backends
from common import data, spec
from common.arguments import choice, names, positive_int
from common.errors import UserError, run_cli
from common.results import MODES, RunKey, RunStore, existing_store, variant_name
from experiments.commands import job_modules

DEVICES = ("auto", "cpu", "gpu")
PROG = "lenet-repro"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one UserError line instead of usage text."""

    def error(self, message: str) -> None:  # type: ignore[override]
        command = self.prog.removeprefix(PROG).strip()
        raise UserError(f"{message} (see `{PROG} {command + ' ' if command else ''}--help`)")


def _ray_address(text: str) -> str:
    from experiments.running.ray_executor import host_port

    host_port(text)  # a UserError (one line) for a malformed address
    return text


def run_backends() -> list[str]:
    """What `run --backend` takes: every registry entry, the blog post's scripts included."""
    return backends.run_names()


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", required=True, type=choice("backend", run_backends),
                        help=f"a registry entry: {', '.join(backends.run_names())} (`lenet-repro backends` "
                        "says what each is)")  # fmt: skip
    parser.add_argument("--epochs", type=positive_int, help="override every recipe's number of epochs")
    parser.add_argument("--limit", type=positive_int, help="use only the first N training and N test examples")
    parser.add_argument("--results", default="results", help="results directory")
    parser.add_argument("--device", default="auto", type=choice("device", lambda: DEVICES))
    parser.add_argument("--mode", type=choice("mode", lambda: MODES),
                        help="default: shared for the backends, native for script (the only mode it has)")
    parser.add_argument("--threads", type=positive_int,
                        help="threads per run (default: every core; with Ray: cores / workers, 1 on a cluster)")


def build_parser(jobs: bool = True) -> argparse.ArgumentParser:
    """The whole command line; without `jobs`, only the commands defined here (what `main` builds for them: a run's
    `run-one` child starts without importing every study)."""
    parser = _Parser(prog=PROG, description="lenet-repro: one LeNet spec, trained and compared across frameworks",
                     epilog="Each command has its own --help.")  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    run = commands.add_parser("run", help="train recipes x datasets x seeds with one backend (resumable)")
    _add_run_options(run)
    run.add_argument("--recipes", help=f"comma-separated, default all: {','.join(spec.RECIPES)}")
    run.add_argument("--datasets", help=f"comma-separated, default all: {','.join(data.DATASETS)}")
    run.add_argument("--seeds", type=positive_int, default=1, help="number of seeds (0..N-1)")
    run.add_argument("--workers", type=positive_int,
                     help="run up to N runs at once as Ray tasks (a local Ray instance unless --ray-address)")
    run.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS") or None, type=_ray_address,
                     help="an existing Ray cluster, host:port or 'auto' (default: $RAY_ADDRESS)")

    one = commands.add_parser("run-one", help="train one run in this process (what `run` starts for each run)")
    _add_run_options(one)
    one.add_argument("--recipe", required=True, type=choice("recipe", lambda: spec.RECIPES))
    one.add_argument("--dataset", required=True, type=choice("dataset", lambda: data.DATASETS))
    one.add_argument("--seed", type=int, default=0)
    one.add_argument("--locked", action="store_true", help=argparse.SUPPRESS)  # the driver holds the run's lock
    # a Ray task holds the trainer's lock and hands it down as an open file; --where: the task's node, as JSON
    one.add_argument("--trainer-locked", action="store_true", help=argparse.SUPPRESS)
    one.add_argument("--where", type=json.loads, help=argparse.SUPPRESS)

    compare = commands.add_parser("compare", help="build report.md, report.csv and plots from existing runs")
    compare.add_argument("--results", default="results")
    compare.add_argument("--mode", default=None, type=choice("mode", lambda: MODES),
                         help="default: every mode present")
    compare.add_argument("--explorer", action="store_true",
                         help="also write explorer.html beside the report: every run in one page (`explorer`)")
    compare.add_argument("--accept-changed", action="store_true",
                         help="seal again, as they are now, the records whose content no longer matches their seal "
                              "(or that have none), after checking them by hand: they enter the tables again")

    layers = commands.add_parser("layers", help="print recipes' per-layer tables (shapes, parameters, FLOPs)")
    layers.add_argument("recipes", nargs="*", help="default: all recipes")
    layers.add_argument("--backend", default="spec", type=choice("table source", lambda: ["spec", *backends.names()]),
                        help="spec (default) or a registered backend, whose built network is measured")

    listing = commands.add_parser("backends", help="list the registered backends (built in and plug-ins)")
    listing.add_argument("--frameworks", action="store_true",
                         help="only the names of the frameworks under test, comma-separated (for scripts)")

    conformance = commands.add_parser("conformance", help="run the backend conformance suite (pytest)")
    conformance.add_argument("--backend", action="append", type=choice("backend", backends.run_names),
                             help="a registry entry (repeatable; default: every one, the blog post's scripts included)")
    conformance.add_argument("--fast", action="store_true",
                             help="leave out the slow items (the costly ones on every recipe but d2l, the 50 SGD "
                             "steps, fresh-interpreter imports, mypy)")  # fmt: skip
    conformance.add_argument("--module", help="check a module no registry lists (a backend under development): every "
                             "item's outcome, its declared EXPECTED_FAILURES reported as xfailed")  # fmt: skip
    conformance.add_argument("pytest_args", nargs=argparse.REMAINDER, help="passed on to pytest (after --)")

    for module in job_modules() if jobs else ():  # the data command, the notebook, the handout, every study
        module.add_arguments(commands.add_parser(module.NAME, help=module.HELP))
    return parser


def _mode(args: argparse.Namespace) -> str:
    """The run mode: as given (if the entry trains in it), else the entry's default (the registry's `modes`)."""
    mode = args.mode or backends.default_mode(args.backend)
    backends.check_mode(args.backend, mode)
    return mode


def run_grid(args: argparse.Namespace) -> int:
    """Every unfinished run, sequentially or on Ray (experiments.running.grid), then the side-by-side table."""
    from experiments.analysis.report import summary_table
    from experiments.running.executors import default_threads, make_executor
    from experiments.running.grid import RunSettings, run_keys
    store = RunStore(args.results)
    args.mode = _mode(args)
    recipes = backends.recipes_for(args.backend, spec.RECIPES)
    keys = [
        RunKey(args.backend, dataset, recipe, seed, args.mode, args.limit, args.epochs)
        for recipe in names("recipe", args.recipes, recipes)
        for dataset in names("dataset", args.datasets, data.DATASETS)
        for seed in range(args.seeds)
    ]
    settings = RunSettings(args.device, args.threads or default_threads(args.workers, args.ray_address))
    run_keys(keys, store, lambda: make_executor(store, settings, args.workers, args.ray_address))
    print(summary_table(store, variant_name(args.mode, args.limit, args.epochs)))
    return 0


def _stop(signum, frame):
    """SIGTERM, from a driver that stops: unwind, so that no temporary file is left behind."""
    raise SystemExit(128 + signum)


_children_get_the_default = False


def unwind_on_sigterm() -> None:
    """SIGTERM raises SystemExit in this process; a process forked from it gets SIGTERM's default back.

    A handler must not be inherited by forked children that run threads, such as the DataLoader workers of the
    seed's MXNet script (MXNet's threads, multiprocessing's resource sharer). The kernel hands a process-wide
    SIGTERM to any one of a process's threads, but Python runs the handler only on the main thread, and a worker
    whose main thread waits in a semaphore for its next task never runs it. Pool.terminate() then waits for that
    worker forever, and so the run never exits.
    """
    global _children_get_the_default
    signal.signal(signal.SIGTERM, _stop)
    if not _children_get_the_default:
        os.register_at_fork(after_in_child=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
        _children_get_the_default = True


def run_one(args: argparse.Namespace) -> int:
    """Train one run in this process, under its trainer's lock (taken first, before any framework is imported).

    With --locked (a driver's child) the driver's lock on the run was handed down as an open file, so the run
    stays locked for as long as this process lives, even if the driver dies; a run whose trainer's lock is held
    elsewhere exits with BUSY_EXIT and no message (the driver says it), and Ctrl-C or SIGTERM end it quietly
    (the driver says that too). Standing alone, it takes the driver's lock itself."""
    from common.results import BUSY_EXIT
    from experiments.running.runs import Progress, python_for_run, runs_here, train_run, use_threads

    key = RunKey(args.backend, args.dataset, args.recipe, args.seed, _mode(args), args.limit, args.epochs)
    if not runs_here(key):  # the same command in the interpreter of the run's environment (open files stay open)
        python = python_for_run(key)
        os.execv(python, [python, "-m", "experiments", *args.argv])
    unwind_on_sigterm()
    use_threads(args.threads)  # before the framework is imported
    store = RunStore(args.results)
    busy = f"{key.label()} is being trained by another process; run it again when that one ends"
    locks = []
    try:
        if not args.locked:
            locks.append(store.try_lock(key))
            if locks[-1] is None:
                raise UserError(busy)
        if not args.trainer_locked:
            locks.append(store.try_trainer_lock(key))
            if locks[-1] is None:
                if args.locked:
                    return BUSY_EXIT
                raise UserError(busy)
        record = train_run(key, store, args.device, Progress(key, key.spec().epochs), args.where)
    except KeyboardInterrupt:
        if not args.locked:
            raise
        return 130
    finally:
        for lock in reversed(locks):
            if lock is not None:
                lock.release()
    if record["status"] == "diverged":
        print(f"[{key.label()}] diverged at step {record['diverged_at_step']} (non-finite loss)", file=sys.stderr)
    return 0


def print_layers(args: argparse.Namespace) -> int:
    from backends.layers import framework_layer_rows

    for name in args.recipes or list(spec.RECIPES):
        recipe = spec.get_recipe(name)
        rows = spec.layer_rows(recipe) if args.backend == "spec" else framework_layer_rows(recipe, args.backend)
        print(spec.format_layer_table(rows, f"{recipe.name} ({args.backend}): {recipe.origin}"))
        print()
    return 0


def list_backends(args: argparse.Namespace) -> int:
    if args.frameworks:
        print(",".join(backends.frameworks()))
        return 0
    rows = [("name", "label", "role", "module", "framework packages", "environment", "from")]
    for entry in backends.registry().values():
        rows.append((entry.name, entry.label, entry.role, entry.module, ",".join(entry.packages) or "—",
                     entry.environment or "its recipe's framework's",
                     f"plug-in ({backends.ENTRY_POINT_GROUP})" if entry.plugin else "built in"))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def conformance(args: argparse.Namespace) -> int:
    """The conformance suite (backends/conformance), shipped in the package, run by pytest in a child process; with
    --module, on a module no registry lists (backends.conformance.check.check_backend)."""
    if args.module:
        from backends.conformance.check import check_backend

        results = check_backend(args.module, fast=args.fast)
        for item, outcome in results.items():
            print(f"{outcome:8} {item}")
        failed = [item for item, outcome in results.items() if outcome == "failed"]
        print(f"{len(results)} items, {len(failed)} failed", file=sys.stderr)
        return 1 if failed else 0
    names = args.backend or backends.run_names()
    extra = [arg for arg in args.pytest_args if arg != "--"]
    command = [sys.executable, "-m", "pytest", "--pyargs", "backends.conformance", "-p", "no:cacheprovider",
               *(["-m", "not slow"] if args.fast else []), *extra]  # fmt: skip
    env = {**os.environ, "LENET_REPRO_BACKENDS": ",".join(names)}
    print(f"conformance suite for {', '.join(names)}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    return subprocess.run(command, env=env).returncode


def _job(module) -> Callable[[argparse.Namespace], int]:
    """A declared command's run: its Config from the parsed options, the framework threads set before the job
    imports a framework, then run(config)."""

    def run(args: argparse.Namespace) -> int:
        from experiments.running.runs import use_threads
        from experiments.studies import configure

        config = configure(module.Config, args)
        use_threads(getattr(config, "threads", None))
        return module.run(config)

    return run


def _compare(args: argparse.Namespace) -> int:
    from experiments.analysis.report import Report, write_report

    store = existing_store(args.results)
    if args.accept_changed:
        store.accept_changed()
    report = Report.build(store, args.mode)  # one model of the records for the report and the explorer
    print(write_report(store, args.mode, report))
    if args.explorer:
        from experiments.explorer import write_page

        print(f"wrote {write_page(store, store.root / 'explorer.html', report)}")
    return 0


COMMANDS = {
    "run": run_grid,
    "run-one": run_one,
    "compare": _compare,
    "layers": print_layers,
    "backends": list_backends,
    "conformance": conformance,
}


def main(argv: list[str] | None = None) -> int:
    given = list(argv) if argv is not None else sys.argv[1:]
    args, unknown = build_parser(jobs=not given or given[0] not in COMMANDS).parse_known_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # as given: a command may hand itself on
    if unknown:  # named after the subcommand they were given to, not the top-level parser
        raise UserError(f"unrecognized arguments: {' '.join(unknown)} (see `{PROG} {args.command} --help`)")
    command = COMMANDS.get(args.command) or _job(next(m for m in job_modules() if m.NAME == args.command))
    return command(args) or 0


def entry() -> None:
    """The `lenet-repro` console script."""
    run_cli(main)
