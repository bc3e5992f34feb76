"""Which executor trains a grid (experiments/running/grid.py schedules it): child processes one after another
(local_executor.py), or Ray tasks (ray_executor.py) where --workers or a Ray address asks for them; and the
threads each run gets."""

from __future__ import annotations

import os

from common.results import RunStore
from experiments.running.grid import Executor, RunSettings
from experiments.running.local_executor import SubprocessExecutor
from experiments.running.ray_executor import RayExecutor


def make_executor(store: RunStore, settings: RunSettings, workers: int | None, address: str | None) -> Executor:
    """Sequential child processes unless --workers or a Ray address asks for Ray."""
    if workers is None and not address:
        return SubprocessExecutor(store, settings)
    return RayExecutor(store, settings, address or None, workers)


def default_threads(workers: int | None, address: str | None) -> int | None:
    """Threads per run when THREADS is not given: every core sequentially, cores / WORKERS on a local Ray
    instance, 1 on a cluster (each run asks for one CPU there)."""
    if address:
        return 1
    if workers:
        return max(1, len(os.sched_getaffinity(0)) // workers)
    return None
