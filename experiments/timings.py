"""How long each of the README's commands takes, into docs/timings.json (the README's times are rendered from it).

    lenet-repro timings [--measure demo,verify,test]

Two kinds of figure:
- **measured**: `--measure` runs each named command as the README shows it (`make demo`, `make verify`,
  `make test`, `make test-fast`; the demo into a new temporary results directory, so that it trains everything)
  and times it, wall clock, on this computer, whose processor and cores are written beside it. The set-up
  (`make venvs data`) is done first and not counted. `venvs` is the set-up itself: `make venvs` in a fresh clone
  with no pip cache, with each environment's size.
- **from the committed runs** (always written): `make reproduce` (shared mode, one seed, every recipe on both
  datasets in every framework, one run after another) from each run's median epoch time in docs/results/, and
  `make publish` as the sum of the committed runs' own times.

Times of earlier measurements not named in --measure are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import backends
from common import data, machine, spec
from common.arguments import name_list
from common.errors import UserError
from common.results import RunKey, RunStore, write_atomic

REPO = Path(__file__).resolve().parent.parent
TIMINGS = REPO / "docs" / "timings.json"
PUBLISHED = REPO / "docs" / "results"
MEASURABLE = ("demo", "verify", "test", "test-fast", "venvs", "explorer")

NAME = "timings"
HELP = "how long the README's commands take: measure some (--measure), estimate the rest from the committed runs"


@dataclass(frozen=True)
class Config:
    measure: tuple[str, ...] = ()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--measure", default=(), type=name_list("command", lambda: MEASURABLE),
                        help=f"comma-separated commands to run and time: {','.join(MEASURABLE)}")


def reproduce_keys() -> list[RunKey]:
    """What `make reproduce` trains: shared mode, seed 0, every recipe on both datasets, every framework."""
    return [RunKey(backend, dataset, recipe, 0) for backend in backends.frameworks()
            for recipe in spec.RECIPES for dataset in data.DATASETS]  # fmt: skip


def from_records() -> dict[str, dict]:
    """reproduce and publish, from the committed runs' epoch times (one run after another)."""
    from experiments.running.grid import expected_seconds

    store = RunStore(PUBLISHED)
    records = store.records()
    # a backend with no committed run (a plug-in) has no times to estimate its runs by: left out, and said
    committed = {record["backend"] for record in records}
    keys = [key for key in reproduce_keys() if key.backend in committed]
    expected = expected_seconds(keys, store)
    missing = [key.label() for key in keys if key not in expected]
    if missing:
        raise UserError(f"no committed runs to time {missing[0]} by (and {len(missing) - 1} more)")
    left_out = sorted({key.backend for key in reproduce_keys()} - committed)
    if left_out:
        print(f"[timings] make reproduce's estimate leaves out {', '.join(left_out)}: no committed runs to time "
              "them by", file=sys.stderr)
    published = sum(row["seconds"] for record in records for row in record["epochs"])
    how = "from the committed runs' epoch times, one run after another"
    return {"reproduce": {"seconds": round(sum(expected.values())), "how": how, "runs": len(keys)},
            "publish": {"seconds": round(published), "how": how, "runs": len(store.record_paths())}}


def measure_venvs() -> tuple[float, dict[str, int]]:
    """`PIP_NO_CACHE_DIR=1 make venvs` in a fresh clone of this checkout's commit: seconds, and each environment's
    size in bytes."""
    with tempfile.TemporaryDirectory(prefix="lenet-venvs-") as scratch:
        clone = Path(scratch) / "clone"
        subprocess.run(["git", "clone", "--quiet", "--local", str(REPO), str(clone)], check=True)
        print(f"[timings] make venvs in a fresh clone ({clone})", file=sys.stderr, flush=True)
        began = time.monotonic()
        done = subprocess.run(["make", "--no-print-directory", "-C", str(clone), "venvs"],
                              env={**os.environ, "PIP_NO_CACHE_DIR": "1"})  # fmt: skip
        seconds = time.monotonic() - began
        if done.returncode != 0:
            raise UserError(f"`make venvs` failed in a fresh clone (exit code {done.returncode})")
        sizes = {}
        for venv in sorted(clone.glob(".venv*")):
            usage = subprocess.run(["du", "-sb", str(venv)], capture_output=True, text=True, check=True)
            sizes[venv.name] = int(usage.stdout.split()[0])
    return seconds, sizes


def measure(command: str) -> float:
    """Run the README's command and return its wall-clock seconds (its set-up done beforehand, not counted)."""
    make = ["make", "--no-print-directory", "-C", str(REPO)]
    subprocess.run([*make, "venvs", "data"], check=True, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(prefix=f"lenet-{command}-") as scratch:
        line = [*make, command] + ([f"RESULTS={scratch}"] if command == "demo" else [])
        print(f"[timings] {' '.join(line[3:])}", file=sys.stderr, flush=True)
        began = time.monotonic()
        done = subprocess.run(line)
        seconds = time.monotonic() - began
    if done.returncode != 0:
        raise UserError(f"`make {command}` failed (exit code {done.returncode}): its time is not recorded")
    return seconds


def run(config: Config) -> int:
    old = json.loads(TIMINGS.read_text())["commands"] if TIMINGS.exists() else {}
    where = machine.summary(machine.describe())
    commands = dict(old)
    for command in config.measure:
        sizes = None
        if command == "venvs":
            seconds, sizes = measure_venvs()
        else:
            seconds = measure(command)
        commands[command] = {"seconds": round(seconds), "how": "measured", "machine": where,
                             "cores": len(os.sched_getaffinity(0)), **({"sizes": sizes} if sizes else {})}
        print(f"[timings] make {command}: {seconds:.0f} s on {where}", file=sys.stderr)
    commands.update(from_records())
    write_atomic(TIMINGS, (json.dumps({"commands": dict(sorted(commands.items()))}, indent=2) + "\n").encode())
    print(f"wrote {TIMINGS.relative_to(REPO)}")
    return 0
