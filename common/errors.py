"""User-facing errors: one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

# OSErrors a user causes and can fix (a read-only or full disk, a file size limit, permissions): wherever one
# escapes without a message of its own, it is still one line naming the file.
USER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", 0)}


_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)


class UserError(Exception):
    """A mistake the user can fix (bad name, missing file, corrupt data); printed as one line."""


def unknown_name(kind: str, name: object, valid: Iterable[str]) -> UserError:
    """The standard error for an unknown recipe, dataset, backend, field or option."""
    return UserError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(valid))}")


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Run a command-line `main`, turning UserError, an OSError the user can fix, and Ctrl-C into one line and an
    exit code."""
    try:
        code = main(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:
        if error.errno not in USER_ERRNOS or not error.filename:
            raise
        print(f"error: {error.filename}: {error.strerror}; {advice(error, Path(error.filename))}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished work is saved; run the same command again to resume", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def advice(error: OSError, path: Path) -> str:
    """What to do about an OSError met while writing `path`, in a few words."""
    if error.errno in _FULL:
        return "the disk is full: free some space, then run the same command again (finished work is kept)"
    if error.errno == errno.EFBIG:
        return ("the file is larger than this process may write (the file size limit, `ulimit -f`, or the file "
                "system's): raise the limit or free space, then run the same command again (finished work is kept)")
    if error.errno in _READ_ONLY:
        refused = Path(error.filename) if error.filename else path
        where = refused if refused.exists() else refused.parent  # a read-only file, or the folder that refused
        return (f"{where} is not writable here: make it writable (or use another directory), "
                "then run the same command again")
    return "check that disk and folder, then run the same command again (finished work is kept)"
