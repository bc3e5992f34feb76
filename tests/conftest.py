"""Shared fixtures: small subsets of the real datasets, preprocessed per recipe; and the environment a test runs in.

A test marked `@pytest.mark.environment("mxnet")` imports a framework that only another environment has
(common/environments.py): it is left out where the suite runs in the main environment, and
tests/test_environments.py runs it in its own (`python -m pytest` of that environment's interpreter, which collects
only the files that hold such tests).
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

from common import data, environments
from common.preprocess import prepare_images
from common.spec import Recipe


@functools.cache
def _raw(dataset: str) -> data.Dataset:
    return data.load_dataset(dataset)  # the real, verified files (`make test` provisions them first)


def subset(dataset: str, recipe: Recipe, train: int, test: int = 0) -> tuple[np.ndarray, ...]:
    """(train_x, train_y, test_x, test_y): the first examples of the real data, preprocessed for the recipe."""
    raw = _raw(dataset)
    return (
        prepare_images(raw.train_images[:train], recipe.preprocess),
        raw.train_labels[:train],
        prepare_images(raw.test_images[:test], recipe.preprocess),
        raw.test_labels[:test],
    )


@pytest.fixture(scope="session")
def torch_backend():
    from backends import load_backend

    backend = load_backend("torch")
    backend.configure_threads()
    return backend


@pytest.fixture(scope="session")
def mxnet_backend():
    from backends import load_backend

    return load_backend("mxnet")


# The test files whose tests start processes (the command line, run-one children, drivers, Ray, a notebook kernel)
# or train to the end: the integration tier. The conformance suite (backends/conformance/) is its own tier; every
# other test runs in-process on synthetic arrays or small subsets: the unit tier.
INTEGRATION = {
    "test_cli.py", "test_data.py", "test_demo.py", "test_environments.py", "test_faults.py", "test_grid.py",
    "test_notebook.py", "test_records.py", "test_reference_runs.py", "test_runs.py", "test_seed_scripts.py",
    "test_tensorflow.py", "test_variance.py", "test_verify.py"
}


# The conformance items that compare a backend with the float64 reference of a recipe (computed once per process)
ORACLE_ITEMS = {"test_oracle", "test_fifty_sgd_steps"}


def tier(item: pytest.Item) -> pytest.MarkDecorator:
    """The tier marker of a test, from where it lives."""
    path = item.path
    if "conformance" in path.parts:
        return pytest.mark.conformance
    return pytest.mark.integration if path.name in INTEGRATION else pytest.mark.unit


def pytest_addoption(parser):
    parser.addoption("--backend", action="append", default=[], metavar="NAME",
                     help="only the tests parametrised with this registered backend (its conformance items among "
                          "them), by its exact name; repeatable (make test BACKEND=name)")  # fmt: skip


def chosen(item: pytest.Item, names: list[str]) -> bool:
    """Whether a test is parametrised with one of the backends named: a parameter equal to a name, exactly (not a
    substring of an id: `mxnet` does not pick `torch-seed-mxnet`'s other backends' items)."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return any(isinstance(value, str) and value in names for value in params.values())


def pytest_configure(config):
    """Under pytest-xdist each worker's frameworks get cores / workers threads (unless OMP_NUM_THREADS is set, which
    every backend's configure_threads reads): two workers on two cores, each running two-thread kernels, would
    oversubscribe the cores and spin. Set before any test imports a framework; subprocesses inherit it."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // int(workers)))


def _wanted(item: pytest.Item) -> str:
    marker = item.get_closest_marker("environment")
    return marker.args[0] if marker else environments.MAIN


def pytest_ignore_collect(collection_path, config):
    """Outside the main environment, only the test files that hold a test of this environment are collected (the
    others import what this environment lacks)."""
    here = environments.current_name()
    if here in (environments.MAIN, "unmanaged") or collection_path.suffix != ".py":
        return None
    if not collection_path.name.startswith("test_"):
        return None
    return f'pytest.mark.environment("{here}")' not in collection_path.read_text()


def pytest_collection_modifyitems(config, items):
    """Keep the tests of this interpreter's environment (every test, in an environment set up by hand); give every
    test its tier (TIERS: unit, conformance or integration); and put every test that starts a Ray instance into one
    xdist group, so that `make test` (`-n auto --dist loadgroup`) runs them one after another on one worker while
    the other workers take the rest (each checks that no Ray process of its own is left)."""
    names = config.getoption("backend")
    if names:
        unknown = set(names) - set(__import__("backends").names())
        if unknown:
            raise pytest.UsageError(f"--backend: no registered backend {sorted(unknown)[0]!r}")
        dropped = [item for item in items if not chosen(item, names)]
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if chosen(item, names)]
    for item in items:
        item.add_marker(tier(item))
        if item.get_closest_marker("ray") or "no_ray_left" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("ray"))
        elif item.name.split("[")[0] in ORACLE_ITEMS and hasattr(item, "callspec"):
            # one process computes a recipe's float64 (and float32) reference once, for every backend's item
            item.add_marker(pytest.mark.xdist_group(f"oracle-{item.callspec.params['recipe_name']}"))
    here = environments.current_name()
    if here == "unmanaged":
        return
    kept = [item for item in items if _wanted(item) == here]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if _wanted(item) != here])
        items[:] = kept
