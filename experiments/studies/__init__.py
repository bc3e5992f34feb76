"""The studies: every job beside the training grid (the oracle, the benchmarks, the initialisation and order
studies, verify), one module each, found by the command line in this package.

A study module declares

    NAME                  its command: `lenet-repro NAME`
    HELP                  its line in `lenet-repro --help`
    Config                a frozen dataclass: every setting, typed, with its default
    add_arguments(parser) its options, one per field of Config, under the field's name
    run(config) -> int    the job, given a Config: nothing below the command line sees argparse

and `lenet-repro` builds one subcommand per such module (a module without NAME, like arms.py, is a helper), turns
the parsed options into the study's Config (`configure`) and calls run. A study that starts a child process of
itself gives the child a `child(payload)` function and runs it with `python -m experiments.studies.child MODULE
JSON` (the command line has no hidden options for it). Adding a study is one module here and its test
(docs/backends.md, "Adding a study").
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import pkgutil
from types import ModuleType
from typing import Any

PROTOCOL = ("NAME", "HELP", "Config", "add_arguments", "run")


def modules() -> list[ModuleType]:
    """Every study module of this package, in name order (modules without NAME are helpers, not studies)."""
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAME"):
            missing = [name for name in PROTOCOL if not hasattr(module, name)]
            if missing:
                raise TypeError(f"study {module.__name__} declares NAME but not {', '.join(missing)}")
            found.append(module)
    return found


def configure(config_type: type, args: argparse.Namespace) -> Any:
    """The study's Config from parsed options: each field from the option of its name (absent: its default)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_type) if hasattr(args, f.name)}
    return config_type(**values)
