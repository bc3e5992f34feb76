"""`lenet-repro oracle`: measure every registered framework (and the reference in float32) against the float64
reference on every recipe (backends.oracle) and write the figures to DIR/oracle.json, which the report shows."""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from backends import frameworks, load_backend
from backends.oracle import OracleFigures, measure
from common import spec
from common.arguments import names, positive_int
from common.results import write_atomic
from experiments.analysis.oracle_figures import ORACLE_FILE, oracle_markdown

NAME = "oracle"
HELP = "each framework against the float64 reference, into DIR/oracle.json"


@dataclass(frozen=True)
class Config:
    results: str = "results"  # the directory oracle.json is written into
    recipes: str | None = None  # comma-separated; None: every recipe
    steps: int = 50  # SGD steps compared after the one-batch figures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", default=Config.results, help="directory to write oracle.json into")
    parser.add_argument("--recipes", help=f"comma-separated, default all: {','.join(spec.RECIPES)}")
    parser.add_argument("--steps", type=positive_int, default=Config.steps)


def write_oracle(results: Path, figures: list[OracleFigures]) -> Path:
    """DIR/oracle.json: the figures and where they were measured."""
    versions = {name: load_backend(name).versions() for name in frameworks()}
    document = {"measured": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.machine(),
                "versions": versions, "figures": [asdict(f) for f in figures]}  # fmt: skip
    path = Path(results) / ORACLE_FILE
    write_atomic(path, (json.dumps(document, indent=1) + "\n").encode())
    return path


def run(config: Config) -> int:
    """`lenet-repro oracle`: measure, print the table, write DIR/oracle.json."""
    chosen = names("recipe", config.recipes, spec.RECIPES)  # one line for an unknown recipe
    figures = [f for name in chosen for f in measure(name, steps=config.steps)]
    print(oracle_markdown(figures))
    print(f"wrote {write_oracle(Path(config.results), figures)}")
    return 0
