"""`lenet-repro verify` (`make verify`): re-run a sample of the committed runs on this machine and say, run by run,
how close they land: the first step whose loss differs, the largest relative step-loss difference, the test
accuracy committed and now, and a verdict (identical / float drift / different result), naming both machines.

Quick mode (the default) replays the first `--steps` steps of seed 0 of every published recipe, dataset and
backend (shared mode, the runs behind the main table); `--steps 0` replays the whole first epoch and compares the
test accuracy after it. Full mode (`--full`) trains chosen runs to the end in a temporary directory (nothing
committed is touched). Each run is replayed with the thread count its record names, in a child process per
thread count (MXNet, JAX and TensorFlow fix their threads when imported).

Thresholds, from the measured drift (docs/verify.md):
* steps: the same code, weights and batches on another processor or with another thread count differ by about
  one float32 rounding per step at first: at most 2.0e-7 relative within the first 20 steps of every published
  group (docs/verify.md); two frameworks, 2.5e-6 at most. Another seed (other weights and batches) moves the
  first 20 step losses apart by 9.4e-4 at the least (seed-torch on Fashion-MNIST, whose lr 0.001 and softmax
  head barely move the loss) and by 1e-2 to 0.15 on the other recipes. 'different result' is a relative
  difference above STEP_TOLERANCE (1e-5): 50 times the cross-machine drift, 4 times the cross-framework one,
  and 90 times below the smallest change a different seed makes.
* full runs: float drift grows chaotically over thousands of steps (0.15 relative at the worst step of a whole
  run is float drift), so the verdict rests on the final test accuracy: a run lands as a re-run with another seed
  would, so 'different result' is a difference larger than ACC_SIGMAS standard deviations of the committed seeds
  of the same recipe, dataset and backend (at least ACC_FLOOR).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import subprocess
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import backends
from common import machine, seal
from common.arguments import non_negative_int
from common.errors import UserError
from common.results import DamagedFile, RunKey, RunStore, read_record, warn, write_atomic
from experiments.running.runs import python_for_run
from experiments.studies import child as child_process

QUICK_STEPS = 20
STEP_TOLERANCE = 1e-5
ACC_SIGMAS = 4.0
ACC_FLOOR = 0.005
FULL_DEFAULT = ("shared/mnist/seed-torch-fixed/torch-seed0", "shared/mnist/d2l/torch-seed0")
MARK = "VERIFY "


@dataclass
class Outcome:
    """One replayed run, compared with its committed record."""

    run: str  # shared/mnist/seed-torch/torch-seed0
    threads: int
    steps: int
    first_diff: int | None  # 1-based step, None when every compared step is identical
    max_rel: float
    acc_then: float | None
    acc_now: float | None
    verdict: str
    tolerance: str
    made_on: str
    versions: str  # "" when versions and kernels are the record's, else e.g. "torch 2.14.0 -> 2.14.1"


def run_name(record: dict[str, Any]) -> str:
    return f"{record['mode']}/{record['dataset']}/{record['recipe']}/{record['backend']}-seed{record['seed']}"


def made_on(record: dict[str, Any]) -> str:
    """The machine a record names (its host where it names no processor), with what its kernels were."""
    meta = record.get("meta", {})
    note = backends.kernel_note(record["backend"], meta) if meta.get("machine") else None
    return machine.named(meta) + (f" ({note})" if note else "")


def published(results: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The complete full-length runs under results/ (shared and native), by the harness's backends."""
    from backends import names

    out = []
    for mode in ("shared", "native"):
        for path in sorted((results / mode).glob("*/*/*.json")):
            try:
                record = read_record(path)
            except (UserError, DamagedFile):
                continue
            wrong = seal.problem(record) if isinstance(record, dict) else "not a run record"
            if wrong:
                warn(f"run record {path}: {wrong}; left out")
                continue
            if (record.get("status") == "complete" and record.get("backend") in names() and record.get("limit") is None
                    and record.get("epochs_override") is None):  # fmt: skip
                out.append((path, record))
    return out


def quick_sample(records: list[tuple[Path, dict[str, Any]]]) -> list[tuple[Path, dict[str, Any]]]:
    """The lowest seed of every (recipe, dataset, backend) in shared mode."""
    chosen: dict[tuple[str, str, str], tuple[Path, dict[str, Any]]] = {}
    for path, record in records:
        if record["mode"] != "shared":
            continue
        group = (record["recipe"], record["dataset"], record["backend"])
        if group not in chosen or record["seed"] < chosen[group][1]["seed"]:
            chosen[group] = (path, record)
    return [chosen[g] for g in sorted(chosen)]


def seed_spread(records: list[tuple[Path, dict[str, Any]]], record: dict[str, Any]) -> tuple[float, int]:
    """(standard deviation of the final test accuracy, number of seeds) of the record's group."""
    accs = [r["epochs"][-1]["test_accuracy"] for _, r in records
            if (r["mode"], r["recipe"], r["dataset"], r["backend"])
            == (record["mode"], record["recipe"], record["dataset"], record["backend"])]  # fmt: skip
    return (float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0), len(accs)


def compare_steps(then: list[float | None], now: list[float]) -> tuple[int | None, float]:
    """(first differing step, 1-based, or None; largest relative difference) over the steps both have."""
    first, worst = None, 0.0
    for i, (a, b) in enumerate(zip(then, now, strict=False)):
        if a is None or not math.isfinite(b):
            return (first or i + 1), math.inf
        if a != b:
            first = first or i + 1
            worst = max(worst, abs(a - b) / max(abs(a), 1e-12))
    return first, worst


# ---- the child: replay runs with one thread count -----------------------------------------------------------


def replay(record: dict[str, Any], steps: int | None, full: bool) -> dict[str, Any]:
    """Train the record's run again here: its first `steps` steps (0/None: the first epoch), or all of it."""
    from common.train import train_epoch, training_order
    from experiments.running.runs import HarnessSession, train_run

    key = RunKey(record["backend"], record["dataset"], record["recipe"], record["seed"], record["mode"])
    if full:
        with tempfile.TemporaryDirectory(prefix="lenet-verify-") as tmp:
            again = train_run(key, RunStore(Path(tmp)), "cpu")
        return {"step_losses": again["step_losses"], "acc": again["epochs"][-1]["test_accuracy"],
                "versions": again["meta"]["versions"], "kernels": again["meta"]["kernels"]}
    recipe = key.spec()
    session = HarnessSession(key, recipe, "cpu")
    data = session.data
    order = training_order(session.backend, recipe, key.mode, key.seed, 0, len(data.train_labels))
    whole = not steps or steps * recipe.batch_size >= len(order)
    if not whole:
        order = order[: steps * recipe.batch_size]
    outcome = train_epoch(session.backend, session.model, data.train_images, data.train_labels, order)
    return {"step_losses": outcome.step_losses, "acc": session.evaluate()[1] if whole else None,
            "versions": session.versions(), "kernels": session.kernels()}


def child(payload: dict[str, Any]) -> int:
    """Replay the runs of the payload's "paths" ("steps" of the first epoch, or to the end with "full"), in this
    process of their environment: one MARK line of JSON per run."""
    paths, steps, full = payload["paths"], payload["steps"], payload["full"]
    for path in paths:
        record = read_record(Path(path))
        again = replay(record, steps, full)
        print(MARK + json.dumps({"path": path, **again}), flush=True)
    return 0


# ---- the parent: sample, spread over children, judge, print -------------------------------------------------


def kernel_changes(backend: str, meta: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What changed in the kernels between a record (its meta) and a replay's kernels: each entry both name with
    another value (a layout, a kernel library, the instruction set it dispatched to), and the registry's kernel note
    (which reads records made before an entry was kept, e.g. TensorFlow's oneDNN), where no entry tells."""
    then = meta.get("kernels") or {}
    changes = [f"{key} {then[key]} -> {now[key]}" for key in sorted(set(then) & set(now)) if then[key] != now[key]]
    notes = backends.kernel_note(backend, meta), backends.kernel_note(backend, {"kernels": now})
    if notes[0] and notes[1] and notes[0] != notes[1] and not changes:
        changes.append(f"{notes[0]} -> {notes[1]}")
    return changes


def judge(record: dict[str, Any], again: dict[str, Any], full: bool, spread: tuple[float, int]) -> Outcome:
    then_steps = record["step_losses"][: len(again["step_losses"])]
    first, worst = compare_steps(then_steps, again["step_losses"])
    epoch_acc = record["epochs"][-1 if full else 0]["test_accuracy"] if (full or again["acc"] is not None) else None
    if full:
        limit = max(ACC_SIGMAS * spread[0], ACC_FLOOR)
        tolerance = f"|test acc diff| <= {limit:.2%} ({ACC_SIGMAS:g} sd of {spread[1]} seeds, at least {ACC_FLOOR:.1%})"
        same = first is None and again["acc"] == epoch_acc
        close = abs(again["acc"] - epoch_acc) <= limit
    else:
        tolerance = f"step loss rel diff <= {STEP_TOLERANCE:g}"
        same, close = first is None, worst <= STEP_TOLERANCE
    verdict = "identical" if same else "float drift" if close else "different result"
    then_versions = record["meta"].get("versions", {})
    changes = [f"{k} {then_versions.get(k)} -> {v}" for k, v in again.get("versions", {}).items()
               if then_versions.get(k) != v]  # fmt: skip
    changes += kernel_changes(record["backend"], record["meta"], again.get("kernels") or {})
    changed = ", ".join(changes)
    return Outcome(run_name(record), int(record["meta"].get("threads") or 1), len(again["step_losses"]), first,
                   worst, epoch_acc, again["acc"], verdict, tolerance, made_on(record), changed)  # fmt: skip


def _format(o: Outcome, width: int) -> str:
    acc = "-" if o.acc_now is None else f"{o.acc_then:.2%} -> {o.acc_now:.2%}"
    first = "-" if o.first_diff is None else f"step {o.first_diff}"
    return f"{o.run:<{width}} {o.threads:>3} {o.steps:>6}  {first:<11} {o.max_rel:>12.1e}  {acc:<20} {o.verdict}"


NAME = "verify"
HELP = ("re-run a sample of the published runs on this machine and compare (quick: the first steps of every recipe, "
        "dataset and backend; --full: chosen runs to the end)")


@dataclass(frozen=True)
class Config:
    full: bool = False  # train the chosen runs to the end (else: quick mode, their first steps)
    steps: int = 20  # quick mode: steps of the first epoch to replay (0: the whole first epoch)
    runs: str | None = None  # comma-separated patterns of run names
    backends: str | None = None  # comma-separated: only these backends' runs
    results: str | None = None  # the published runs; None: the repository's docs/results
    json: str | None = None  # also write the outcomes to this JSON file
    against: str | None = None  # quick mode: replay each run with this interpreter first


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--full", action="store_true", help="train the chosen runs (--runs) to the end")
    parser.add_argument("--steps", type=non_negative_int, default=Config.steps,
                        help="quick mode: steps of the first epoch to replay (0: the whole first epoch, with its "
                             "test accuracy)")  # fmt: skip
    parser.add_argument("--runs", help="comma-separated patterns of run names, e.g. 'shared/mnist/d2l/*-seed0' "
                        "(full mode default: shared/mnist/seed-torch-fixed/torch-seed0,shared/mnist/d2l/torch-seed0)")
    parser.add_argument("--backends", help="comma-separated: only these backends' runs")
    parser.add_argument("--results", help="the published runs (default: the repository's docs/results)")
    parser.add_argument("--json", help="also write the outcomes to this JSON file")
    parser.add_argument("--against", metavar="PYTHON",
                        help="quick mode: replay each run first with this interpreter (another environment: other "
                             "versions), then with its own, and judge the second against the first, both made here")


def run(config: Config) -> int:
    from experiments.running.runs import REPO

    results = Path(config.results) if config.results else REPO / "docs" / "results"
    if not results.is_dir():
        raise UserError(f"no results directory {results}: give one that holds published runs (--results)")
    records = published(results)
    if not records:
        raise UserError(f"no complete published runs under {results}: nothing to verify")
    patterns = config.runs.split(",") if config.runs else list(FULL_DEFAULT) if config.full else ["*"]
    sample = [(p, r) for p, r in (records if config.full else quick_sample(records))
              if any(fnmatch.fnmatch(run_name(r), pattern) for pattern in patterns)]  # fmt: skip
    if config.backends:
        wanted = set(config.backends.split(","))
        sample = [(p, r) for p, r in sample if r["backend"] in wanted]
    if not sample:
        raise UserError(f"no published run under {results} matches {config.runs!r}; names look like {FULL_DEFAULT[0]}")
    here = machine.summary(machine.describe())
    if config.against and config.full:
        raise UserError("--against compares the first steps of two replays here; it does not go with --full")
    steps = None if config.full else config.steps
    what = ("chosen runs to the end" if config.full else
            f"the first {'epoch' if not steps else f'{steps} steps'} of the lowest seed of every published recipe, "
            "dataset and backend (shared mode)")  # fmt: skip
    print(f"lenet-repro verify: {len(sample)} runs, {what}")
    print(f"this machine: {here}")
    if config.against:
        print(f"each replayed with {config.against}, then with its own environment's interpreter, the second judged "
              "against the first")
    for name, count in Counter(made_on(r) for _, r in sample).items():
        print(f"made on:      {name}: {count} run{'s' if count > 1 else ''}")
    width = max(len(run_name(r)) for _, r in sample)
    print(f"\n{'run':<{width}} thr  steps  first diff  max rel diff  test acc then -> now  verdict")
    outcomes = []
    by_threads: dict[tuple[int, str], list[tuple[Path, dict[str, Any]]]] = {}
    for path, record in sample:
        python = python_for_run(RunKey(record["backend"], record["dataset"], record["recipe"], record["seed"],
                                       record["mode"]))  # fmt: skip
        by_threads.setdefault((int(record["meta"].get("threads") or 1), python), []).append((path, record))
    for (threads, python), group in sorted(by_threads.items()):
        wanted_paths = {str(p): r for p, r in group}
        if config.against:  # each run replayed in both interpreters here: its own environment's against the other's
            mine = {again["path"]: again for again in _children(config.against, threads, list(wanted_paths), steps,
                                                                 config.full)}  # fmt: skip
        replays = _children(python, threads, list(wanted_paths), steps, config.full)
        for again in replays:
            record = wanted_paths[again["path"]]
            if config.against:
                record = as_replayed(record, mine[again["path"]])
            outcome = judge(record, again, config.full, seed_spread(records, record))
            outcomes.append(outcome)
            print(_format(outcome, width), flush=True)
    for outcome in outcomes:
        if outcome.versions:
            print(f"note: {outcome.run} was made with other framework versions or kernels: {outcome.versions}")
    counts = Counter(o.verdict for o in outcomes)
    tolerances = dict.fromkeys(o.tolerance for o in outcomes)
    if len(tolerances) == 1:
        print(f"\n{', '.join(f'{n} {v}' for v, n in counts.items())}; threshold: {next(iter(tolerances))}")
    else:
        print(f"\n{', '.join(f'{n} {v}' for v, n in counts.items())}; thresholds:")
        for o in outcomes:
            print(f"  {o.run}: {o.tolerance}")
    if config.json:
        document = {"this_machine": here, **({"against": config.against} if config.against else {}),
                    "outcomes": [asdict(o) for o in outcomes]}  # fmt: skip
        write_atomic(Path(config.json), (json.dumps(document, indent=1) + "\n").encode())
    return 1 if counts.get("different result") else 0


def as_replayed(record: dict[str, Any], replay: dict[str, Any]) -> dict[str, Any]:
    """The record as a replay here made it (--against): its step losses, versions and kernels, this machine."""
    meta = {**record["meta"], "versions": replay["versions"], "kernels": replay["kernels"],
            "machine": machine.describe()}  # fmt: skip
    return {**record, "step_losses": replay["step_losses"], "meta": meta}


def _children(python: str, threads: int, paths: list[str], steps: int | None, full: bool):
    """Replay `paths` in a child process of `python` (the runs' environment) with `threads` threads; yields each
    run's result as it lands."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = child_process.command(python, "verify", {"paths": paths, "steps": steps or None, "full": full})
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith(MARK):
                yield json.loads(line[len(MARK):])
    if process.returncode:
        raise UserError(f"replaying runs with {threads} thread(s) failed (exit {process.returncode}); see above")
