"""The results format and the run store: one JSON file per run, written atomically, plus a checkpoint
that carries both the training state and the run record, so an interrupted run resumes exactly.

Layout under the results directory:
    <variant>/<dataset>/<recipe>/<backend>-seed<k>.json      the run record (committed when published)
    .checkpoints/<variant>/<dataset>/<recipe>/<backend>-seed<k>.npz   state after the last finished epoch
    .checkpoints/<variant>/<dataset>/<recipe>/<backend>-seed<k>.prev.npz   the epoch before: the fallback
    .locks/<variant>/<dataset>/<recipe>/<backend>-seed<k>.lock        held by the driver that schedules that run
    .locks/<variant>/<dataset>/<recipe>/<backend>-seed<k>.train.lock  held by the process that trains it
where <variant> is the mode ("shared", "native" or "stock"), with "-epochs<E>" and "-limit<N>" appended for runs that
override the recipe's epochs or use a data subset, so that they never mix with full runs.

Every file is written through common.atomic (never half-written). A damaged checkpoint or run record is set
aside as `<name>.damaged` by the process that trains the run, with one line saying so, and the run goes on from
the previous epoch's checkpoint or from the start (docs/faults.md).
"""

from __future__ import annotations

import base64
import errno
import fcntl
import io
import json
import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common import seal
from common.atomic import move_aside, write_atomic, write_error
from common.errors import UserError, unknown_name
from common.spec import Recipe, get_recipe

MODES = ("shared", "native", "stock")
# The modes in which each framework draws its own initial weights and shuffles its own way: native (the recipe's
# initialiser distributions, each framework's random numbers) and stock (each framework's default initialisers,
# as a student's port would have them: the recipe's scheme becomes "stock").
OWN_DRAWS = ("native", "stock")
STATUSES = ("complete", "diverged", "partial")
CHECKPOINTS = ".checkpoints"
LOCKS = ".locks"
PREVIOUS = ".prev"  # <name>.prev.npz: the checkpoint of the epoch before, kept as a fallback
DAMAGED = ".damaged"  # a damaged file is set aside under its name plus this
BUSY_EXIT = 75  # exit code of a `run-one --locked` child that found its run's trainer lock held by another process
RECORD_FIELDS = {"backend", "dataset", "recipe", "seed", "status", "step_losses", "epochs"}


class DamagedFile(UserError):
    """A checkpoint, run record or lock file whose content cannot be used (it can be set aside and redone)."""

    def __init__(self, message: str, path: Path, problem: str) -> None:
        super().__init__(message)
        self.path, self.problem = path, problem


def warn(text: str) -> None:
    """One line on stderr about damage that was dealt with."""
    print(f"warning: {text}", file=sys.stderr, flush=True)


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

    @property
    def variant(self) -> str:
        """Folder for this mode and these overrides: native, shortened and subset runs stay apart from full ones."""
        return variant_name(self.mode, self.limit, self.epochs)

    def spec(self) -> Recipe:
        """The recipe this run trains, with the epochs override applied (and in stock mode the stock scheme)."""
        overrides: dict[str, object] = {"epochs": self.epochs} if self.epochs else {}
        if self.mode == "stock":
            overrides["init"] = "stock"
        return get_recipe(self.recipe, overrides or None)

    def relative(self, suffix: str) -> Path:
        return Path(self.variant, self.dataset, self.recipe, f"{self.backend}-seed{self.seed}{suffix}")

    def label(self) -> str:
        return f"{self.backend} {self.recipe} {self.dataset} seed {self.seed} ({self.variant})"


def variant_name(mode: str, limit: int | None = None, epochs: int | None = None) -> str:
    """'shared', 'native', or with the overrides appended: 'shared-epochs1-limit512'."""
    return mode + (f"-epochs{epochs}" if epochs else "") + (f"-limit{limit}" if limit else "")


def set_aside(path: Path) -> Path:
    """Move a damaged file out of the way, to `<name>.damaged` (replacing an older one), and return that name."""
    return move_aside(path, DAMAGED)


class RunStore:
    """Reads and writes run records and checkpoints under one results directory."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def record_path(self, key: RunKey) -> Path:
        return self.root / key.relative(".json")

    def checkpoint_path(self, key: RunKey) -> Path:
        return self.root / CHECKPOINTS / key.relative(".npz")

    def previous_checkpoint_path(self, key: RunKey) -> Path:
        return self.root / CHECKPOINTS / key.relative(f"{PREVIOUS}.npz")

    def lock_path(self, key: RunKey) -> Path:
        return self.root / LOCKS / key.relative(".lock")

    def trainer_lock_path(self, key: RunKey) -> Path:
        return self.root / LOCKS / key.relative(".train.lock")

    def load_record(self, key: RunKey) -> dict[str, Any] | None:
        """The run's JSON record, or None when the run has not been started (DamagedFile for a damaged one, or one
        whose content does not match its seal: it is set aside and the run trained again; a record from before
        seals, with none, is taken as it is)."""
        path = self.record_path(key)
        if not path.exists():
            return None
        record = read_record(path)
        if seal.SEAL in record and seal.problem(record):
            raise _damaged_record(path, "its content does not match its seal (changed after it was written)")
        return record

    def save_record(self, key: RunKey, record: dict[str, Any]) -> None:
        """Write the record, sealed (common/seal.py)."""
        write_atomic(self.record_path(key), record_json(seal.sealed(record)).encode())

    def save_checkpoint(self, key: RunKey, state: dict[str, np.ndarray], record: dict[str, Any]) -> None:
        """State and record together in one atomic file: they can never disagree about the epoch. The checkpoint
        it replaces stays as the fallback (<name>.prev.npz), should this one ever be found damaged."""
        write_atomic(self.checkpoint_path(key), checkpoint_bytes(state, record),
                      keep_previous=self.previous_checkpoint_path(key))  # fmt: skip

    def load_checkpoint(self, key: RunKey, report: Callable[[str], None] = warn
                        ) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:  # fmt: skip
        """(state, record) saved after the last finished epoch, or None (start from scratch).

        A damaged checkpoint is set aside (<name>.damaged) and the previous epoch's is used, or, if that one is
        damaged or absent too, None; `report` gets one line saying which. The previous epoch's is used as well
        when it is the only one left (a run that resumed from it was stopped before its next checkpoint). Call it
        only while holding the run's trainer lock: it moves files."""
        path = self.checkpoint_path(key)
        previous = self.previous_checkpoint_path(key)
        if path.exists():
            try:
                return read_checkpoint(path)
            except DamagedFile as error:
                damaged = error
            moved = set_aside(path)
            what = f"checkpoint {path} is damaged ({damaged.problem}): set aside as {moved.name}; "
        elif previous.exists():
            what = f"checkpoint {path} is missing; "
        else:
            return None
        if previous.exists():
            try:
                state, record = read_checkpoint(previous)
            except DamagedFile as error:
                set_aside(previous)
                what += f"the previous epoch's checkpoint is damaged too ({error.problem}); "
            else:
                report(what + f"resuming from the previous epoch's checkpoint (epoch {len(record['epochs'])})")
                return state, record
        report(what + "no earlier checkpoint is left, so this run starts again from its first epoch")
        return None

    def try_lock(self, key: RunKey) -> RunLock | None:
        """The run's (driver's) lock if no other process holds it (then release it when done), else None."""
        return RunLock.try_acquire(self.lock_path(key))

    def try_trainer_lock(self, key: RunKey) -> RunLock | None:
        """The lock of the process that trains the run, if no other process holds it, else None."""
        return RunLock.try_acquire(self.trainer_lock_path(key))

    def trainer_busy(self, key: RunKey) -> bool:
        """Whether a process is training the run now (a probe: the trainer's lock is taken and let go at once)."""
        lock = self.try_trainer_lock(key)
        if lock is None:
            return True
        lock.release()
        return False

    def remove_checkpoint(self, key: RunKey) -> None:
        try:
            self.checkpoint_path(key).unlink(missing_ok=True)
            self.previous_checkpoint_path(key).unlink(missing_ok=True)
        except OSError as error:
            raise write_error(error, self.checkpoint_path(key), "remove") from None

    def record_paths(self, variant: str | None = None) -> list[Path]:
        """Every run record: VARIANT/DATASET/RECIPE/BACKEND-seedK.json (RunKey.relative), and no other file of the
        directory (oracle.json, the variance study's files, checkpoints)."""
        pattern = "*/*/*-seed*.json" if variant else "*/*/*/*-seed*.json"
        base = self.root / variant if variant else self.root
        return sorted(p for p in base.glob(pattern) if CHECKPOINTS not in p.parts)

    def records(self, variant: str | None = None, report: Callable[[str], None] = warn) -> list[dict[str, Any]]:
        """Every run record under the results directory (optionally one variant) whose content is what was written,
        sorted by path. One whose content does not match its seal, or that has none, is left out with one line
        (`report`) and listed in `self.left_out` as (path, what is wrong); a damaged one (not a record at all)
        raises DamagedFile, whose line says how to train it again."""
        self.left_out: list[tuple[Path, str]] = []
        found = []
        for path in self.record_paths(variant):
            record = read_record(path)  # a damaged one: one line saying what to do (DamagedFile)
            wrong = seal.problem(record)
            if wrong is None:
                found.append(record)
                continue
            self.left_out.append((path, wrong))
            report(f"run record {path}: {wrong}; left out (`lenet-repro compare --accept-changed` seals it as it is)")
        return found

    def accept_changed(self, report: Callable[[str], None] = warn) -> list[Path]:
        """Seal again, as they are now, the records whose seal does not match (or that have none): on purpose."""
        resealed = []
        for path in self.record_paths():
            record = read_record(path)
            if seal.problem(record) is not None:
                write_atomic(path, record_json(seal.sealed(record)).encode())
                report(f"run record {path}: sealed as it is now")
                resealed.append(path)
        return resealed


class RunLock:
    """An exclusive lock on one run. It is an flock on a file under .locks/, which belongs to the open file: it
    lasts while any process holds that file open (a child the driver handed it to included) and the kernel
    releases it when the last one exits, however it exits, so a lock is never left stale. Its content is never
    read (a truncated or overwritten lock file locks as well). On a cluster's shared filesystem it holds across
    machines where that filesystem supports locks (NFSv4 does).
    """

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def try_acquire(cls, path: Path) -> RunLock | None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as error:
            raise lock_error(path, error) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise lock_error(path, None)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return cls(fd)

    def fileno(self) -> int:
        """The locked file's descriptor: a child process given it (pass_fds) holds the lock while it lives."""
        if self._fd is None:
            raise ValueError("the lock was released")
        return self._fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def existing_store(results: str) -> RunStore:
    """The store of a results directory that exists and holds run records; else one line (nothing is created)."""
    store = RunStore(results)
    if not store.root.is_dir():
        raise UserError(f"no results directory {results}: give the one your runs were written to (RESULTS=..., "
                        "default: results)")  # fmt: skip
    if not store.record_paths():
        raise UserError(f"{results} holds no run records: train some first (make reproduce-<backend> "
                        f"RESULTS={results}), or give another directory")  # fmt: skip
    return store


def lock_error(path: Path, error: OSError | None) -> UserError:
    """A lock file that cannot be opened, as one line with what to do."""
    if error is None or error.errno in (errno.EISDIR, errno.ELOOP, errno.ENXIO):
        return DamagedFile(f"lock file {path} is not a regular file; remove it (`rm -r {path}`: it holds nothing "
                           "but the lock) and run the same command again", path, "not a regular file")  # fmt: skip
    return write_error(error, path, "open the lock file")


def checkpoint_bytes(state: dict[str, np.ndarray], record: dict[str, Any]) -> bytes:
    """A checkpoint file's content: the arrays and the record (as JSON bytes) in one .npz."""
    buffer = io.BytesIO()
    np.savez(buffer, __record__=np.frombuffer(json.dumps(seal.sealed(record)).encode(), dtype=np.uint8), **state)
    return buffer.getvalue()


def read_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(state, record) from a checkpoint file; DamagedFile (one line) for one whose content is damaged."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}  # reading a member checks its zip CRC-32
    except (PermissionError, IsADirectoryError) as error:
        raise UserError(f"cannot read checkpoint {path}: {error.strerror}; make it readable, "
                        "then run the same command again") from None  # fmt: skip
    except Exception as error:  # noqa: BLE001 - a damaged zip fails in many ways (BadZipFile, EOFError, ...)
        raise _damaged_checkpoint(path, error) from None
    try:
        record = json.loads(arrays.pop("__record__").tobytes())
        if not isinstance(record, dict) or not isinstance(record.get("epochs"), list) or not arrays:
            raise ValueError("not a checkpoint of a run")
        if not isinstance(record.get("step_losses"), list) or not isinstance(record.get("meta"), dict):
            raise ValueError("its record lacks step_losses or meta")
        if seal.SEAL in record and seal.problem(record):  # checkpoints from before seals have none
            raise ValueError("its record does not match its seal")
        record.pop(seal.SEAL, None)
    except Exception as error:  # noqa: BLE001 - KeyError, JSON and Unicode errors, wrong content
        raise _damaged_checkpoint(path, error) from None
    return arrays, record


def _problem(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _damaged_checkpoint(path: Path, error: BaseException) -> DamagedFile:
    problem = _problem(error)
    return DamagedFile(f"checkpoint {path} is damaged ({problem}); run the same command again: it sets the file "
                       "aside and resumes from the previous epoch's checkpoint, or from the start", path, problem)


def record_json(record: dict[str, Any]) -> str:
    """Indented JSON for reading, the per-step losses packed (`encode_losses`); strict (no NaN)."""
    return json.dumps({**record, "step_losses": encode_losses(record["step_losses"])}, indent=1, allow_nan=False)


def encode_losses(losses: list[float | None]) -> dict[str, Any]:
    """Per-step losses, packed: little-endian float32 where every loss is a float32 value (the frameworks'), else
    float64 (the NumPy reference's), base64; None (a non-finite loss) as NaN. Every number reads back the same, bit
    for bit, so a record's seal, computed over the losses themselves, does not depend on the packing."""
    values = np.array([np.nan if v is None else v for v in losses], dtype=np.float64)
    exact = np.isnan(values) | (values.astype(np.float32).astype(np.float64) == values)
    kind = "float32" if exact.all() else "float64"
    data = values.astype("<f4" if kind == "float32" else "<f8").tobytes()
    return {"encoding": f"{kind}-base64", "n": len(losses), "data": base64.b64encode(data).decode()}


def decode_losses(entry: dict[str, Any] | list) -> list[float | None]:
    """The losses `encode_losses` packed (a plain list, as older records hold them, is returned as it is)."""
    if isinstance(entry, list):
        return entry
    kinds = {"float32-base64": "<f4", "float64-base64": "<f8"}
    if entry.get("encoding") not in kinds:
        raise ValueError(f"unknown step_losses encoding {entry.get('encoding')!r}")
    values = np.frombuffer(base64.b64decode(entry["data"]), dtype=kinds[entry["encoding"]]).astype(np.float64)
    if values.size != entry["n"]:
        raise ValueError(f"{values.size} step losses where {entry['n']} were written")
    return [None if np.isnan(v) else float(v) for v in values]


def encode_predictions(predictions: np.ndarray) -> dict[str, Any]:
    """A run's test predictions (class indices below 16), compactly: two to a byte, base64 (10,000 in 6.7 kB)."""
    values = np.asarray(predictions, dtype=np.uint8)
    if values.size and int(values.max()) > 15:
        raise ValueError("predictions are class indices below 16")
    padded = np.append(values, np.uint8(0)) if values.size % 2 else values
    packed = (padded[0::2] << 4) | padded[1::2]
    return {"encoding": "uint4-base64", "n": int(values.size), "data": base64.b64encode(packed.tobytes()).decode()}


def decode_predictions(entry: dict[str, Any]) -> np.ndarray:
    """The predictions `encode_predictions` wrote, as uint8 class indices."""
    if entry.get("encoding") != "uint4-base64":
        raise ValueError(f"unknown predictions encoding {entry.get('encoding')!r}")
    packed = np.frombuffer(base64.b64decode(entry["data"]), dtype=np.uint8)
    return np.stack([packed >> 4, packed & 15], axis=1).reshape(-1)[: entry["n"]]


def read_record(path: Path) -> dict[str, Any]:
    """Load one run record; DamagedFile (one line) for one whose content is damaged."""
    try:
        text = path.read_bytes()
    except OSError as error:
        raise UserError(f"cannot read run record {path}: {error.strerror or error}; make it readable, "
                        "then run the same command again") from None  # fmt: skip
    try:
        record = json.loads(text)
    except ValueError as error:  # JSON and Unicode errors
        raise _damaged_record(path, _problem(error)) from None
    if not isinstance(record, dict):
        raise _damaged_record(path, "not a JSON object")
    missing = RECORD_FIELDS - set(record)
    if missing:
        raise _damaged_record(path, f"lacks {sorted(missing)}")
    try:
        record["step_losses"] = decode_losses(record["step_losses"])
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise _damaged_record(path, f"its step_losses cannot be read ({_problem(error)})") from None
    if not isinstance(record["epochs"], list) or not isinstance(record["step_losses"], list):
        raise _damaged_record(path, "its epochs or step_losses are not lists")
    return record


def _damaged_record(path: Path, problem: str) -> DamagedFile:
    return DamagedFile(f"run record {path} is damaged ({problem}); run the `lenet-repro run` command that trains "
                       "it again: it sets the file aside and trains the run again (from its checkpoint if one is "
                       "left), or delete the file", path, problem)  # fmt: skip
