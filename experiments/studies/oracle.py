"""`lenet-repro oracle`: measure every registered framework (and the reference in float32) against the float64
reference on every recipe (backends.oracle) and write the figures to DIR/oracle.json, which the report shows."""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from backends import frameworks, load_backend
from backends.oracle import OracleFigures, measure
from common import spec
from common.results import write_atomic
from experiments.analysis.oracle_figures import ORACLE_FILE, oracle_markdown


def write_oracle(results: Path, figures: list[OracleFigures]) -> Path:
    """DIR/oracle.json: the figures and where they were measured."""
    versions = {name: load_backend(name).versions() for name in frameworks()}
    document = {"measured": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.machine(),
                "versions": versions, "figures": [asdict(f) for f in figures]}  # fmt: skip
    path = Path(results) / ORACLE_FILE
    write_atomic(path, (json.dumps(document, indent=1) + "\n").encode())
    return path


def run(args: argparse.Namespace) -> int:
    """`lenet-repro oracle`: measure, print the table, write DIR/oracle.json."""
    names = args.recipes.split(",") if args.recipes else list(spec.RECIPES)
    for name in names:
        spec.get_recipe(name)  # one line for an unknown recipe
    figures = [f for name in names for f in measure(name, steps=args.steps)]
    print(oracle_markdown(figures))
    print(f"wrote {write_oracle(Path(args.results), figures)}")
    return 0
