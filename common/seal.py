"""Seals: every record the project writes carries a digest of its own content and the code version that wrote it,
so a record changed afterwards (by hand, a bad merge, a disk error, a script) is named, not silently believed.

The digest is the sha256 of the record's canonical JSON: every field but the seal itself, keys sorted, no spaces,
floats as Python writes them (which read back to the same floats), so the layout a file is indented with does
not matter, and a change of one digit does. A seal says nothing about who wrote the file: it catches accidents,
not forgery (anyone can seal again: `lenet-repro compare --accept-changed` does it on purpose).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import subprocess
from pathlib import Path
from typing import Any

SEAL = "seal"
REPO = Path(__file__).resolve().parents[1]


def digest(content: dict[str, Any]) -> str:
    """The sha256 of the content's canonical JSON, its seal left out."""
    canonical = json.dumps({k: v for k, v in content.items() if k != SEAL}, sort_keys=True, separators=(",", ":"),
                           allow_nan=False, ensure_ascii=False)  # fmt: skip
    return hashlib.sha256(canonical.encode()).hexdigest()


@functools.cache
def code_version() -> str:
    """The project's version and, in a git checkout, its commit: what a seal names as its writer."""
    try:
        version = importlib.metadata.version("lenet-repro")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    commit = git_commit()
    return f"lenet-repro {version}" + (f" ({commit[:12]})" if commit else "")


@functools.cache
def git_commit() -> str | None:
    """The project's current commit, when it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def sealed(content: dict[str, Any]) -> dict[str, Any]:
    """The content with a fresh seal (its digest and the code version writing it)."""
    return {**{k: v for k, v in content.items() if k != SEAL}, SEAL: {"sha256": digest(content),
                                                                      "code": code_version()}}  # fmt: skip


def problem(content: dict[str, Any]) -> str | None:
    """What is wrong with a content's seal, in a few words, or None when it matches."""
    seal = content.get(SEAL)
    if not isinstance(seal, dict) or "sha256" not in seal:
        return "it has no seal (written before records were sealed, or its seal was removed)"
    if seal["sha256"] != digest(content):
        return (f"its content does not match its seal: changed after {seal.get('code') or 'the code'} wrote it "
                "(a number edited, a field added or removed)")
    return None


def write_json(path: Path, content: dict[str, Any], indent: int | None = 1) -> None:
    """Write a JSON file sealed, atomically (a study's file)."""
    from common.atomic import write_atomic

    write_atomic(path, json.dumps(sealed(content), indent=indent).encode())


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A sealed JSON file written by write_json; one line (UserError) if its content no longer matches its seal."""
    from common.errors import UserError

    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {what} {path}: {error}") from None
    wrong = problem(content) if isinstance(content, dict) else "it is not a JSON object"
    if wrong:
        raise UserError(f"{what} {path}: {wrong}; restore it (git checkout), or move it away to run the study again")
    return {k: v for k, v in content.items() if k != SEAL}
