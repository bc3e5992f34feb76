"""The oracle's stored figures (DIR/oracle.json, written by `lenet-repro oracle`): read them and show them as a
table (the table's layout is backends.oracle's, which the conformance suite prints too). Reads JSON only: measuring
is backends.oracle's job, run by experiments.studies.oracle."""

from __future__ import annotations

import json
from pathlib import Path

from backends.oracle import OracleFigures, figure_label, oracle_markdown  # noqa: F401 - the report's table

ORACLE_FILE = "oracle.json"


def read_oracle(results: Path) -> list[OracleFigures]:
    """The figures stored in DIR/oracle.json, or none."""
    path = Path(results) / ORACLE_FILE
    if not path.exists():
        return []
    return [OracleFigures(**f) for f in json.loads(path.read_text())["figures"]]
