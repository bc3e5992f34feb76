"""`python -m experiments.studies.child MODULE JSON`: the child process of a study, one measurement in a fresh
interpreter (possibly another environment's): MODULE's `child(payload)` with the JSON payload, exit code its result.
`measure` starts one from the parent and returns what the child printed last, as JSON."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from typing import Any

from common.errors import run_cli


def command(python: str, module: str, payload: dict[str, Any]) -> list[str]:
    """The command line of a child of study `module` in the interpreter `python`."""
    return [python, "-m", "experiments.studies.child", module, json.dumps(payload)]


def measure(python: str, module: str, payload: dict[str, Any], threads: int | None = None,
            timeout: float = 900, env: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Run one child to its end (with OMP_NUM_THREADS=`threads` where given, and `env` added to its environment)
    and return the JSON object its last line of output holds; a RuntimeError with the end of its stderr where it
    fails."""
    env = {**os.environ, **(env or {}), **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    out = subprocess.run(command(python, module, payload), capture_output=True, text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{module} child {payload} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    module, payload = argv if argv is not None else sys.argv[1:]
    return importlib.import_module(f"experiments.studies.{module}").child(json.loads(payload))


if __name__ == "__main__":
    run_cli(main)
