"""The code's layers: each folder imports only the ones below it (lazy imports inside functions included), and
outside backends/ no code names a backend's module: it asks the registry."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import backends

ROOT = Path(__file__).resolve().parent.parent
# Each layer, bottom up, and what it may import besides itself.
LAYERS = {
    "common": set(),
    "backends": {"common"},
    "experiments.running": {"common", "backends"},
    "experiments.analysis": {"common", "backends"},
    "experiments.studies": {"common", "backends", "experiments.running", "experiments.analysis"},
}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, absolute, wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _layer(module: str) -> str | None:
    return next((layer for layer in sorted(LAYERS, key=len, reverse=True)
                 if module == layer or module.startswith(layer + ".")), None)  # fmt: skip


def _project_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("layer", list(LAYERS))
def test_each_layer_imports_only_the_layers_below_it(layer):
    allowed = LAYERS[layer] | {layer}
    wrong = []
    for path in _project_files(*[layer.replace(".", "/")]):
        for line, name in _imports(path):
            target = _layer(name) or (name.split(".")[0] if name.split(".")[0] == "experiments" else None)
            if target is not None and target not in allowed:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {name} ({target} is above {layer})")
    assert not wrong, "\n".join(wrong)


def test_analysis_never_imports_a_framework_backend():
    """The report reads records; importing a backend's module would import its framework."""
    modules = {entry.module for entry in backends.registry().values()}
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for path in _project_files("experiments/analysis") for line, name in _imports(path)
             if any(name == m or name.startswith(m + ".") for m in modules)]  # fmt: skip
    assert not wrong, "\n".join(wrong)


def test_outside_backends_no_code_names_a_backend_module():
    # the contract's implementations (the blog post's scripts' entry names the package that runs them, not a backend)
    modules = {backends.info(name).module for name in backends.names() if not backends.info(name).plugin}
    names = modules | {m.rsplit(".", 1)[1] for m in modules}  # `from backends import <module>` too
    wrong = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in _project_files("common", "experiments", "tests", "docs")
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if any(name in line for name in names)]  # fmt: skip
    assert not wrong, "ask the registry (backends.load_backend, backends.info) instead:\n" + "\n".join(wrong)


def _names_in(node: ast.AST) -> list[str]:
    """The string constants of an expression: a constant, or a tuple, list or set of them."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [name for element in node.elts for name in _names_in(element)]
    return []


def _conditions_on_names(path: Path, names: set[str]) -> list[str]:
    """Every comparison (==, !=, in, not in) that names a backend or a framework package with a bare string, and
    every `match` case on one: code that branches on which framework it is."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        operands: list[ast.AST] = []
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
        elif isinstance(node, ast.MatchValue):
            operands = [node.value]
        hits = sorted({name for operand in operands for name in _names_in(operand) if name in names})
        if hits:
            found.append(f"{path}:{node.lineno}: compares with {', '.join(hits)}")
    return found


def test_outside_backends_no_code_branches_on_a_framework_name():
    """Framework knowledge lives in the registry (backends/__init__.py) and the spec: no code outside backends/
    (and the tests) compares with a backend's name or a framework package's name."""
    names = set(backends.run_names()) | {p for entry in backends.registry().values() for p in entry.packages}
    wrong = [hit for path in _project_files("common", "experiments") for hit in _conditions_on_names(path, names)]
    assert not wrong, "ask the registry (a field of BackendInfo) or the spec instead:\n" + "\n".join(wrong)


def test_the_condition_check_catches_a_bare_name(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('def f(backend):\n    if backend == "torch":\n        return 1\n'
                      '    match backend:\n        case "mxnet":\n            return 2\n'
                      '    return backend in ("jax", "x") or backend == "other"\n')
    assert [hit.split(": ", 1)[1] for hit in _conditions_on_names(sample, {"torch", "jax", "mxnet"})] == \
        ["compares with torch", "compares with mxnet", "compares with jax"]


def test_a_backends_tests_are_picked_by_its_exact_name():
    """make test BACKEND=mxnet keeps the items parametrised with "mxnet", not those whose id merely contains it."""
    from types import SimpleNamespace

    from tests.conftest import chosen

    def item(**params):
        return SimpleNamespace(callspec=SimpleNamespace(params=params))

    assert chosen(item(name="mxnet", recipe_name="d2l"), ["mxnet"])
    assert not chosen(item(name="torch", recipe_name="seed-mxnet"), ["mxnet"])  # a recipe named after it
    assert not chosen(item(run="torch-seed-mxnet"), ["mxnet"]) and not chosen(SimpleNamespace(), ["mxnet"])


def test_a_unit_test_that_starts_a_process_fails_naming_the_tier_to_declare():
    import subprocess
    import sys

    with pytest.raises(AssertionError, match="pytestmark = pytest.mark.integration"):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert subprocess.run(["git", "--version"], capture_output=True).returncode == 0  # what a seal reads
