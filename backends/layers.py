"""A recipe's layer table measured from a framework: shapes and parameters from the built network."""

from __future__ import annotations

import dataclasses

from backends import load_backend
from common import spec


def framework_layer_rows(recipe: spec.Recipe, backend_name: str) -> list[spec.LayerRow]:
    """The spec's rows with output shapes and parameter counts replaced by what the framework reports."""
    backend = load_backend(backend_name)
    measured = backend.layer_shapes(backend.build_model(recipe, "cpu"))
    rows = spec.layer_rows(recipe)
    names = [row.name for row in rows[1:]]
    if [name for name, _, _ in measured] != names:
        raise RuntimeError(f"{backend_name} built layers {[m[0] for m in measured]}, the spec has {names}")
    # FLOPs are not something a framework reports: they stay the spec's.
    return [rows[0]] + [
        dataclasses.replace(row, shape=shape, parameters=count)
        for row, (_, shape, count) in zip(rows[1:], measured, strict=True)
    ]
