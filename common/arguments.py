"""The argument types every command shares: a bad value is one line (common.errors), never a traceback."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from pathlib import Path

from common.errors import unknown_name

THREADS_HELP = "the framework's threads (default: every core; 1 when another job shares the machine)"


def names(kind: str, text: str | None, valid: Iterable[str]) -> list[str]:
    """Split a comma-separated list and check every name (empty: all valid names)."""
    valid = list(valid)
    if not text:
        return valid
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    for name in chosen:
        if name not in valid:
            raise unknown_name(kind, name, valid)
    return chosen


def name_list(kind: str, valid: Callable[[], Iterable[str]]) -> Callable[[str], tuple[str, ...]]:
    """An argparse type: a comma-separated list of names, each checked against valid() (as `names` does)."""

    def check(text: str) -> tuple[str, ...]:
        return tuple(names(kind, text, valid())) if text.strip() else ()

    return check


def choice(kind: str, valid: Callable[[], Iterable[str]]) -> Callable[[str], str]:
    """An argparse type: one name among valid() (an unknown one lists the valid names)."""

    def check(text: str) -> str:
        if text not in valid():
            raise unknown_name(kind, text, valid())
        return text

    return check


def files(kind: str) -> Callable[[str], tuple[Path, ...]]:
    """An argparse type: a comma-separated list of existing files (a missing one is a one-line error)."""

    def check(text: str) -> tuple[Path, ...]:
        paths = tuple(Path(name.strip()) for name in text.split(",") if name.strip())
        for path in paths:
            if not path.is_file():
                raise argparse.ArgumentTypeError(f"no such {kind}: {path}")
        return paths

    return check


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value
