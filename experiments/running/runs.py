"""One run = (backend, dataset, recipe, seed): train, record every number, checkpoint each epoch, resume.

`train_run` executes inside its own process (see `run_grid`), so no two frameworks ever share one.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from common import data, environments, machine, seal, spec
from common.atomic import FAILPOINT_ENV, failpoint, stale_temps
from common.contract import Backend
from common.errors import UserError
from common.init import SOURCES, initial_weights
from common.preprocess import Images, resized
from common.results import DamagedFile, RunKey, RunStore, encode_predictions, set_aside, warn
from common.train import EpochOutcome, evaluate, predict, train_epoch, training_order

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class PreparedData:
    """One recipe's input pipeline applied to a dataset: images resized once, float32 per batch."""

    train_images: Images
    train_labels: np.ndarray
    test_images: Images
    test_labels: np.ndarray


def prepare_data(dataset: str, recipe: spec.Recipe, limit: int | None) -> PreparedData:
    """Load the verified dataset, keep the first `limit` examples of each split, resize once."""
    raw = data.load_dataset(dataset)
    cut = slice(0, limit)
    return PreparedData(
        resized(raw.train_images[cut], recipe.preprocess),
        raw.train_labels[cut],
        resized(raw.test_images[cut], recipe.preprocess),
        raw.test_labels[cut],
    )


def new_record(key: RunKey, recipe: spec.Recipe, session: Session) -> dict[str, Any]:
    """A fresh run record with its metadata."""
    return {
        "backend": key.backend,
        "dataset": key.dataset,
        "recipe": key.recipe,
        "seed": key.seed,
        "mode": key.mode,
        "limit": key.limit,
        "epochs_override": key.epochs,
        "status": "partial",
        "epochs_planned": recipe.epochs,
        "step_losses": [],
        "epochs": [],
        "meta": {
            "versions": session.versions(),
            "device": session.device_name(),
            "threads": session.threads,
            "python": platform.python_version(),
            "environment": session.environment(),
            "host": socket.gethostname(),
            "machine": machine.describe(),
            "kernels": session.kernels(),
            "git_commit": seal.git_commit(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "finished": None,
            "spec": spec.recipe_to_dict(recipe),
            **({"init_source": SOURCES[recipe.init]} if key.mode == "shared" else {}),
        },
    }


def check_same_run(key: RunKey, record: dict[str, Any], recipe: spec.Recipe) -> None:
    """Refuse to resume or skip a stored run that was made with other settings."""
    stored, wanted = record["meta"]["spec"], spec.recipe_to_dict(recipe)
    fields = [f"{k} {stored.get(k)!r} not {v!r}" for k, v in wanted.items()
              if stored.get(k) != v and k not in spec.DESCRIPTIVE]  # fmt: skip
    if key.mode == "shared":  # runs from before the source was recorded drew every scheme from NumPy's PCG64
        source = record["meta"].get("init_source", "numpy-pcg64")
        if source != SOURCES[recipe.init]:
            fields.append(f"initial weights from {source} not {SOURCES[recipe.init]}")
    if fields:
        raise UserError(
            f"{key.label()} is stored with other settings ({', '.join(fields)}); "
            "use another RESULTS= directory, or delete that run's record and its checkpoints (under .checkpoints/) "
            "to run it again"
        )


def start_model(backend: Backend, key: RunKey, recipe: spec.Recipe, device: str) -> Any:
    """Build the model; in shared mode load the common initial weights so every backend starts alike."""
    model = backend.build_model(recipe, device, seed=key.seed)
    if key.mode == "shared":
        backend.set_weights(model, initial_weights(recipe, key.seed))
    return model


class Session(Protocol):
    """What `train_run` drives, epoch by epoch: a backend's model on the harness's loop, or one of the blog post's
    scripts."""

    threads: int

    def versions(self) -> dict[str, str]: ...
    def kernels(self) -> dict[str, Any]: ...
    def device_name(self) -> str: ...
    def environment(self) -> dict[str, str | None]: ...  # the Python environment the framework runs in
    def train_epoch(self, epoch: int, on_step: Callable[[int, int], None] | None) -> EpochOutcome: ...
    def evaluate(self) -> tuple[float, float]: ...  # (mean test loss, test accuracy)
    def predict(self) -> np.ndarray: ...  # the class predicted for every test image, in the test set's order
    def get_state(self) -> dict[str, np.ndarray]: ...
    def set_state(self, state: dict[str, np.ndarray]) -> None: ...


class HarnessSession:
    """A backend's model trained by the harness's own loop (common.train) on the prepared data."""

    def __init__(self, key: RunKey, recipe: spec.Recipe, device: str) -> None:
        from backends import load_backend

        self.key, self.recipe = key, recipe
        self.backend = load_backend(key.backend)
        self.threads = self.backend.configure_threads()
        self.model = start_model(self.backend, key, recipe, device)
        self._data: PreparedData | None = None

    @property
    def data(self) -> PreparedData:
        """The dataset, loaded and resized on first use (after any checkpoint was read)."""
        if self._data is None:
            failpoint("run.data")
            self._data = prepare_data(self.key.dataset, self.recipe, self.key.limit)
        return self._data

    def versions(self) -> dict[str, str]:
        return self.backend.versions()

    def kernels(self) -> dict[str, Any]:
        return self.backend.kernels()

    def device_name(self) -> str:
        return self.backend.device_name(self.model)

    def environment(self) -> dict[str, str | None]:
        """This interpreter's environment, or the child's where the backend runs in another (backends.remote)."""
        from backends.remote import RemoteBackend

        return self.backend.environment() if isinstance(self.backend, RemoteBackend) else environments.current()

    def train_epoch(self, epoch: int, on_step: Callable[[int, int], None] | None) -> EpochOutcome:
        key, data = self.key, self.data
        order = training_order(self.backend, self.recipe, key.mode, key.seed, epoch, len(data.train_labels))
        return train_epoch(self.backend, self.model, data.train_images, data.train_labels, order, on_step)

    def evaluate(self) -> tuple[float, float]:
        return evaluate(self.backend, self.model, self.data.test_images, self.data.test_labels)

    def predict(self) -> np.ndarray:
        return predict(self.backend, self.model, self.data.test_images)

    def get_state(self) -> dict[str, np.ndarray]:
        return self.backend.get_state(self.model)

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.backend.set_state(self.model, state)


def open_session(key: RunKey, recipe: spec.Recipe, device: str) -> Session:
    """The harness for a backend that implements the contract; for an entry that trains itself (the registry's
    `session`: the blog post's scripts) the session it opens."""
    import importlib

    import backends

    entry = backends.info(key.backend)
    backends.check_mode(key.backend, key.mode)
    if entry.session:
        module, _, function = entry.session.partition(":")
        return getattr(importlib.import_module(module), function)(key, device)
    return HarnessSession(key, recipe, device)


def framework_of(key: RunKey) -> str:
    """The registered backend whose framework trains the run (for the blog post's scripts: the one each script uses)."""
    import backends

    return backends.trained_by(key.backend, key.spec())


def python_for_run(key: RunKey) -> str:
    """The interpreter that trains the run: its framework's environment's (common/environments.py)."""
    import backends

    return backends.python_for(framework_of(key))


def runs_here(key: RunKey) -> bool:
    """Whether this interpreter can train the run itself."""
    import backends

    return backends.runs_here(framework_of(key))


def use_threads(threads: int | None) -> None:
    """Set this process's framework threads; before the framework is imported (MXNet reads them only then)."""
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)


def train_run(key: RunKey, store: RunStore, device: str = "auto", progress: Callable | None = None,
              where: dict[str, Any] | None = None) -> dict:
    """Train one run to completion (or divergence), resuming from its checkpoint; returns the record.

    Each process that trains the run adds an entry to meta.attempts: its host, the epoch it started from, and
    `where` (for a Ray task: the node it ran on).

    The caller holds the run's trainer lock (`RunStore.try_trainer_lock`): files of the run left by a process that
    was killed are dealt with here. Temporary files of interrupted writes are removed; a damaged record or
    checkpoint is set aside (<name>.damaged) with one line on stderr, and the run goes on from the last usable
    checkpoint, or from its first epoch.
    """
    recipe = key.spec()
    for path in (store.record_path(key), store.checkpoint_path(key), store.previous_checkpoint_path(key)):
        for temp in stale_temps(path):
            temp.unlink(missing_ok=True)
    damaged: DamagedFile | None = None
    try:
        record = store.load_record(key)
    except DamagedFile as error:
        record, damaged = None, error
    if record is not None:
        check_same_run(key, record, recipe)
        if record["status"] != "partial":
            return record
    session = open_session(key, recipe, device)
    failpoint("run.warm-up")
    had_checkpoint = any(p.exists() for p in (store.checkpoint_path(key), store.previous_checkpoint_path(key)))
    checkpoint = store.load_checkpoint(key)
    if damaged is not None:
        moved = set_aside(damaged.path)
        warn(f"run record {damaged.path} is damaged ({damaged.problem}): set aside as {moved.name}; "
             + (f"the run continues from its checkpoint (epoch {len(checkpoint[1]['epochs'])})" if checkpoint
                else "the run is trained again from its first epoch"))  # fmt: skip
    if checkpoint is not None:
        state, record = checkpoint
        check_same_run(key, record, recipe)
        session.set_state(state)
    else:
        if record is not None and record["epochs"] and not had_checkpoint:  # e.g. carried to a fresh checkout
            warn(f"run record {store.record_path(key)} has {len(record['epochs'])} epoch(s) but no checkpoint to "
                 "resume them from (checkpoints stay in the results directory's .checkpoints/ on the machine that "
                 "made them): the run is trained again from its first epoch")  # fmt: skip
        record = new_record(key, recipe, session)
    record["meta"].setdefault("attempts", []).append(
        {"host": socket.gethostname(), "machine": machine.summary(machine.describe()), **(where or {}),
         "from_epoch": len(record["epochs"]),
         "started": datetime.now(UTC).isoformat(timespec="seconds")})  # fmt: skip
    for epoch in range(len(record["epochs"]), recipe.epochs):
        tick = functools.partial(_step, progress, epoch) if progress or os.environ.get(FAILPOINT_ENV) else None
        outcome = session.train_epoch(epoch, tick)
        record["step_losses"] += [finite_or_none(loss) for loss in outcome.step_losses]
        if outcome.diverged:
            record["status"] = "diverged"
            record["diverged_at_step"] = len(record["step_losses"])
            break
        eval_start = time.perf_counter()
        test_loss, test_accuracy = session.evaluate()
        eval_seconds = time.perf_counter() - eval_start
        record["epochs"].append(
            {
                "epoch": epoch + 1,
                "train_loss": outcome.loss_sum / outcome.examples,
                "train_accuracy": outcome.correct / outcome.examples,
                "test_loss": finite_or_none(test_loss),
                "test_accuracy": test_accuracy,
                # train_ch5 times training and its own test pass together; otherwise add the harness's test pass
                "seconds": outcome.seconds + (0.0 if outcome.eval_seconds else eval_seconds),
                "train_seconds": outcome.seconds - outcome.eval_seconds,
                "examples_per_second": outcome.examples / (outcome.seconds - outcome.eval_seconds),
                **({"printed": outcome.printed} if outcome.printed else {}),
            }
        )
        if epoch + 1 < recipe.epochs:
            store.save_checkpoint(key, session.get_state(), record)
        store.save_record(key, record)
        if progress:
            progress(epoch, None, None, record["epochs"][-1])
    else:
        record["status"] = "complete"
        record["predictions"] = encode_predictions(session.predict())  # what the trained network says, image by image
    record["meta"]["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    store.save_record(key, record)
    store.remove_checkpoint(key)
    return record


def _step(progress: Callable | None, epoch: int, step: int, total: int) -> None:
    """After each training step: the progress display, and the test hook `run.step` (common.atomic.failpoint)."""
    failpoint("run.step")
    if progress:
        progress(epoch, step, total)


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN or infinity: a non-finite number is stored as null."""
    return value if math.isfinite(value) else None


def run_tag(key: RunKey) -> str:
    """The short prefix of a run's progress lines, e.g. '[torch d2l mnist s0]'."""
    return f"[{key.backend} {key.recipe} {key.dataset} s{key.seed}]"


def epoch_line(key: RunKey, row: dict[str, Any]) -> str:
    """d2lzh's train_ch5 line, prefixed with the run."""
    return (
        f"{run_tag(key)} epoch {row['epoch']}, loss {row['train_loss']:.4f}, "
        f"train acc {row['train_accuracy']:.3f}, test acc {row['test_accuracy']:.3f}, time {row['seconds']:.1f} sec"
    )


class Progress:
    """Per-epoch lines always; a live step counter with an ETA only when stderr is a terminal (not in CI)."""

    def __init__(self, key: RunKey, epochs: int, stream=sys.stderr):
        self.key, self.epochs, self.stream = key, epochs, stream
        self.live = stream.isatty() and not os.environ.get("CI")
        self.first: tuple[int, float] | None = None  # (steps done, time) at the first step of this process
        self.last_draw = 0.0

    def __call__(self, epoch: int, step: int | None, total: int | None, row: dict | None = None) -> None:
        if row is not None:
            self.stream.write(("\r\033[K" if self.live else "") + epoch_line(self.key, row) + "\n")
            self.stream.flush()
            return
        now = time.monotonic()
        done = epoch * total + step
        self.first = self.first or (done, now)
        if not self.live or now - self.last_draw < 0.5:
            return
        self.last_draw = now
        seconds_per_step = (now - self.first[1]) / max(done - self.first[0], 1)
        eta = format_seconds(seconds_per_step * (self.epochs * total - done))
        self.stream.write(f"\r\033[K{run_tag(self.key)} epoch {epoch + 1}/{self.epochs} step {step}/{total}  ETA {eta}")
        self.stream.flush()


def format_seconds(seconds: float) -> str:
    """'1h02m', '3m05s' or '42s'."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"
