"""The results format and the run store: one JSON file per run, written atomically, plus a checkpoint
that carries both the training state and the run record, so an interrupted run resumes exactly.

Layout under the results directory:
    <variant>/<dataset>/<recipe>/<backend>-seed<k>.json      the run record (committed when published)
    .checkpoints/<variant>/<dataset>/<recipe>/<backend>-seed<k>.npz   state after the last finished epoch
    .locks/<variant>/<dataset>/<recipe>/<backend>-seed<k>.lock        held by the driver training that run
where <variant> is the mode ("shared" or "native"), with "-epochs<E>" and "-limit<N>" appended for runs that
override the recipe's epochs or use a data subset, so that they never mix with full runs.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import UserError, unknown_name
from common.spec import Recipe, get_recipe

MODES = ("shared", "native")
# The seed's own scripts, run as reference runs beside the two backends. They draw their own weights and
# shuffle with their own samplers, so their runs are always native-mode runs.
SCRIPT_BACKEND = "script"
STATUSES = ("complete", "diverged", "partial")
CHECKPOINTS = ".checkpoints"
LOCKS = ".locks"


@dataclass(frozen=True)
class RunKey:
    """What identifies one run."""

    backend: str
    dataset: str
    recipe: str
    seed: int
    mode: str = "shared"
    limit: int | None = None
    epochs: int | None = None  # an override of the recipe's epochs; None: the recipe's own

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise unknown_name("mode", self.mode, MODES)
        if self.backend == SCRIPT_BACKEND and self.mode != "native":
            raise UserError("the seed's scripts draw their own weights and shuffle their own way: "
                            "their runs are native-mode runs (--mode native)")

    @property
    def variant(self) -> str:
        """Folder for this mode and these overrides: native, shortened and subset runs stay apart from full ones."""
        return variant_name(self.mode, self.limit, self.epochs)

    def spec(self) -> Recipe:
        """The recipe this run trains, with the epochs override applied."""
        return get_recipe(self.recipe, {"epochs": self.epochs} if self.epochs else None)

    def relative(self, suffix: str) -> Path:
        return Path(self.variant, self.dataset, self.recipe, f"{self.backend}-seed{self.seed}{suffix}")

    def label(self) -> str:
        return f"{self.backend} {self.recipe} {self.dataset} seed {self.seed} ({self.variant})"


def variant_name(mode: str, limit: int | None = None, epochs: int | None = None) -> str:
    """'shared', 'native', or with the overrides appended: 'shared-epochs1-limit512'."""
    return mode + (f"-epochs{epochs}" if epochs else "") + (f"-limit{limit}" if limit else "")


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes so that readers see the old file or the new one, never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o644)  # mkstemp makes 0600; results and pages are for reading
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunStore:
    """Reads and writes run records and checkpoints under one results directory."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def record_path(self, key: RunKey) -> Path:
        return self.root / key.relative(".json")

    def checkpoint_path(self, key: RunKey) -> Path:
        return self.root / CHECKPOINTS / key.relative(".npz")

    def load_record(self, key: RunKey) -> dict[str, Any] | None:
        """The run's JSON record, or None when the run has not been started."""
        path = self.record_path(key)
        if not path.exists():
            return None
        return read_record(path)

    def save_record(self, key: RunKey, record: dict[str, Any]) -> None:
        write_atomic(self.record_path(key), record_json(record).encode())

    def save_checkpoint(self, key: RunKey, state: dict[str, np.ndarray], record: dict[str, Any]) -> None:
        """State and record together in one atomic file: they can never disagree about the epoch."""
        buffer = io.BytesIO()
        np.savez(buffer, __record__=np.frombuffer(json.dumps(record).encode(), dtype=np.uint8), **state)
        write_atomic(self.checkpoint_path(key), buffer.getvalue())

    def load_checkpoint(self, key: RunKey) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """(state, record) saved after the last finished epoch, or None."""
        path = self.checkpoint_path(key)
        return read_checkpoint(path) if path.exists() else None

    def try_lock(self, key: RunKey) -> RunLock | None:
        """The run's lock if no other process holds it (then release it when done), else None."""
        return RunLock.try_acquire(self.root / LOCKS / key.relative(".lock"))

    def remove_checkpoint(self, key: RunKey) -> None:
        self.checkpoint_path(key).unlink(missing_ok=True)

    def records(self, variant: str | None = None) -> list[dict[str, Any]]:
        """Every run record under the results directory (optionally one variant), sorted by path."""
        base = self.root / variant if variant else self.root
        paths = sorted(p for p in base.rglob("*-seed*.json") if CHECKPOINTS not in p.parts)  # not oracle.json
        return [read_record(p) for p in paths]


class RunLock:
    """An exclusive lock on one run, so two drivers never train it at once. It is an flock on a file under
    .locks/: the kernel releases it when its holder exits, however it exits, so a lock is never left stale.
    On a cluster's shared filesystem it holds across machines where that filesystem supports locks (NFSv4 does).
    """

    def __init__(self, handle) -> None:
        self._handle = handle

    @classmethod
    def try_acquire(cls, path: Path) -> RunLock | None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")  # noqa: SIM115 - held open for as long as the lock is held
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return cls(handle)

    def release(self) -> None:
        if not self._handle.closed:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()


def read_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(state, record) from a checkpoint file, with a clear error for a damaged one."""
    try:
        with np.load(path) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as error:
        raise UserError(f"checkpoint {path} is unreadable ({error}); delete it to restart that run") from None
    record = json.loads(arrays.pop("__record__").tobytes())
    return arrays, record


def record_json(record: dict[str, Any]) -> str:
    """Indented JSON for reading, with the long per-step loss list kept on one line; strict (no NaN)."""
    text = json.dumps({**record, "step_losses": "__STEP_LOSSES__"}, indent=1, allow_nan=False)
    return text.replace('"__STEP_LOSSES__"', json.dumps(record["step_losses"], allow_nan=False), 1)


def read_record(path: Path) -> dict[str, Any]:
    """Load one run record, with a clear error for a damaged file."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"run record {path} is unreadable ({error}); delete it to run again") from None
    missing = {"backend", "dataset", "recipe", "seed", "status", "step_losses", "epochs"} - set(record)
    if missing:
        raise UserError(f"run record {path} lacks {sorted(missing)}; delete it to run again")
    return record
