"""The contract items (see backends/conformance/__init__.py), each a test parametrised over the chosen backends
and, where it depends on one, every recipe of the spec."""

from __future__ import annotations

import inspect
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backends import REFERENCE, info, names, oracle
from backends.conformance import (
    FAST_RECIPE,
    INIT_SEEDS,
    MEASURED,
    RECIPES,
    SLOW_RECIPES,
    STANDARD_ERRORS,
    contract_item,
    described,
    float32_batch_errors,
    float32_step_errors,
    limit,
    loaded_in_fresh_interpreter,
    module_of,
    reference_batch,
    reference_steps,
    require,
    run_batch,
    run_steps,
    selected,
    setup,
    synthetic,
)
from backends.layers import framework_layer_rows
from common import spec
from common.contract import MEMBERS, MOMENTUM, Backend, Batched, Profiled, split_state
from common.errors import UserError
from common.init import Law, law

BACKENDS = selected()


def _by_recipe(slow_recipes=frozenset(), slow=False, fast_one=False) -> list:
    """(backend, recipe) parameters; `slow_recipes` and, with `fast_one`, every recipe but FAST_RECIPE are marked
    slow (left out of the fast tier)."""

    def is_slow(recipe: str) -> bool:
        return slow or recipe in slow_recipes or (fast_one and recipe != FAST_RECIPE)

    return [pytest.param(name, recipe, id=f"{name}-{recipe}", marks=[pytest.mark.slow] if is_slow(recipe) else [])
            for name in BACKENDS for recipe in RECIPES]  # fmt: skip


def _skip_the_oracle_itself(name: str) -> None:
    if name == REFERENCE:
        pytest.skip(f"{name} is the float64 reference the oracle compares against, not a candidate (its own check, "
                    "central finite differences, is tests/test_oracle.py)")  # fmt: skip


# ---- members ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "member"), [pytest.param(name, member, id=f"{name}-{member}")
                                              for name in BACKENDS for member in MEMBERS])  # fmt: skip
def test_members(name, member):
    """The module defines the member as a function taking the contract's parameters, in order."""
    with contract_item("members", name):
        from backends import load_backend

        module = load_backend(name)
    subject = module_of(name)
    function = getattr(module, member, None)
    if not callable(function):
        pytest.fail(f"contract item 'members': {subject} has no {described(member)}", pytrace=False)
    wanted = [p for p in inspect.signature(getattr(Backend, member)).parameters.values() if p.name != "self"]
    try:
        given = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError) as error:
        pytest.fail(f"contract item 'members': {subject}.{member}'s parameters cannot be read ({error}); "
                    f"the contract: {described(member)}", pytrace=False)  # fmt: skip
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    named = [p for p in given if p.kind not in variadic]
    problems = []
    if [p.name for p in named[: len(wanted)]] != [p.name for p in wanted]:
        problems.append(f"takes ({', '.join(p.name for p in named)})")
    else:
        for want, got in zip(wanted, named, strict=False):
            if want.default is not inspect.Parameter.empty and got.default is inspect.Parameter.empty:
                problems.append(f"gives {got.name} no default (the contract's default: {want.default!r})")
        for extra in named[len(wanted) :]:
            if extra.default is inspect.Parameter.empty:
                problems.append(f"adds {extra.name} without a default (callers pass only the contract's parameters)")
    if problems:
        pytest.fail(f"contract item 'members': {subject}.{member} {'; '.join(problems)}; the contract: "
                    f"{described(member)}", pytrace=False)  # fmt: skip


# ---- layer table --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "recipe_name"), _by_recipe())
def test_layer_table(name, recipe_name):
    """The layer table measured from the built network (shapes, parameter counts) equals the spec's."""
    require("layer table", name, "build_model", "layer_shapes")
    recipe = spec.get_recipe(recipe_name)
    with contract_item("layer table", name, recipe_name):
        built, wanted = framework_layer_rows(recipe, name), spec.layer_rows(recipe)
        differences = [f"{want.name} built {tuple(got.shape)} with {got.parameters} parameters, the spec has "
                       f"{want.shape} with {want.parameters}" for got, want in zip(built, wanted, strict=True)
                       if (tuple(got.shape), got.parameters) != (want.shape, want.parameters)]  # fmt: skip
        assert not differences, "layer table differs from the spec's: " + "; ".join(differences)


# ---- oracle -------------------------------------------------------------------------------------------------


def _beyond(quantity: str, error: float, float32_error: float, label: str | None = None) -> list[str]:
    tolerance = limit(quantity, float32_error)
    if error <= tolerance:  # NaN fails
        return []
    return [f"{label or quantity} {error:.1e} > tolerance {tolerance:.1e} (float32 NumPy: {float32_error:.1e})"]


TOLERANCE = "relative error beyond max(floor, 10 x float32 NumPy's) against the float64 reference: "


@pytest.mark.parametrize(("name", "recipe_name"), _by_recipe(SLOW_RECIPES, fast_one=True))
def test_oracle(name, recipe_name):
    """One real batch from the spec's initial weights: the output, the loss and every parameter's gradient."""
    _skip_the_oracle_itself(name)
    require("oracle", name, "build_model", "set_weights", "forward", "loss_and_gradients")
    with contract_item("oracle", name, recipe_name):
        s, exact, float32 = setup(recipe_name), reference_batch(recipe_name), float32_batch_errors(recipe_name)
        got = run_batch(name, recipe_name)
        output, _, gradients = got
        assert np.shape(output) == exact[0].shape, f"forward gave shape {np.shape(output)}, not {exact[0].shape}"
        assert set(gradients) == set(s.parameters), (f"loss_and_gradients named gradients {sorted(gradients)}, "
                                                     f"the parameters are {s.parameters}")  # fmt: skip
        errors = oracle.batch_errors(s, got, exact)
        MEASURED.setdefault((recipe_name, name), {})["batch"] = errors
        problems = _beyond("output", errors["output"], float32["output"])
        problems += _beyond("loss", errors["loss"], float32["loss"])
        for parameter, error in errors["gradients"].items():
            problems += _beyond("gradient", error, float32["gradients"][parameter], f"gradient of {parameter}")
        assert not problems, TOLERANCE + "; ".join(problems)


@pytest.mark.parametrize(("name", "recipe_name"), _by_recipe(slow=True))
def test_fifty_sgd_steps(name, recipe_name):
    """50 SGD steps on real batches from the spec's initial weights: every step's loss, every weight after."""
    _skip_the_oracle_itself(name)
    require("50 SGD steps", name, "build_model", "set_weights", "train_step", "get_weights")
    with contract_item("50 SGD steps", name, recipe_name):
        s, exact, float32 = setup(recipe_name), reference_steps(recipe_name), float32_step_errors(recipe_name)
        got = run_steps(name, recipe_name)
        assert set(got[1]) == set(s.parameters), (f"get_weights named {sorted(got[1])}, the parameters are "
                                                  f"{s.parameters}")  # fmt: skip
        errors = oracle.step_errors(s, got, exact)
        MEASURED.setdefault((recipe_name, name), {})["steps"] = errors
        problems = _beyond("step_losses", errors["step_losses"], float32["step_losses"], "per-step losses")
        for parameter, error in errors["weights_after"].items():
            problems += _beyond("weights_after", error, float32["weights_after"][parameter],
                                f"{parameter} after {oracle.STEPS} steps")  # fmt: skip
        assert not problems, TOLERANCE + "; ".join(problems)


# ---- resume -------------------------------------------------------------------------------------------------

# Momentum, so that the optimiser has a state to save (most recipes have none), and a small step.
RESUME_OVERRIDES = {"optimizer.lr": 0.01, "optimizer.momentum": 0.9}
RESUME_BATCH, RESUME_STEPS = 4, 2


@pytest.mark.parametrize(("name", "recipe_name"), _by_recipe(fast_one=True))
def test_resume(name, recipe_name):
    """Train, get_state, set_state into a fresh model, train on: exactly as a model never interrupted."""
    backend = require("resume", name, "build_model", "train_step", "get_state", "set_state", "get_weights")
    recipe = spec.get_recipe(recipe_name, RESUME_OVERRIDES)
    x, y = synthetic(recipe, 2 * RESUME_STEPS * RESUME_BATCH)
    batches = [slice(i * RESUME_BATCH, (i + 1) * RESUME_BATCH) for i in range(2 * RESUME_STEPS)]
    with contract_item("resume", name, recipe_name):
        uninterrupted = backend.build_model(recipe, "cpu", seed=0)
        for batch in batches[:RESUME_STEPS]:
            backend.train_step(uninterrupted, x[batch], y[batch])
        state = backend.get_state(uninterrupted)
        assert isinstance(state, dict) and all(isinstance(v, np.ndarray) for v in state.values()), (
            f"get_state gave {type(state).__name__}, not a dict of named NumPy arrays"
        )
        weights, buffers = split_state(state)
        shapes = spec.parameter_shapes(recipe)
        assert set(weights) == set(shapes) and set(buffers) == set(shapes), (
            f"get_state named {sorted(state)}: after steps with momentum 0.9 a state holds each parameter and its "
            f"momentum buffer as '{MOMENTUM}<parameter>' (common.contract.join_state)"
        )
        assert all(buffers[k].shape == shapes[k] for k in shapes), "momentum buffers are kept in the spec's layout"
        want = [backend.train_step(uninterrupted, x[batch], y[batch])[0] for batch in batches[RESUME_STEPS:]]
        resumed = backend.build_model(recipe, "cpu", seed=1)
        backend.set_state(resumed, state)
        got = [backend.train_step(resumed, x[batch], y[batch])[0] for batch in batches[RESUME_STEPS:]]
        hint = ("(with momentum 0.9: get_state must copy the weights and the optimiser's state, set_state restore "
                "both)")  # fmt: skip
        assert got == want, f"losses after resuming {got} differ from those of a model never interrupted {want} {hint}"
        after, expected = backend.get_weights(resumed), backend.get_weights(uninterrupted)
        differ = {k: oracle.relative_error(after[k], v) for k, v in expected.items() if not np.array_equal(after[k], v)}
        assert not differ, (f"weights after resuming differ from those of a model never interrupted "
                            f"(relative errors {differ}) {hint}")  # fmt: skip


@pytest.mark.parametrize(("name", "recipe_name"), _by_recipe())
def test_weights_round_trip(name, recipe_name):
    """get_weights gives named copies in the spec's layout; set_weights loads them exactly; wrong names: ValueError."""
    backend = require("resume", name, "build_model", "get_weights", "set_weights")
    recipe = spec.get_recipe(recipe_name)
    shapes = spec.parameter_shapes(recipe)
    with contract_item("resume", name, recipe_name):
        weights = backend.get_weights(backend.build_model(recipe, "cpu", seed=3))
        layout = {k: tuple(np.shape(v)) for k, v in weights.items()}
        assert layout == shapes, f"get_weights gave {layout}, the spec's parameters are {shapes}"
        model = backend.build_model(recipe, "cpu", seed=4)
        backend.set_weights(model, weights)
        back = backend.get_weights(model)
        differ = [k for k, v in weights.items() if not np.array_equal(back[k], v)]
        assert not differ, f"set_weights then get_weights changed {differ} (a round trip must be exact)"
        for value in back.values():
            value += 1.0
        differ = [k for k, v in backend.get_weights(model).items() if not np.array_equal(v, weights[k])]
        assert not differ, f"changing the arrays get_weights returned changed the model's {differ} (give copies)"
        dropped = next(iter(shapes))
        try:
            backend.set_weights(model, {k: v for k, v in weights.items() if k != dropped})
        except ValueError:
            pass
        else:
            raise AssertionError(f"set_weights accepted weights without {dropped}; the contract: a wrong set of "
                                 "names raises ValueError")  # fmt: skip


# ---- native init --------------------------------------------------------------------------------------------


def _law(scheme: str, recipe: spec.Recipe, parameter: str) -> Law:
    return law(scheme, spec.parameter_shapes(recipe), parameter)


def _distribution_problems(parameter: str, values: np.ndarray, expected: Law) -> list[str]:
    """Where a parameter's values (pooled over seeds) do not look drawn from the law: within its bound, mean 0 and
    its mean square, each within STANDARD_ERRORS standard errors (zeros for a bound of 0)."""
    values = values.astype(np.float64).ravel()
    largest, bound = float(np.abs(values).max()), expected.bound
    if bound == 0:
        return [f"{parameter} starts at zero in this scheme, drawn up to {largest:.3g}"] if largest else []
    n, problems = values.size, []
    if largest > bound * (1 + 1e-6):
        problems.append(f"{parameter} has values up to {largest:.4g}, beyond the bound {bound:.4g}")
    mean, mean_se = values.mean(), math.sqrt(expected.variance / n)
    if abs(mean) > STANDARD_ERRORS * mean_se:
        problems.append(f"{parameter} has mean {mean:.3g}, {abs(mean) / mean_se:.1f} standard errors from 0")
    square, square_se = float((values**2).mean()), math.sqrt((expected.fourth - expected.variance**2) / n)
    if abs(square - expected.variance) > STANDARD_ERRORS * square_se:
        problems.append(f"{parameter} has standard deviation {math.sqrt(square):.4g}, the scheme's is "
                        f"{math.sqrt(expected.variance):.4g} ({abs(square - expected.variance) / square_se:.1f} "
                        "standard errors off in the mean square)")  # fmt: skip
    return problems


def _native_draws_follow(backend, name: str, recipe: spec.Recipe, scheme: str) -> None:
    """build_model's own initial weights follow `scheme` (per parameter over several seeds); the same seed draws
    the same weights (also through native_init), another seed others."""
    shapes = spec.parameter_shapes(recipe)
    drawn = {seed: backend.get_weights(backend.build_model(recipe, "cpu", seed=seed)) for seed in INIT_SEEDS}
    assert set(drawn[INIT_SEEDS[0]]) == set(shapes), f"get_weights named {sorted(drawn[INIT_SEEDS[0]])}"
    problems = []
    for parameter in shapes:
        pooled = np.concatenate([np.ravel(drawn[seed][parameter]) for seed in INIT_SEEDS])
        problems += _distribution_problems(parameter, pooled, _law(scheme, recipe, parameter))
    assert not problems, (f"native initial weights (seeds {INIT_SEEDS}) do not follow the {scheme} scheme "
                          f"(common/init.py), within {STANDARD_ERRORS} standard errors: "
                          + "; ".join(problems))  # fmt: skip
    first, second = INIT_SEEDS[:2]
    model = backend.build_model(recipe, "cpu", seed=first)
    same = backend.get_weights(model)
    differ = [k for k in shapes if not np.array_equal(same[k], drawn[first][k])]
    assert not differ, f"build_model with seed {first} twice gave different {differ}"
    backend.native_init(model, second)
    again = backend.get_weights(model)
    differ = [k for k in shapes if not np.array_equal(again[k], drawn[second][k])]
    assert not differ, f"native_init(model, {second}) gave other {differ} than build_model(seed={second})"
    alike = [k for k in shapes if _law(scheme, recipe, k).bound and np.array_equal(drawn[first][k], drawn[second][k])]
    assert not alike, f"seeds {first} and {second} gave the same {alike}"


@pytest.mark.parametrize(("name", "recipe_name"), _by_recipe())
def test_native_init(name, recipe_name):
    """build_model's own initial weights follow the recipe's scheme (uniform bounds, mean and spread, per
    parameter over several seeds); the same seed draws the same weights (also through native_init), another seed
    others."""
    backend = require("native init", name, "build_model", "get_weights", "native_init")
    recipe = spec.get_recipe(recipe_name)
    with contract_item("native init", name, recipe_name):
        _native_draws_follow(backend, name, recipe, recipe.init)


@pytest.mark.parametrize("name", BACKENDS)
def test_stock_init(name):
    """Stock mode (the recipe's scheme "stock"): the framework's own default initialisers, the law the registry
    names (`stock_init`), seeded as in native mode; a backend without defaults of its own refuses in one line."""
    backend = require("stock init", name, "build_model", "get_weights", "native_init")
    recipe = spec.get_recipe(FAST_RECIPE, {"init": "stock"})
    stock = info(name).stock_init
    with contract_item("stock init", name, FAST_RECIPE):
        if stock is None:
            with pytest.raises(UserError, match="stock"):
                backend.build_model(recipe, "cpu", seed=0)
            return
        _native_draws_follow(backend, name, recipe, stock)


@pytest.mark.parametrize("name", BACKENDS)
def test_profile(name):
    """Optional (`lenet-repro profile`): profile_ops names each operation of the training steps it ran with the
    seconds the framework's profiler gave it (a convolution among them), and profiled steps train exactly as steps
    that are not."""
    backend = require("profile", name, "build_model", "train_step", "get_weights")
    if not isinstance(backend, Profiled):
        pytest.skip(f"{module_of(name)} has no profile_ops (optional: `lenet-repro profile` lists it unprofiled)")
    recipe = spec.get_recipe(FAST_RECIPE)
    x, y = synthetic(recipe, 8)
    with contract_item("profile", name, FAST_RECIPE):
        plain, profiled = backend.build_model(recipe, "cpu", seed=0), backend.build_model(recipe, "cpu", seed=0)
        for _ in range(2):
            backend.train_step(plain, x, y)
        ops = backend.profile_ops(profiled, x, y, 2)
        assert ops and all(isinstance(op, str) and seconds >= 0 for op, seconds in ops.items()), (
            f"profile_ops gave {ops!r}: a dict of operation names to seconds"
        )
        assert any("conv" in op.lower() for op in ops), f"no convolution among the operations profiled: {sorted(ops)}"
        after, expected = backend.get_weights(profiled), backend.get_weights(plain)
        assert all(np.array_equal(after[k], v) for k, v in expected.items()), (
            "two steps under profile_ops left other weights than the same two steps unprofiled"
        )


@pytest.mark.parametrize("name", BACKENDS)
def test_seeds_step(name):
    """Optional (`lenet-repro bench-grid`): seeds_step trains several seeds at once, each as its own model would
    be trained alone (the same losses, step after step, to float rounding: the batched kernels sum in another
    order)."""
    backend = require("seeds step", name, "build_model", "train_step")
    if not isinstance(backend, Batched):
        pytest.skip(f"{module_of(name)} has no seeds_step (optional: bench-grid times it one seed at a time)")
    recipe = spec.get_recipe(FAST_RECIPE)
    x, y = synthetic(recipe, 16)
    xs, ys = x.reshape(2, 8, *x.shape[1:]), y.reshape(2, 8)
    with contract_item("seeds step", name, FAST_RECIPE):
        step = backend.seeds_step(recipe, 2)
        alone = [backend.build_model(recipe, "cpu", seed=seed) for seed in range(2)]
        for _ in range(3):
            want = sum(backend.train_step(model, xs[i], ys[i])[0] for i, model in enumerate(alone))
            got = step(xs, ys)
            assert got == pytest.approx(want, rel=1e-5), f"two seeds at once lost {got}, each alone {want} in sum"


# ---- native order -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BACKENDS)
def test_native_order(name):
    """native_order(seed, epoch, n) is a permutation of range(n), fixed by (seed, epoch), another for others."""
    backend = require("native order", name, "native_order")
    n = 1000
    with contract_item("native order", name):
        order = np.asarray(backend.native_order(0, 0, n))
        assert order.shape == (n,) and np.issubdtype(order.dtype, np.integer), (
            f"native_order(0, 0, {n}) gave {order.dtype} of shape {order.shape}, not {n} integers"
        )
        assert np.array_equal(np.sort(order), np.arange(n)), f"native_order(0, 0, {n}) is not a permutation of range(n)"
        assert not np.array_equal(order, np.arange(n)), f"native_order(0, 0, {n}) does not shuffle"
        assert np.array_equal(order, backend.native_order(0, 0, n)), "native_order(0, 0, n) twice gave two orders"
        assert not np.array_equal(order, backend.native_order(1, 0, n)), "seeds 0 and 1 gave the same order"
        assert not np.array_equal(order, backend.native_order(0, 1, n)), "epochs 0 and 1 gave the same order"


# ---- imports ------------------------------------------------------------------------------------------------

_IMPORTS = """
import importlib, json, sys
import numpy as np
forbidden = set(json.loads(sys.argv[1]))
loaded = lambda: sorted(forbidden & {name.split(".")[0] for name in sys.modules})
module = importlib.import_module(sys.argv[2])
found = {"import": loaded()}
try:
    from common import spec
    recipe = spec.get_recipe("d2l")
    model = module.build_model(recipe, "cpu")
    module.train_step(model, np.zeros((2, 1, 28, 28), np.float32), np.zeros(2, np.int64))
    found["use"] = loaded()
except Exception as error:  # reported by the other items
    found["use"] = None
print(json.dumps(found))
"""


@pytest.mark.slow  # a fresh interpreter importing the framework: seconds each
@pytest.mark.parametrize("name", BACKENDS)
def test_imports(name):
    """In a fresh interpreter, importing the backend (then building a model and training one step) loads no
    package of any other registered backend."""
    own = set(info(name).packages)
    forbidden = sorted({p for other in names() if other != name for p in info(other).packages} - own)
    if not forbidden:
        pytest.skip("no other registered backend declares framework packages")
    with contract_item("imports", name):
        found = loaded_in_fresh_interpreter(name, _IMPORTS, json.dumps(forbidden), module_of(name))
        owners = {p: other for other in names() if other != name for p in info(other).packages}
        for phase, what in (("import", "importing it"), ("use", "building a model and training a step")):
            if found[phase]:
                named = ", ".join(f"{p} (backend {owners[p]})" for p in found[phase])
                raise AssertionError(f"{what} loaded {named}: a backend imports only its own framework")


# ---- devices ------------------------------------------------------------------------------------------------


def _one_line(error: BaseException) -> bool:
    return bool(str(error)) and "\n" not in str(error).strip()


@pytest.mark.parametrize("name", BACKENDS)
def test_devices(name):
    """An unknown device is one line (UserError); "cpu" and "auto" work; "gpu" works or is one line; a model
    built for the CPU says so."""
    backend = require("devices", name, "select_device", "device_name", "build_model")
    with contract_item("devices", name):
        try:
            backend.select_device("tpu")
        except UserError as error:
            assert _one_line(error), f"select_device('tpu') raised UserError, but not in one line: {str(error)!r}"
            assert "tpu" in str(error), f"select_device('tpu')'s message does not name the device: {error}"
        else:
            raise AssertionError("select_device('tpu') did not raise UserError (an unknown device)")
        backend.select_device("cpu")
        backend.select_device("auto")
        try:
            backend.select_device("gpu")
        except UserError as error:
            assert _one_line(error), f"select_device('gpu') raised UserError, but not in one line: {str(error)!r}"
        described_device = backend.device_name(backend.build_model(spec.get_recipe("d2l"), "cpu"))
        assert "cpu" in described_device, f"a model built with device 'cpu' is recorded as {described_device!r}"


# ---- typed --------------------------------------------------------------------------------------------------


def _source_root(module: str) -> str:
    """The folder that holds a module's top-level package (what a type checker needs on its search path)."""
    import importlib.util

    top = importlib.util.find_spec(module.split(".")[0])
    location = list(top.submodule_search_locations or [])[:1] or [os.path.dirname(top.origin or "")]
    return os.path.dirname(location[0]) if top.submodule_search_locations else location[0]


@pytest.fixture(scope="session")
def mypy_cache(tmp_path_factory) -> Path:
    """One mypy cache for every backend's check in this process (xdist workers have their own): the project and the
    standard library are read once, not once per backend."""
    return tmp_path_factory.mktemp("mypy-cache")


@pytest.mark.slow  # mypy reads the backend and the project: seconds each
@pytest.mark.parametrize("name", BACKENDS)
def test_typed(name, tmp_path, mypy_cache):
    """A type checker (mypy) reads the same contract: the module, assigned to a `Backend`, has every member with
    parameter and return types compatible with the Protocol's. The frameworks themselves are not type-checked."""
    module = info(name).module
    frameworks = sorted({package for other in names() for package in info(other).packages} | {"chex"})
    (tmp_path / "mypy.ini").write_text(
        "[mypy]\nfollow_imports = silent\nignore_missing_imports = True\n"
        f"cache_dir = {mypy_cache}\n[mypy-{','.join(f'{p}.*' for p in frameworks)}]\nfollow_imports = skip\n")
    (tmp_path / "check.py").write_text(f"import {module} as candidate\nfrom common.contract import Backend\n\n"
                                       "backend: Backend = candidate\n")  # fmt: skip
    roots = dict.fromkeys([_source_root("backends"), _source_root(module)])
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(tmp_path / "mypy.ini"),
                             "--no-error-summary", str(tmp_path / "check.py")], capture_output=True, text=True,
                            env={**os.environ, "MYPYPATH": os.pathsep.join(roots)}, cwd=tmp_path,
                            timeout=600)  # fmt: skip
    found = [line.split(": ", 1)[1] for line in result.stdout.splitlines() if "check.py" in line]
    assert result.returncode == 0, (f"contract item 'typed': {module_of(name)} (backend {name}) is not a "
                                    f"backends.contract.Backend for mypy: " + "; ".join(found))  # fmt: skip
