"""Every command of `lenet-repro`, declared once: the ones experiments/cli.py defines itself, and the ones declared
as modules (NAME, HELP, Config, add_arguments, run), named here by module path and imported when the command line
is built, then every study of experiments/studies (found there, not listed here). The command line and the README's
list of commands both read it."""

from __future__ import annotations

import importlib
from types import ModuleType

# defined in experiments/cli.py (its COMMANDS)
OWN = ("run", "run-one", "compare", "layers", "backends", "conformance")
# the data command, the demo, the pages, the timings, the notebook, the handout, the explorer
JOBS = ("experiments.datasets", "experiments.demo", "experiments.docs", "experiments.timings", "experiments.notebook",
        "experiments.handout", "experiments.explorer")  # fmt: skip


def job_modules() -> list[ModuleType]:
    """The commands declared as modules, then every study."""
    from experiments.studies import modules

    return [importlib.import_module(name) for name in JOBS] + modules()


def names() -> tuple[list[str], list[str]]:
    """(the commands, the studies and measurements), in the command line's order: what the README lists."""
    from experiments.studies import modules

    studies = [module.NAME for module in modules()]
    return [*OWN, *(module.NAME for module in job_modules() if module.NAME not in studies)], studies
