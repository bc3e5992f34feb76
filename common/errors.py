"""User-facing errors: one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable


class UserError(Exception):
    """A mistake the user can fix (bad name, missing file, corrupt data); printed as one line."""


def unknown_name(kind: str, name: object, valid: Iterable[str]) -> UserError:
    """The standard error for an unknown recipe, dataset, backend, field or option."""
    return UserError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(valid))}")


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Run a command-line `main`, turning UserError and Ctrl-C into one line and an exit code."""
    try:
        code = main(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished work is saved; run the same command again to resume", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
