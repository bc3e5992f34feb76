"""The backend registry: every implementation of the spec is declared once, here, and everything else derives
its lists of backends from it (command-line choices and errors, report columns and labels, plot styles, drift
pairs, the oracle, the benchmarks, the notebook, the conformance suite and the test parametrisations).

A backend is a module that satisfies `backends.contract.Backend`; the blog post's scripts are an entry too (role
"script": they train themselves, so they implement no contract, and each recipe with a script names the framework
that trains it, `spec.Recipe.script_backend`). Two kinds of entries:

* **built in**: `BUILTIN` below, one `BackendInfo` each;
* **plug-ins**: any installed distribution that declares an entry point in the group `lenet_repro.backends`,
  name = the backend's name, value = its module path, e.g. in its pyproject.toml

      [project.entry-points."lenet_repro.backends"]
      mycopy = "my_package.my_lenet"

  A plug-in module may set `LABEL` (display name), `PACKAGES` (the framework packages it imports), `ROLE`,
  `ENVIRONMENT` (the Python environment it runs in: a project environment's name, or any name whose interpreter
  $LENET_REPRO_PYTHON_<NAME> gives), `STOCK_INIT` (its default initialisers, for stock mode: a scheme
  common.init names, or a dict of `common.init.Scheme`'s fields), `GENERATOR`, `KERNEL_NOTE` and `SPEED_GOAL`
  (BackendInfo's fields of those names); the registry reads them without importing the module, so the report
  stays framework-free.

Loading a backend imports only its own framework (PyTorch never loads MXNet, and vice versa). A backend whose
environment is not this interpreter's (MXNet, from the main environment) is loaded as a `RemoteBackend`: the same
functions, run by a child of its own interpreter (backends/remote.py). Runs start in their backend's interpreter.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, cast

from common import environments
from common.environments import MAIN
from common.errors import UserError, unknown_name

if TYPE_CHECKING:
    from common.contract import Backend

ENTRY_POINT_GROUP = "lenet_repro.backends"
# A module under check (backends.conformance.check_backend): NAME=MODULE, registered for this process and its
# children as a plug-in would be, without installing anything.
CHECK_ENV = "LENET_REPRO_CHECK_BACKEND"
Role = Literal["framework", "reference", "script"]

# Plot colours for plug-ins, in order of registration (the built-in backends have their own): Tableau's, after the
# five the built-in backends take, each far from the others (tests/test_report.py measures how far).
PALETTE = ("#8c564b", "#e377c2", "#bcbd22", "#17becf")
LINESTYLES = ("-.", (0, (5, 1)), (0, (3, 1, 1, 1)), (0, (1, 1)))


@dataclass(frozen=True)
class BackendInfo:
    """One implementation of the spec, declared once."""

    name: str  # as on the command line and in records: `--backend torch`, torch-seed0.json
    module: str  # import path of the module that satisfies backends.contract.Backend
    label: str  # display name in tables and plots
    role: Role  # "framework": a real framework under test; "reference": the float64 NumPy math, the oracle;
    #             "script": the blog post's scripts, as written (they implement no contract: `names()` leaves them out)
    packages: tuple[str, ...] = ()  # the framework's import names: its versions are recorded, and no other
    #                                 backend may import them
    style: dict[str, object] = field(default_factory=dict)  # matplotlib line style of its curves
    plugin: bool = False  # registered by another package through the entry point group
    environment: str = MAIN  # the Python environment it runs in (common/environments.py)
    generator: str = ""  # the random generator its native initial weights come from (common.init.SOURCES names
    #                      the shared draws' the same way: a shared draw that replays it gives the very numbers)
    baseline: bool = False  # the comparison point of the report's tables and of the studies (one backend)
    stock_init: str | None = None  # its default initialisers, as common.init names them (stock mode); None: it has
    #                                 none of its own (the reference)
    kernel_note: str | None = None  # "module:function" (framework-free) saying, from a record's meta, what its
    #                                  kernels were beyond the processor (e.g. "oneDNN on"); None: nothing to say
    speed_goal: float | None = None  # the most time per epoch it should take, as a multiple of the fastest
    #                                   backend's in one `make bench-backends` run (docs/speed.md); None: no goal
    modes: tuple[str, ...] | None = None  # the run modes it trains in, the first its default; None: every mode
    session: str | None = None  # "module:function" that opens a run's session itself (key, device); None: the
    #                              harness trains it through the contract


BUILTIN: tuple[BackendInfo, ...] = (
    BackendInfo("torch", "backends.torch_lenet", "PyTorch", "framework", ("torch", "torchvision"),
                {"color": "#d62728", "linestyle": "-"}, generator="torch-cpu-mt19937", baseline=True,
                stock_init="torch-default", speed_goal=1.25),
    BackendInfo("mxnet", "backends.mxnet_lenet", "MXNet", "framework", ("mxnet", "d2lzh"),
                {"color": "#1f77b4", "linestyle": "--"}, environment="mxnet", generator="mxnet-cpu",
                stock_init="gluon-default", speed_goal=1.25),
    BackendInfo("jax", "backends.jax_lenet", "JAX", "framework", ("jax", "jaxlib", "flax", "optax"),
                {"color": "#ff7f0e", "linestyle": "-."}, generator="jax-threefry2x32", stock_init="flax-default",
                speed_goal=2.0),
    BackendInfo("tensorflow", "backends.tensorflow_lenet", "TensorFlow", "framework", ("tensorflow", "keras"),
                {"color": "#2ca02c", "linestyle": (0, (5, 1))}, generator="keras-seed-generator",
                stock_init="keras-default", kernel_note="backends.kernel_notes:onednn", speed_goal=1.25),
    BackendInfo("script", "experiments.running.seed_scripts", "the blog post's script", "script", (),
                {"color": "#111111", "linestyle": (0, (1, 2))}, environment="", modes=("native",),
                session="experiments.running.seed_scripts:open_reference_run"),
    BackendInfo("numpy", "backends.numpy_lenet", "NumPy", "reference", (),
                {"color": "#9467bd", "linestyle": ":"}, generator="numpy-pcg64", speed_goal=3.0),
)  # fmt: skip
REFERENCE = "numpy"  # the float64 reference every framework is measured against (the oracle)


# What a plug-in module may declare (literals), read from its source
PLUGIN_CONSTANTS = ("LABEL", "PACKAGES", "ROLE", "ENVIRONMENT", "STOCK_INIT", "GENERATOR", "KERNEL_NOTE", "SPEED_GOAL",
                    "EXPECTED_FAILURES")  # fmt: skip


def module_constants(module: str) -> dict[str, object]:
    """PLUGIN_CONSTANTS as a plug-in module writes them, read from its source without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return {}
    found: dict[str, object] = {}
    for node in ast.parse(open(spec.origin, encoding="utf-8").read()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in PLUGIN_CONSTANTS:
                try:
                    found[node.targets[0].id] = ast.literal_eval(node.value)
                except ValueError:
                    pass
    return found


def _plugin(name: str, module: str, index: int) -> BackendInfo:
    constants = module_constants(module)
    style = {"color": PALETTE[index % len(PALETTE)], "linestyle": LINESTYLES[index % len(LINESTYLES)]}
    role = constants.get("ROLE", "framework")
    goal = constants.get("SPEED_GOAL")
    note = constants.get("KERNEL_NOTE")
    return BackendInfo(name, module, str(constants.get("LABEL", name)),
                       cast(Role, role if role in ("framework", "reference") else "framework"),
                       tuple(cast(tuple, constants.get("PACKAGES", ()))), style, plugin=True,
                       environment=str(constants.get("ENVIRONMENT", MAIN)),
                       generator=str(constants.get("GENERATOR", "")),
                       stock_init=_stock_init(name, module, constants.get("STOCK_INIT")),
                       kernel_note=str(note) if note else None,
                       speed_goal=float(cast(float, goal)) if isinstance(goal, int | float) else None)  # fmt: skip


def _stock_init(name: str, module: str, declared: object) -> str | None:
    """A plug-in's default initialisers as a scheme name: one common.init knows, or its own, declared as a dict of
    `common.init.Scheme`'s fields and added to common.init.SCHEMES as "<name>-default"."""
    from common import init

    if declared is None:
        return None
    if isinstance(declared, str) and declared in init.SCHEMES:
        return declared
    if isinstance(declared, dict):
        try:
            init.SCHEMES[f"{name}-default"] = init.Scheme(**declared)
        except (TypeError, ValueError) as error:
            raise UserError(f"{module}.STOCK_INIT: {error}") from None
        return f"{name}-default"
    raise UserError(f"{module}.STOCK_INIT = {declared!r}: give a scheme common.init names "
                    f"({', '.join(init.SCHEMES)}) or a dict of common.init.Scheme's fields")  # fmt: skip


@functools.cache
def registry() -> dict[str, BackendInfo]:
    """Every backend by name: the built-in ones, then the installed plug-ins in name order."""
    backends = {info.name: info for info in BUILTIN}
    points = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda point: point.name)
    for point in points:
        if point.name in backends:
            raise UserError(f"entry point {point.name} = {point.value} ({ENTRY_POINT_GROUP}) takes the name of a "
                            f"backend already registered ({backends[point.name].module}); rename it")  # fmt: skip
        backends[point.name] = _plugin(point.name, point.value, len(backends) - len(BUILTIN))
    checked = os.environ.get(CHECK_ENV, "")
    if checked:
        name, _, module = checked.partition("=")
        if not name or not module or name in backends:
            raise UserError(f"{CHECK_ENV}={checked}: give NAME=MODULE with a name no registered backend has")
        backends[name] = _plugin(name, module, len(backends) - len(BUILTIN))
    return backends


def baseline() -> str:
    """The comparison point: the backend the report's "same result" column and the studies measure against."""
    return next(name for name, entry in registry().items() if entry.baseline)


def kernel_note(name: str, meta: dict) -> str | None:
    """What a run's record says of its kernels beyond its processor (the registry's `kernel_note`), or None."""
    entry = registry().get(name)
    if entry is None or entry.kernel_note is None:
        return None
    module, _, function = entry.kernel_note.partition(":")
    return getattr(importlib.import_module(module), function)(meta)


def init_scheme(name: str, recipe) -> str:
    """The initialiser scheme a backend draws a recipe's native weights with: the recipe's, or in stock mode
    (scheme "stock") the backend's own defaults (`stock_init`); a UserError for a backend that has none."""
    if recipe.init != "stock":
        return recipe.init
    stock = info(name).stock_init
    if stock is None:
        raise UserError(f"backend {name!r} has no default initialisers of its own: stock mode is for the frameworks")
    return stock


def names() -> list[str]:
    """The registered backends that implement the contract (the frameworks and the reference), built-in first."""
    return [name for name, entry in registry().items() if entry.role != "script"]


def run_names() -> list[str]:
    """Everything a run can be trained by: every registry entry, the blog post's scripts included."""
    return list(registry())


def scripts() -> list[str]:
    """The entries that are the blog post's own scripts (they train themselves, in native mode)."""
    return [name for name, entry in registry().items() if entry.role == "script"]


def default_mode(name: str) -> str:
    """The mode a run of this entry takes when none is given: its first, or shared."""
    modes = info(name).modes
    return modes[0] if modes else "shared"


def check_mode(name: str, mode: str) -> None:
    """A UserError (one line) where an entry does not train in a mode (the blog post's scripts: native only)."""
    modes = info(name).modes
    if modes is not None and mode not in modes:
        raise UserError(f"{label(name)} trains in {' and '.join(modes)} mode only (--mode {modes[0]}), not {mode}")


def recipes_for(name: str, recipes) -> list[str]:
    """The recipes among `recipes` an entry can train: every one, or for a script the recipes it is written for."""
    from common import spec

    if info(name).role != "script":
        return list(recipes)
    return [recipe for recipe in recipes if spec.get_recipe(recipe).script_backend]


def trained_by(name: str, recipe) -> str:
    """The contract backend whose framework and environment train a run: itself, or for a script the framework
    its recipe's script is written in (a UserError for a recipe with no script)."""
    if info(name).role != "script":
        return name
    if recipe.script_backend is None:
        raise UserError(f"{recipe.name} reproduces none of the blog post's scripts: run it with a registered backend")
    return recipe.script_backend


def display_order(present) -> list[str]:
    """The names in `present` as tables and legends list them: the frameworks, the blog post's scripts, the
    reference, each in registry order; names no registry holds (a plug-in's records, not installed here) last."""
    rank = {"framework": 0, "script": 1, "reference": 2}
    known = order(present)
    return sorted(known, key=lambda n: rank[registry()[n].role] if n in registry() else 3)


def info(name: str) -> BackendInfo:
    """A backend's declaration; one line naming the registered backends for an unknown name."""
    backends = registry()
    if name not in backends:
        raise unknown_name("backend", name, backends)
    return backends[name]


def frameworks() -> list[str]:
    """The backends under test (everything but the float64 reference)."""
    return [name for name, entry in registry().items() if entry.role == "framework"]


def with_defaults() -> list[str]:
    """The frameworks that have default initialisers of their own (stock mode), in registry order."""
    return [name for name in frameworks() if info(name).stock_init]


def label(name: str) -> str:
    """A backend's display name; an unregistered name (a record from a plug-in not installed here) is its own."""
    entry = registry().get(name)
    return entry.label if entry else name


def order(present) -> list[str]:
    """The names in `present` in registry order; unregistered names (records of plug-ins not installed here) last."""
    present = set(present)
    known = [name for name in registry() if name in present]
    return known + sorted(present - set(known))


def runs_here(name: str) -> bool:
    """Whether this interpreter is the backend's environment (or one set up by hand, which holds what it holds)."""
    return environments.current_name() in (info(name).environment, "unmanaged")


def python_for(name: str) -> str:
    """The interpreter a backend runs in (its environment's, installed on first use)."""
    return environments.python_for(info(name).environment)


@functools.cache
def load_backend(name: str) -> Backend:
    """The backend module for a registered name; from another environment, a RemoteBackend that drives it in its
    own interpreter (one child per backend and process). Only the contract's implementations load (not the blog
    post's scripts, which train themselves)."""
    if name not in names():
        raise unknown_name("backend", name, names())
    entry = info(name)
    if not runs_here(name):
        from backends.remote import RemoteBackend

        return cast("Backend", RemoteBackend(name, python_for(name)))
    try:
        module = importlib.import_module(entry.module)
    except ModuleNotFoundError as error:
        if entry.plugin and error.name and entry.module.startswith(error.name):
            raise UserError(f"backend {name!r} is registered as {entry.module}, which cannot be imported "
                            f"({error})") from None  # fmt: skip
        raise
    return cast("Backend", module)
