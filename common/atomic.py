"""Atomic file writes: the one helper every file the project writes goes through (run records, checkpoints,
reports, plots, data files and caches), so that a reader sees the old file or the new one, never half of one,
whatever stops the writer (Ctrl-C, SIGKILL, a full disk, a power cut after the write returned).

The rules, in one place:
* the bytes go to a temporary file beside the target (same folder, so the final rename is atomic), named
  `.<target name>.<pid>-<random>.tmp<suffix>` and created exclusively with mode 0644 less the umask;
* the temporary file is flushed and fsync'ed before it takes the target's name, and the folder is fsync'ed after;
* publishing either replaces the target (`os.replace`), optionally keeping the replaced file as a fallback
  (`keep_previous`: a hard link made before the rename, so at every instant both names hold a complete file), or
  is create-exclusive (`exclusive=True`: `os.link` of the temporary file to the target's name, which fails if a
  file appeared there meanwhile: a file someone else placed is never replaced);
* on any failure the temporary file is removed, and a failure a user can cause (read-only folder, full disk,
  file size limit, permissions) is a `WriteError`: one line naming the file, the reason and what to do. It is
  both a `UserError` (the command line prints it as one line) and an `OSError` (callers that tolerate write
  failures, such as the data cache, still catch it as one).

Test hook (fault injection): `LENET_REPRO_FAILPOINT=POINT[:NTH[:ACTION[:MATCH]]]` makes this process stop itself at
the NTH time (default 1) it reaches POINT for a file whose path contains MATCH (default: any file). ACTION is
`kill` (default: SIGKILL itself, as if the machine went away) or `interrupt` (SIGINT to its whole process group,
as Ctrl-C in a terminal does: start the command in its own session). The points of a write, in order:
`atomic.created` (empty temporary file), `atomic.half` (half the bytes written), `atomic.written` (all written,
not yet fsync'ed), `atomic.synced`, `atomic.kept-previous` (fallback link made), `atomic.published` (renamed,
folder not yet fsync'ed). Other modules add their own points with `failpoint()` (docs/faults.md lists them).
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from common.errors import UserError, advice

FAILPOINT_ENV = "LENET_REPRO_FAILPOINT"
TEMP_MARK = ".tmp"
_hits: dict[str, int] = {}



class WriteError(UserError, OSError):
    """A file that could not be written: one line with the file, the reason and what to do."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.errno = code

    def __reduce__(self):  # keeps the errno across processes (a Ray task's error is pickled)
        return type(self), (str(self), self.errno)


def write_error(error: OSError, path: Path, doing: str = "write") -> WriteError:
    """`error` met while writing `path`, as one line."""
    if isinstance(error, WriteError):
        return error
    reason = error.strerror or str(error) or type(error).__name__
    return WriteError(f"cannot {doing} {path}: {reason}; {advice(error, path)}", error.errno)


def failpoint(point: str, path: str | os.PathLike[str] = "") -> None:
    """Stop this process here if LENET_REPRO_FAILPOINT names this point (a test hook; see the module's doc)."""
    setting = os.environ.get(FAILPOINT_ENV)
    if not setting:
        return
    name, nth, action, match = (setting.split(":", 3) + ["", "", ""])[:4]
    if name != point or (match and match not in str(path)):
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] != int(nth or 1):
        return
    if (action or "kill") == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "interrupt":
        os.killpg(os.getpgrp(), signal.SIGINT)
        time.sleep(5)  # the signal arrives here as KeyboardInterrupt
    else:
        raise ValueError(f"{FAILPOINT_ENV}: unknown action {action!r} (kill or interrupt)")


def temp_name(path: Path, suffix: str = "") -> Path:
    """A fresh temporary name beside `path` (see `stale_temps`)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_MARK}{suffix}")


def stale_temps(path: Path) -> list[Path]:
    """Temporary files left beside `path` by writers that were killed mid-write (only safe to delete while no
    other process writes `path`: the run's lock is held, say)."""
    return sorted(path.parent.glob(f".{path.name}.*{TEMP_MARK}*")) if path.parent.is_dir() else []


def _create(path: Path, suffix: str) -> tuple[int, Path]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    while True:
        temp = temp_name(path, suffix)
        try:
            return os.open(temp, flags, 0o644), temp  # 0644 less the umask: results and data are for reading
        except FileExistsError:
            continue


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: not every file system or platform allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _link_or_copy(source: Path, target: Path) -> None:
    """`target` as a hard link to `source`, or a copy where the file system has no hard links."""
    try:
        os.link(source, target)
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        shutil.copyfile(source, target)


def publish(temp: Path, path: Path, *, exclusive: bool = False, keep_previous: Path | None = None) -> bool:
    """Give the complete, fsync'ed file `temp` the name `path`; False when `exclusive` and `path` exists (then
    `temp` is removed and `path` left as it is). `keep_previous`: the file `path` held so far keeps that name."""
    if exclusive:
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.EOPNOTSUPP):
                raise
            if path.exists():  # a file system without hard links: the best it allows
                return False
            os.replace(temp, path)
        else:
            temp.unlink()
        failpoint("atomic.published", path)
        _fsync_folder(path.parent)
        return True
    if keep_previous is not None and path.exists():
        held = temp_name(keep_previous)
        _link_or_copy(path, held)
        os.replace(held, keep_previous)  # at every instant both names hold a complete file
        held.unlink(missing_ok=True)  # still there if both names were links to one file (rename did nothing)
        failpoint("atomic.kept-previous", path)
    os.replace(temp, path)
    failpoint("atomic.published", path)
    _fsync_folder(path.parent)
    return True


def move_aside(path: Path, suffix: str) -> Path:
    """Rename `path` to its name plus `suffix` (replacing an older file of that name); returns the new name."""
    target = path.with_name(path.name + suffix)
    try:
        os.replace(path, target)
    except OSError as error:
        raise write_error(error, path, "move aside") from None
    _fsync_folder(path.parent)
    return target


@dataclass
class Staged:
    """A file being written: write to `stream`; `temp` is its temporary name; `published` is set on success;
    set `discard` to leave the block without publishing anything."""

    stream: BinaryIO
    temp: Path
    published: bool = False
    discard: bool = False


@contextmanager
def atomic_file(path: str | os.PathLike[str], *, exclusive: bool = False, keep_previous: Path | None = None,
                suffix: str = "") -> Iterator[Staged]:  # fmt: skip
    """Write `path` atomically: the body writes to `staged.stream`; at the end of the block the file is fsync'ed
    and published (see `publish`), or, if the block raised, removed. `suffix` ends the temporary name (".gz"
    where a reader of the temporary file needs to know it is gzipped). Errors of the body pass through as they
    are; this helper's own (create, flush, fsync, rename) are WriteErrors."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = _create(path, suffix)
    except OSError as error:
        raise write_error(error, path) from None
    staged = Staged(os.fdopen(fd, "wb"), temp)
    try:
        failpoint("atomic.created", path)
        try:
            yield staged
        except BaseException:
            _close_quietly(staged.stream)  # what is still buffered may fail to go out again: no second error
            raise
        if staged.discard:
            return
        try:
            staged.stream.flush()
            failpoint("atomic.written", path)
            os.fsync(staged.stream.fileno())
            staged.stream.close()
        except OSError as error:
            raise write_error(error, path) from None
        failpoint("atomic.synced", path)
        try:
            staged.published = publish(temp, path, exclusive=exclusive, keep_previous=keep_previous)
        except OSError as error:
            raise write_error(error, path) from None
    finally:
        _close_quietly(staged.stream)
        temp.unlink(missing_ok=True)


def _close_quietly(stream: BinaryIO) -> None:
    try:
        stream.close()
    except OSError:
        pass


def write_atomic(path: str | os.PathLike[str], data: bytes, *, exclusive: bool = False,
                 keep_previous: Path | None = None) -> bool:  # fmt: skip
    """Write `data` to `path` atomically (see `atomic_file`); False when `exclusive` and `path` already exists."""
    path = Path(path)
    with atomic_file(path, exclusive=exclusive, keep_previous=keep_previous) as staged:
        half = len(data) // 2
        try:
            staged.stream.write(data[:half])
            staged.stream.flush()
            failpoint("atomic.half", path)
            staged.stream.write(data[half:])
        except OSError as error:
            raise write_error(error, path) from None
    return staged.published
