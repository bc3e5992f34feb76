"""The conformance suite: one set of tests every registered backend must pass (backends/contract.py).

It runs as part of the project's tests, and on its own from any directory, for instance by the author of a
plug-in backend (registered through the entry point group `lenet_repro.backends`, see backends/__init__.py):

    python -m pytest --pyargs backends.conformance                      # every registered backend
    LENET_REPRO_BACKENDS=mycopy python -m pytest --pyargs backends.conformance -m "not slow"

`LENET_REPRO_BACKENDS` (comma-separated names) picks the backends; by default all of them. Each contract item is
a test, parametrised by backend and, where the item depends on it, by recipe (ids like `torch-seed-mxnet`), and
every failure message starts with `contract item '<item>'` and names the backend's module and the recipe:

* `members`       the module defines each function of `backends.contract.Backend` with its parameters;
* `layer table`   the built network's layer table (shapes, parameter counts) is the spec's, every recipe;
* `oracle`        output, loss and every gradient against the float64 reference, on real data, every recipe;
* `50 SGD steps`  the per-step losses and the weights after 50 steps, likewise (slow);
* `resume`        get_state/set_state resume training exactly; get_weights/set_weights round-trip exactly;
* `native init`   the framework's own initial weights follow the spec's distribution, seeded;
* `native order`  the framework's own shuffle is a seeded permutation;
* `imports`       importing (and using) the backend loads no other registered backend's framework;
* `devices`       select_device refuses an unknown device in one line (UserError), and the CPU works;
* `script imports` (the blog post's scripts, test_scripts.py) importing a recipe's script, in the environment of
                  the framework it is written in, loads no other registered backend's framework.

The oracle's tolerance for a quantity is max(floor, 10 x the error of the reference itself in float32), as
tests/test_oracle.py explains; the reference's float64 and float32 runs are made once per recipe (cached here),
and the measured figures are printed at the end of the run. The oracle items need the real datasets
(`make data`, or LENET_DATA_DIR pointing at them). The reference backend is not compared with itself.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from backends import REFERENCE, info, load_backend, names, oracle, python_for, scripts
from common import spec
from common.contract import Backend
from common.errors import UserError

ENV = "LENET_REPRO_BACKENDS"
RECIPES = list(spec.RECIPES)
SLOW_RECIPES = {"seed-mxnet"}  # 96x96: the float64 reference takes seconds per batch
# The fast tier (`make test-fast`, `lenet-repro conformance --fast`) checks the costlier per-recipe items on one recipe
# only, the one with the most layer kinds to get wrong (padding, sigmoid, average pooling, mean loss); `make test`
# checks every recipe.
FAST_RECIPE = "d2l"

# Floors of the largest relative error a float32 framework may show against the float64 math. A framework may
# also land as far as 10x what float32 arithmetic alone does (the NumPy backend in float32, same sequence):
# where float32 itself is far (rounding flips which value of a max-pooling window is largest in a few windows,
# so their gradient goes to another pixel, and a gradient with much cancellation shows it), the frameworks are
# allowed to be. A wrong formula is off by order 1 and fails either way.
FLOORS = {"output": 1e-5, "loss": 1e-5, "gradient": 1e-4, "step_losses": 1e-4, "weights_after": 1e-3}
FLOAT32_FACTOR = 10

# Native initial weights: seeds drawn per recipe, and how many standard errors the sample mean and mean square of
# a parameter's values (pooled over the seeds) may lie from those of the scheme's uniform distribution.
INIT_SEEDS = (0, 1, 2)
STANDARD_ERRORS = 5


def _chosen() -> list[str]:
    """LENET_REPRO_BACKENDS (comma-separated registry names), each checked; empty when unset."""
    chosen = [name.strip() for name in os.environ.get(ENV, "").split(",") if name.strip()]
    for name in chosen:
        try:
            info(name)
        except UserError as error:
            raise UserError(f"{ENV}: {error}") from None
    return chosen


def selected() -> list[str]:
    """The backends whose contract to check: those LENET_REPRO_BACKENDS names if set, else every registered
    backend (the blog post's scripts implement no contract: `selected_scripts`)."""
    chosen = _chosen()
    return [name for name in chosen if name in names()] if chosen else names()


def selected_scripts() -> list[str]:
    """The entries that train themselves (the blog post's scripts) whose items to run: those LENET_REPRO_BACKENDS
    names if set, else all."""
    chosen = _chosen()
    return [name for name in chosen if name in scripts()] if chosen else scripts()


def loaded_in_fresh_interpreter(backend: str, code: str, *args: str) -> dict:
    """Run `code` (which prints JSON last) in a fresh interpreter of a backend's own environment, whose search path
    is this one's where it is this interpreter; the JSON it printed. An interpreter that fails fails the item."""
    python = python_for(backend)
    env = {**os.environ, **({"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
                            if python == sys.executable else {})}  # fmt: skip
    result = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, f"importing it in a fresh interpreter failed:\n{result.stderr[-2000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def module_of(name: str) -> str:
    """The backend's module path, as messages name it."""
    return info(name).module


def where(name: str, recipe: str | None = None) -> str:
    """'backends.torch_lenet (backend torch) on recipe seed-mxnet'."""
    return f"{module_of(name)} (backend {name})" + (f" on recipe {recipe}" if recipe else "")


@contextlib.contextmanager
def contract_item(item: str, name: str, recipe: str | None = None):
    """Run one item's checks: a failed assertion, or any exception the backend raises, fails the test with a
    message that starts with `contract item '<item>'` and names the backend and recipe (a failed check shows the
    message alone; an exception also its traceback, which points into the backend)."""
    try:
        yield
    except AssertionError as error:
        if not _raised_here(error):  # an assert inside the backend: its traceback matters
            raise AssertionError(f"contract item '{item}': {where(name, recipe)}: raised AssertionError: "
                                 f"{error}") from error  # fmt: skip
        message = f"contract item '{item}': {where(name, recipe)}: " + str(error).split("\nassert ")[0]
        raise pytest.fail.Exception(message, pytrace=False) from None  # the message alone, no assert restated
    except Exception as error:
        raise AssertionError(f"contract item '{item}': {where(name, recipe)}: raised {type(error).__name__}: "
                             f"{error}") from error  # fmt: skip


def _raised_here(error: BaseException) -> bool:
    """Whether the innermost frame of the error's traceback is in this package (a check of the suite's own)."""
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and os.path.dirname(os.path.abspath(tb.tb_frame.f_code.co_filename)) == _HERE


_HERE = os.path.dirname(os.path.abspath(__file__))


def described(member: str) -> str:
    """'train_step(model, x, y) (backends/contract.py says: One SGD step ...)'."""
    function = getattr(Backend, member)
    parameters = [p for p in inspect.signature(function).parameters if p != "self"]
    doc = " ".join((inspect.getdoc(function) or "").split())
    return f"{member}({', '.join(parameters)}) (backends/contract.py says: {doc})"


def require(item: str, name: str, *members: str):
    """The backend's module, failing the item in one message if it lacks a member the item uses."""
    with contract_item(item, name):
        module = load_backend(name)
    missing = [member for member in members if not callable(getattr(module, member, None))]
    if missing:
        pytest.fail(f"contract item '{item}': {module_of(name)} has no "
                    + "; no ".join(described(member) for member in missing)
                    + " (see contract item 'members')", pytrace=False)  # fmt: skip
    return module


def limit(quantity: str, float32_error: float) -> float:
    """The tolerance of one oracle figure: max(floor, FLOAT32_FACTOR x the float32 reference's figure)."""
    return max(FLOORS[quantity], FLOAT32_FACTOR * float32_error)


# ---- the oracle's reference runs, once per recipe -----------------------------------------------------------

# (recipe, candidate) -> {"batch": batch_errors, "steps": step_errors}: printed at the end of the run
MEASURED: dict[tuple[str, str], dict[str, dict[str, object]]] = {}


@functools.cache
def setup(recipe_name: str) -> oracle.Setup:
    """The oracle's inputs for a recipe (real data; one line if the datasets are not there)."""
    try:
        return oracle.prepare(recipe_name)
    except UserError as error:
        pytest.fail(f"the oracle items need the real dataset {spec.get_recipe(recipe_name).dataset} "
                    f"(`make data`, or LENET_DATA_DIR): {error}", pytrace=False)  # fmt: skip


def run_batch(candidate: str, recipe_name: str) -> oracle.Batch:
    """One candidate's (output, loss, gradients) on the recipe's oracle batch, from the shared initial weights."""
    s = setup(recipe_name)
    backend, options = oracle.candidate_backend(candidate)
    return oracle.first_batch(backend, oracle.start(backend, s.recipe, s.weights, **options), s.x, s.y)


def run_steps(candidate: str, recipe_name: str) -> oracle.Steps:
    """One candidate's (step losses, weights after) over the oracle's SGD steps."""
    s = setup(recipe_name)
    backend, options = oracle.candidate_backend(candidate)
    model = oracle.start(backend, s.recipe, s.weights, **options)
    return oracle.sgd_steps(backend, model, s.x, s.y, s.batches, oracle.STEPS)


@functools.cache
def reference_batch(recipe_name: str) -> oracle.Batch:
    return run_batch(REFERENCE, recipe_name)


@functools.cache
def reference_steps(recipe_name: str) -> oracle.Steps:
    return run_steps(REFERENCE, recipe_name)


@functools.cache
def float32_batch_errors(recipe_name: str) -> dict[str, object]:
    """The reference in float32 against itself in float64: the yardstick of the one-batch tolerances."""
    errors = oracle.batch_errors(setup(recipe_name), run_batch(oracle.FLOAT32, recipe_name),
                                 reference_batch(recipe_name))  # fmt: skip
    MEASURED.setdefault((recipe_name, oracle.FLOAT32), {})["batch"] = errors
    return errors


@functools.cache
def float32_step_errors(recipe_name: str) -> dict[str, object]:
    """The reference in float32 over the SGD steps: the yardstick of the step tolerances."""
    errors = oracle.step_errors(setup(recipe_name), run_steps(oracle.FLOAT32, recipe_name),
                                reference_steps(recipe_name))  # fmt: skip
    MEASURED.setdefault((recipe_name, oracle.FLOAT32), {})["steps"] = errors
    return errors


def measured_figures() -> list[oracle.OracleFigures]:
    """What the oracle items measured in this run, recipes in spec order, then backends, then float32 NumPy."""
    order = [*names(), oracle.FLOAT32]
    keys = sorted(MEASURED, key=lambda key: (RECIPES.index(key[0]), order.index(key[1])))
    return [oracle.figures(setup(recipe), candidate, MEASURED[recipe, candidate].get("batch"),
                           oracle.STEPS if "steps" in MEASURED[recipe, candidate] else 0,
                           MEASURED[recipe, candidate].get("steps")) for recipe, candidate in keys]  # fmt: skip


def synthetic(recipe: spec.Recipe, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tiny random images (float32, spec layout) and labels for the items that need no real data."""
    rng = np.random.default_rng(seed)
    shape = (count, recipe.in_channels, recipe.input_size, recipe.input_size)
    return rng.standard_normal(shape).astype(np.float32), rng.integers(0, recipe.num_classes, count).astype(np.int64)
