"""The run grid: every unfinished run of a `run` command, trained one after another in child processes (the
default), or as Ray tasks: `--workers N` on a local Ray instance started and stopped here, `--ray-address` on an
existing Ray cluster. The runs, their records and the report are the same either way. This module is the scheduler;
the executors are local_executor.py (child processes) and ray_executor.py (Ray tasks), chosen by executors.py.

One scheduler serves both: it takes each run's lock (common.results.RunLock) before handing the run to an
executor and holds it until the record is back, so two drivers on one results directory never train the same
run at once; a run another driver holds is skipped and taken up later if it is still unfinished.

The lock also outlives a driver that dies (SIGKILL, the OOM killer): the process that trains a run holds a lock
of its own, the trainer's lock, taken before it imports a framework (`run-one`, or a Ray task in the store it
trains in), and a sequential driver hands its own lock on the run down to its `run-one` child as an open file.
A driver sees a run whose trainer's lock is held as another driver's: it waits for it, never trains beside it.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from common.results import DamagedFile, RunKey, RunLock, RunStore
from experiments.running.runs import check_same_run, format_seconds


@dataclass(frozen=True)
class RunSettings:
    """What every run of one grid is trained with, besides its key."""

    device: str
    threads: int | None  # None: the backend's default (every core)


class Executor(Protocol):
    """Trains runs somewhere; the scheduler gives it at most `capacity` at once."""

    capacity: int

    def submit(self, key: RunKey, lock: RunLock | None = None) -> None: ...  # lock: the run's, held by the driver
    # finished runs and their records; None for a run another process turned out to be training (taken up later)
    def wait(self, timeout: float) -> list[tuple[RunKey, dict[str, Any] | None]]: ...
    def close(self) -> None: ...  # stop whatever still runs (its checkpoints stay) and release everything


def finished(store: RunStore, key: RunKey) -> bool:
    """Whether the run's record is complete or diverged (a stored run with other settings is refused). A damaged
    record is not finished: the process that trains the run sets it aside, says so, and trains the run again."""
    try:
        record = store.load_record(key)
    except DamagedFile:
        return False
    if record is None:
        return False
    check_same_run(key, record, key.spec())
    return record["status"] != "partial"


class GridProgress:
    """One overall line on stderr whenever a run starts or ends: done / running / total and an ETA.

    With `expected` (seconds each run should take, e.g. from the committed runs' records: `expected_seconds`), the
    ETA is known from the start: what is left of the expected time, scaled by how the finished runs compared with
    their expectation, over the runs at once; else it is the mean time of the runs finished so far."""

    def __init__(self, total: int, done: int, capacity: int, stream=sys.stderr,
                 expected: dict[RunKey, float] | None = None, todo: list[RunKey] | None = None,
                 name: str = "grid") -> None:  # fmt: skip
        self.total, self.done, self.capacity, self.stream = total, done, capacity, stream
        self.expected, self.name = expected or {}, name
        self.left = set(todo or ())  # the runs not finished yet (for the expected-time ETA)
        self.started: dict[RunKey, float] = {}
        self.durations: list[float] = []
        self.taken: list[tuple[float, float]] = []  # (seconds it took, seconds expected) of the finished runs
        self.shown: tuple[int, int] | None = None

    def start(self, key: RunKey) -> None:
        self.started[key] = time.monotonic()

    def requeue(self, key: RunKey) -> None:
        """A started run went back to the waiting ones."""
        self.started.pop(key, None)

    def finish(self, key: RunKey | None, trained: bool = True) -> None:
        began = self.started.pop(key, None) if key else None
        if trained and began is not None:
            self.durations.append(time.monotonic() - began)
            if key in self.expected:
                self.taken.append((self.durations[-1], self.expected[key]))
        self.left.discard(key)
        self.done += 1

    def eta(self) -> str:
        left = self.total - self.done
        if not left:
            return "0s"
        if self.expected and self.left.issubset(self.expected):
            scale = sum(t for t, _ in self.taken) / sum(e for _, e in self.taken) if self.taken else 1.0
            now = time.monotonic()
            seconds = sum(max(self.expected[k] * scale - (now - self.started[k] if k in self.started else 0.0), 0.0)
                          for k in self.left)  # fmt: skip
            return format_seconds(seconds / min(self.capacity, left))
        if not self.durations:
            return "known after the first run"
        mean = sum(self.durations) / len(self.durations)
        return format_seconds(mean * left / min(self.capacity, left))

    def line(self) -> None:
        """Print the line if anything changed since it was last printed."""
        running = len(self.started)
        waiting = self.total - self.done - running
        if (self.done, running) == self.shown:
            return
        self.shown = (self.done, running)
        self.stream.write(f"[{self.name}] {self.done}/{self.total} runs done, {running} running, {waiting} waiting, "
                          f"ETA {self.eta()}\n")  # fmt: skip
        self.stream.flush()


def expected_seconds(keys: list[RunKey], published: RunStore, start: float = 15.0) -> dict[RunKey, float]:
    """What each run should take, from the full-data runs in `published` of the same mode, recipe, dataset and
    backend: the median seconds of an epoch times the run's epochs (times its share of the training examples under
    --limit), plus `start` seconds of a process's start-up. A run with no such records is left out."""
    from statistics import median

    from common.results import read_record

    out = {}
    for key in keys:
        folder = published.root / key.mode / key.dataset / key.recipe
        epochs = [row for path in sorted(folder.glob(f"{key.backend}-seed*.json"))
                  for row in read_record(path)["epochs"][1:]]  # the first epoch also traces and warms up
        if epochs:
            examples = median(row["examples_per_second"] * row["train_seconds"] for row in epochs)
            share = min(1.0, key.limit / examples) if key.limit else 1.0
            out[key] = start + median(row["seconds"] for row in epochs) * share * key.spec().epochs
    return out


def say(text: str) -> None:
    print(f"[grid] {text}", file=sys.stderr, flush=True)


def outcome(record: dict[str, Any]) -> str:
    """How a finished run ended, in a few words."""
    if record["status"] == "diverged":
        return f"diverged at step {record['diverged_at_step']}"
    last = record["epochs"][-1]
    return f"{record['status']}, {len(record['epochs'])} epochs, test acc {last['test_accuracy']:.4f}"


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # Ctrl-C, `kill`, a closed terminal


class Stops:
    """While the scheduler runs, Ctrl-C, SIGTERM and SIGHUP only raise a flag, which the scheduler checks between
    its steps: a KeyboardInterrupt raised at any bytecode could leave a lock inside `subprocess` held, and the
    driver would then hang for ever waiting for the child it is stopping."""

    def __init__(self) -> None:
        self.signals: list[int] = []
        self.saved: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            self.saved = {sig: signal.signal(sig, self._flag) for sig in STOP_SIGNALS}

    def _flag(self, signum, frame) -> None:
        self.signals.append(signum)

    def check(self) -> None:
        if self.signals:
            raise KeyboardInterrupt

    def restore(self) -> None:
        """The handlers there were before."""
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def run_keys(keys: list[RunKey], store: RunStore, make_executor: Callable[[], Executor],
             expected: dict[RunKey, float] | None = None, name: str = "grid") -> None:
    """Train every unfinished run in `keys`, each under its lock, with an executor made only when there is work
    (a finished run is never scheduled). Ctrl-C, SIGTERM and SIGHUP stop the runs and keep their checkpoints.
    `expected`: seconds each run should take, for an ETA from the start; `name`: the progress lines' prefix."""
    todo = [key for key in keys if not finished(store, key)]
    if not todo:
        return
    held: dict[RunKey, RunLock] = {}
    told: set[RunKey] = set()

    def busy_elsewhere(key: RunKey) -> None:
        """Say once that another process trains `key`; it is waited for like another driver's run."""
        if key not in told:
            say(f"{key.label()} is being trained by another process: skipped; taken up here if it stops")
            told.add(key)
    waiting = False
    executor = make_executor()
    progress = GridProgress(len(keys), len(keys) - len(todo), executor.capacity, expected=expected, todo=todo,
                            name=name)
    stops = Stops()
    try:
        while todo or held:
            stops.check()
            for key in list(todo):
                if len(held) >= executor.capacity:
                    break
                lock = store.try_lock(key)
                if lock is None:
                    if key not in told:
                        say(f"{key.label()} is being trained by another driver: skipped; taken up here if it stops")
                        told.add(key)
                    continue
                if store.trainer_busy(key):  # a process of a driver that died (or a lone run-one) still trains it
                    lock.release()
                    busy_elsewhere(key)
                    continue
                todo.remove(key)
                if finished(store, key):  # the other driver finished it meanwhile
                    lock.release()
                    say(f"{key.label()} was finished by another driver")
                    progress.finish(key, trained=False)
                    continue
                held[key] = lock
                executor.submit(key, lock)
                progress.start(key)
            progress.line()
            if not held:
                if todo and told.issuperset(todo):  # every run left is another driver's: wait for it
                    if not waiting:
                        say(f"waiting for {len(todo)} run(s) another driver is training")
                    waiting = True
                    time.sleep(0.5)
                continue
            for key, record in executor.wait(timeout=0.25):  # short: Ctrl-C is seen between waits
                held.pop(key).release()
                if record is None:  # another process took it up meanwhile: wait for it like another driver's
                    progress.requeue(key)
                    todo.append(key)
                    busy_elsewhere(key)
                    continue
                progress.finish(key)
                say(f"{key.label()}: {outcome(record)}")
        progress.line()
    except KeyboardInterrupt:
        say("stopped: every finished epoch is checkpointed; run the same command again to resume")
        raise SystemExit(130) from None
    finally:
        try:
            executor.close()  # stops what still runs; its checkpoints stay (a second Ctrl-C meanwhile: ignored)
        finally:
            stops.restore()
            for lock in held.values():
                lock.release()
