"""Shared fixtures: small subsets of the real datasets, preprocessed per recipe; and the environment a test runs in.

A test marked `@pytest.mark.environment("mxnet")` imports a framework that only another environment has
(common/environments.py): it is left out where the suite runs in the main environment, and
tests/test_environments.py runs it in its own (`python -m pytest` of that environment's interpreter, which collects
only the files that hold such tests).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

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


@pytest.fixture(scope="session")
def framework_backends():
    """Every registered framework, loaded once per process, threads configured (MXNet's is a child of its own
    interpreter, backends/remote.py)."""
    from backends import frameworks, load_backend

    loaded = {name: load_backend(name) for name in frameworks()}
    for backend in loaded.values():
        backend.configure_threads()
    return loaded


# The conformance items that compare a backend with the float64 reference of a recipe (computed once per process)
ORACLE_ITEMS = {"test_oracle", "test_fifty_sgd_steps"}


# Tiers: a test file whose tests start processes (the command line, run-one children, drivers, Ray, a notebook
# kernel, another environment's interpreter) or train to the end says so where it is, `pytestmark =
# pytest.mark.integration`; the conformance suite (backends/conformance/) is its own tier; every other test is in
# the unit tier, runs in-process on synthetic arrays or small subsets, and fails if it starts a process
# (`no_process_in_unit_tests` below). A test that asks for a fixture starting a process (PROCESS_FIXTURES: another
# environment's interpreter, driven through backends/remote.py) is in the integration tier by that request, wherever
# its file is and whichever test of the process set the fixture up first.
TIERS = ("unit", "conformance", "integration")
PROCESS_FIXTURES = {"mxnet_backend", "framework_backends"}


def tier(item: pytest.Item) -> pytest.MarkDecorator:
    """The tier marker of a test: the conformance suite's, the integration tier where its file or itself declares it
    or where it asks for a fixture that starts a process, else unit."""
    if "conformance" in item.path.parts:
        return pytest.mark.conformance
    starts = PROCESS_FIXTURES & set(getattr(item, "fixturenames", ()))
    return pytest.mark.integration if item.get_closest_marker("integration") or starts else pytest.mark.unit


# Programs a unit test may start: git, read for the code version a seal names (common.seal.code_version), and the
# tools ctypes.util.find_library asks where a shared library is (ldconfig, then a compiler or the linker), lookups of
# the system, as is uname (the platform module's processor name): not processes of the project.
ALLOWED_IN_UNIT = {"git", "ldconfig", "gcc", "cc", "ld", "objdump", "uname"}


@pytest.fixture(autouse=True)
def no_process_in_unit_tests(request, monkeypatch):
    """A unit test that starts a process (a Python child, a framework's own interpreter) fails, naming the marker
    that moves its file to the integration tier."""
    if request.node.get_closest_marker("unit") is None:
        return
    import subprocess

    started = subprocess.Popen.__init__

    def refuse(self, args, *rest, **kwargs):
        program = Path(str(args[0] if isinstance(args, list | tuple) else str(args).split()[0])).name
        if program not in ALLOWED_IN_UNIT:
            raise AssertionError(f"a unit test started a process ({program}): declare its file's tier, "
                                 "`pytestmark = pytest.mark.integration`")  # fmt: skip
        started(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


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
