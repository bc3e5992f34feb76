"""The project's environments (common/environments.py): locked, installed as locked, and exact across each other.

Shared mode gives every framework the same initial weights and batch orders, drawn in common/ by NumPy. MXNet's
environment runs numpy 1.23.5 and the main one numpy 2.x: the draws must be the same bits in both.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tomllib

import pytest

import backends
from common import environments
from common.batches import batch_order, epoch_order
from common.init import initial_weights
from common.spec import RECIPES

pytestmark = pytest.mark.integration  # its tests start processes or train to the end

OTHERS = [name for name in environments.ENVIRONMENTS if name != environments.MAIN]

# What shared mode draws, as sha256 per item, computed by whichever interpreter runs this script.
_DRAWS = """
import hashlib, json
from common.batches import batch_order, epoch_order
from common.init import initial_weights
from common.spec import RECIPES

def digest(arrays):
    h = hashlib.sha256()
    for name in sorted(arrays):
        h.update(name.encode()); h.update(str(arrays[name].dtype).encode()); h.update(arrays[name].tobytes())
    return h.hexdigest()

found = {}
for recipe in RECIPES.values():
    for seed in range(3):
        found[f"weights {recipe.name} {seed}"] = digest(initial_weights(recipe, seed))
for seed in range(3):
    for epoch in range(3):
        found[f"epoch_order {seed} {epoch}"] = digest({"": epoch_order(seed, epoch, 60000)})
        found[f"batch_order {seed} {epoch}"] = digest({"": batch_order(seed, epoch, 60000, 256)})
print(json.dumps(found))
"""


def draws(python: str) -> dict[str, str]:
    out = subprocess.run([python, "-c", _DRAWS], capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_backends_name_an_environment_of_the_project():
    for name in backends.names():
        assert backends.info(name).environment in environments.ENVIRONMENTS, name
    assert backends.info("mxnet").environment == "mxnet"


@pytest.mark.parametrize("other", OTHERS)
def test_shared_initial_weights_and_batch_orders_are_bit_identical_across_environments(other):
    here, there = draws(sys.executable), draws(environments.python_for(other))
    assert len(here) == len(RECIPES) * 3 + 18
    assert here == there, sorted(key for key in here if here[key] != there.get(key))
    # and the draw here is the one this process makes
    recipe = next(iter(RECIPES.values()))
    assert initial_weights(recipe, 0).keys() and epoch_order(0, 0, 10).shape == batch_order(0, 0, 10, 4).shape


@pytest.mark.parametrize("other", OTHERS)
def test_the_environments_numpy_differ_as_intended(other):
    """The point of two environments: MXNet's numpy 1.23, the main one's numpy 2."""
    code = "import numpy, json; from common import environments; print(json.dumps([numpy.__version__, " \
           "environments.current()]))"
    out = subprocess.run([environments.python_for(other), "-c", code], capture_output=True, text=True, check=True)
    version, current = json.loads(out.stdout)
    assert version.startswith("1.") and current["name"] == other
    assert current["lock_sha256"] == environments.ENVIRONMENTS[other].lock_digest()
    import numpy

    assert numpy.__version__.startswith("2.")


def _locked(lock: str) -> dict[str, str]:
    """{package: version} of a lock file, checking that every package is pinned exactly and carries hashes."""
    found: dict[str, str] = {}
    lines = (environments.LOCKS / lock).read_text().splitlines()
    for number, line in enumerate(lines):
        if not line or line.startswith((" ", "#")):
            continue
        requirement = line.split(";")[0].strip(" \\")
        assert "==" in requirement, f"{lock}:{number + 1} is not pinned exactly: {line}"
        name, version = requirement.split("==")
        assert lines[number + 1].strip().startswith("--hash=sha256:"), f"{lock}:{number + 1} has no hash"
        found[name.lower().replace("_", "-")] = version
    return found


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for requirement in requirements:
        requirement = requirement.split("#")[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_every_lock_pins_every_package_with_hashes_and_holds_pyproject_pins():
    project = tomllib.loads((environments.REPO / "pyproject.toml").read_text())
    main = _locked("main.txt")
    assert _pins(project["project"]["dependencies"]).items() <= main.items()
    assert main["numpy"].startswith("2.") and "mxnet" not in main
    for name in OTHERS:
        locked = _locked(f"{name}.txt")
        group = environments.ENVIRONMENTS[name].group
        assert _pins(project["dependency-groups"][group]).items() <= locked.items(), name
    assert _locked("mxnet.txt")["numpy"] == "1.23.5" and "jupyter" not in _locked("mxnet.txt")
    assert main.items() <= _locked("main-lab.txt").items()


def test_this_environment_is_installed_from_its_lock():
    current = environments.current()
    if current["name"] == "unmanaged":
        pytest.skip("the project runs in an environment set up by hand")
    assert current["lock_sha256"] == environments.ENVIRONMENTS[str(current["name"])].lock_digest()
    import importlib.metadata

    locked = _locked(f"{current['name']}.txt")
    for package in ("numpy", "jax", "flax", "optax", "tensorflow-cpu", "keras", "torch"):
        installed = importlib.metadata.version(package).split("+")[0]
        assert installed == locked[package], package


@pytest.mark.parametrize("other", OTHERS)
def test_each_environments_own_tests_pass_there(other, request):
    """The tests marked @pytest.mark.environment(other) (they import its framework directly), run by pytest in
    that environment's interpreter, with this run's marker expression."""
    marks = request.config.getoption("markexpr")
    command = [environments.python_for(other), "-m", "pytest", "-p", "no:cacheprovider", "-q",
               *(["-m", marks] if marks else []), "tests"]  # fmt: skip
    result = subprocess.run(command, cwd=environments.REPO, capture_output=True, text=True, timeout=1800)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
    assert " passed" in summary and "deselected" not in summary.split(" passed")[0], summary


@pytest.mark.parametrize("other", OTHERS)
def test_the_command_line_starts_in_every_environment(other):
    """`run-one` runs in the backend's environment and builds the whole command line, every study's options
    included: no study may import at its top what that environment lacks (MXNet's has no SciPy)."""
    result = subprocess.run([environments.python_for(other), "-m", "experiments", "--help"], cwd=environments.REPO,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert all(f" {name}" in result.stdout for name in ("run-one", "verify", "order-study", "bench")), result.stdout


def test_a_backend_from_another_environment_is_driven_in_its_interpreter():
    """load_backend('mxnet') in the main environment: a RemoteBackend whose child runs MXNet's interpreter;
    arrays cross between numpy 2 and numpy 1.23 intact, errors come back as their own type."""
    if backends.runs_here("mxnet"):
        pytest.skip("MXNet runs in this environment")
    from backends.remote import RemoteBackend
    from common.errors import UserError

    backend = backends.load_backend("mxnet")
    assert isinstance(backend, RemoteBackend)
    assert backend.versions()["numpy"] == "1.23.5"
    recipe = RECIPES["d2l"]
    model = backend.build_model(recipe, "cpu", seed=0)
    assert model.recipe == recipe
    weights = initial_weights(recipe, 1)
    backend.set_weights(model, weights)
    back = backend.get_weights(model)
    assert {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in back.items()} == \
        {k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in weights.items()}
    with pytest.raises(ValueError):
        backend.set_weights(model, {"nope": weights["conv1.weight"]})
    with pytest.raises(UserError, match="tpu"):
        backend.select_device("tpu")


# ---- the upgrade's tables in docs/environments.md, from the JSON files `lenet-repro verify --json` wrote ----


def test_the_upgrade_tables_are_rendered_from_the_measured_files():
    """docs/environments.md's tables come from experiments.analysis.upgrade (the page is its template's render,
    tests/test_docs.py); here the renderers against the files: every framework that changed has its row, and every
    committed run replayed against its record is float drift or identical."""
    from experiments.analysis import upgrade

    side_by_side = upgrade.side_by_side_table()
    assert [line.split(" | ")[0] for line in side_by_side.splitlines()[2:]] == [
        "| PyTorch", "| JAX", "| TensorFlow", "| NumPy reference"]
    reruns = [json.loads(p.read_text()) for p in sorted(upgrade.UPGRADE.glob("full-*.json"))]
    rows = upgrade.full_table().splitlines()[2:]
    assert len(rows) == sum(len(r["outcomes"]) for r in reruns) and all(" → " in row for row in rows)
    assert float(upgrade.worst_rerun()) < 0.5  # within float drift of the committed accuracy
    assert upgrade.quick_runs() > 0 and "different result" not in upgrade.quick_verdicts()
