"""`python -m experiments.studies.child MODULE JSON`: the child process of a study, one measurement in a fresh
interpreter (possibly another environment's): MODULE's `child(payload)` with the JSON payload, exit code its result."""

from __future__ import annotations

import importlib
import json
import sys

from common.errors import run_cli


def main(argv: list[str] | None = None) -> int:
    module, payload = argv if argv is not None else sys.argv[1:]
    return importlib.import_module(f"experiments.studies.{module}").child(json.loads(payload))


if __name__ == "__main__":
    run_cli(main)
