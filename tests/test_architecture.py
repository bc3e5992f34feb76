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
    modules = {entry.module for entry in backends.registry().values() if not entry.plugin}
    names = modules | {m.rsplit(".", 1)[1] for m in modules}  # `from backends import <module>` too
    wrong = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in _project_files("common", "experiments", "tests", "docs")
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if any(name in line for name in names)]  # fmt: skip
    assert not wrong, "ask the registry (backends.load_backend, backends.info) instead:\n" + "\n".join(wrong)
