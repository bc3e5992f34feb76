"""The default executor of the grid (experiments/running/grid.py): each run in a child process, `run-one` in the
interpreter of the run's environment, one at a time or `capacity` at once."""


from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.results import BUSY_EXIT, RunKey, RunLock, RunStore
from experiments.running.grid import RunSettings
from experiments.running.runs import python_for_run

STOP_SECONDS = 30  # a child asked to stop (SIGTERM) that has not after this long is killed


def run_one_command(key: RunKey, results: Path, settings: RunSettings) -> list[str]:
    """`python -m experiments run-one ...` for one key, its lock already held by this driver, in the interpreter of
    the run's environment."""
    command = [python_for_run(key), "-m", "experiments", "run-one", "--backend", key.backend, "--recipe", key.recipe,
               "--dataset", key.dataset, "--seed", str(key.seed), "--results", str(results),
               "--device", settings.device, "--mode", key.mode, "--locked"]  # fmt: skip
    command += ["--epochs", str(key.epochs)] if key.epochs else []
    command += ["--limit", str(key.limit)] if key.limit else []
    command += ["--threads", str(settings.threads)] if settings.threads else []
    return command


class SubprocessExecutor:
    """The default: one run at a time (or `capacity` at once), each in a child process (no two frameworks ever share
    one). With `log`, the children's output goes to that file instead of this terminal.

    The child gets the driver's lock on its run as an open file (pass_fds): an flock belongs to the open file, so
    the run stays locked for as long as the child trains, even if the driver is killed; and the child takes the
    run's trainer lock itself."""

    def __init__(self, store: RunStore, settings: RunSettings, capacity: int = 1, log: Path | None = None) -> None:
        self.store, self.settings, self.capacity, self.log = store, settings, capacity, log
        self.children: dict[RunKey, subprocess.Popen] = {}

    def submit(self, key: RunKey, lock: RunLock | None = None) -> None:
        # the environment too: NumPy's BLAS reads its thread count only there, when NumPy is imported
        env = {**os.environ, "OMP_NUM_THREADS": str(self.settings.threads)} if self.settings.threads else None
        # Ctrl-C is the driver's to handle (it stops the child with SIGTERM): the child starts with SIGINT blocked
        # (a signal mask is inherited), so it never dies of it half-way through starting up, with a traceback.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        output = open(self.log, "a") if self.log is not None else None  # noqa: SIM115 (the child keeps its copy)
        try:
            self.children[key] = subprocess.Popen(run_one_command(key, self.store.root, self.settings), env=env,
                                                  pass_fds=[lock.fileno()] if lock is not None else [],
                                                  stdout=output, stderr=output)  # fmt: skip
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            if output is not None:
                output.close()

    def wait(self, timeout: float) -> list[tuple[RunKey, dict[str, Any] | None]]:
        deadline = time.monotonic() + timeout
        while True:
            done = [(key, child) for key, child in self.children.items() if child.poll() is not None]
            if done or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        results = []
        for key, child in done:
            del self.children[key]
            if child.returncode == BUSY_EXIT:  # another process trains the run (a driver that died left it)
                results.append((key, None))
                continue
            if child.returncode == 2:
                raise SystemExit(2)  # the child already printed its one-line error
            if child.returncode != 0:
                raise UserError(f"{key.label()} stopped with exit code {child.returncode}; "
                                "run the same command again to resume it")  # fmt: skip
            results.append((key, self.store.load_record(key)))
        return results

    def close(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.terminate()  # the child unwinds (no temporary file left); the run keeps its last checkpoint
            try:
                child.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()  # its writes are atomic: a kill loses nothing finished
                child.wait()
        self.children.clear()
