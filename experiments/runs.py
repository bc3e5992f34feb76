"""One run = (backend, dataset, recipe, seed): train, record every number, checkpoint each epoch, resume.

`train_run` executes inside its own process (see `run_grid`), so the two frameworks never share one.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from common import data, spec
from common.errors import UserError
from common.init import initial_weights
from common.preprocess import Images, resized
from common.results import RunKey, RunStore
from common.train import evaluate, train_epoch, training_order

REPO = Path(__file__).resolve().parent.parent


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


def git_commit() -> str | None:
    """The project's current commit, when it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def new_record(key: RunKey, recipe: spec.Recipe, backend: Any, model: Any) -> dict[str, Any]:
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
            "versions": backend.versions(),
            "device": backend.device_name(model),
            "threads": backend.configure_threads(),
            "python": platform.python_version(),
            "host": socket.gethostname(),
            "git_commit": git_commit(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "finished": None,
            "spec": spec.recipe_to_dict(recipe),
        },
    }


def check_same_run(key: RunKey, record: dict[str, Any], recipe: spec.Recipe) -> None:
    """Refuse to resume or skip a stored run that was made with other settings."""
    stored, wanted = record["meta"]["spec"], spec.recipe_to_dict(recipe)
    if stored != wanted:
        fields = ", ".join(f"{k} {stored.get(k)!r} not {v!r}" for k, v in wanted.items() if stored.get(k) != v)
        raise UserError(
            f"{key.label()} is stored with other settings ({fields}); "
            "use another RESULTS= directory, or delete that run's file to run it again"
        )


def start_model(backend: Any, key: RunKey, recipe: spec.Recipe, device: str) -> Any:
    """Build the model; in shared mode load the common initial weights so both backends start alike."""
    model = backend.build_model(recipe, device, seed=key.seed)
    if key.mode == "shared":
        backend.set_weights(model, initial_weights(recipe, key.seed))
    return model


def train_run(key: RunKey, store: RunStore, device: str = "auto", progress: Callable | None = None) -> dict:
    """Train one run to completion (or divergence), resuming from its checkpoint; returns the record."""
    from backends import load_backend

    recipe = key.spec()
    record = store.load_record(key)
    if record is not None:
        check_same_run(key, record, recipe)
        if record["status"] != "partial":
            return record
    backend = load_backend(key.backend)
    backend.configure_threads()
    model = start_model(backend, key, recipe, device)
    checkpoint = store.load_checkpoint(key)
    if checkpoint is not None:
        state, record = checkpoint
        check_same_run(key, record, recipe)
        backend.set_state(model, state)
    else:
        record = new_record(key, recipe, backend, model)
    prepared = prepare_data(key.dataset, recipe, key.limit)
    for epoch in range(len(record["epochs"]), recipe.epochs):
        order = training_order(backend, recipe, key.mode, key.seed, epoch, len(prepared.train_labels))
        tick = functools.partial(progress, epoch) if progress else None
        outcome = train_epoch(backend, model, prepared.train_images, prepared.train_labels, order, tick)
        record["step_losses"] += [finite_or_none(loss) for loss in outcome.step_losses]
        if outcome.diverged:
            record["status"] = "diverged"
            record["diverged_at_step"] = len(record["step_losses"])
            break
        eval_start = time.perf_counter()
        test_loss, test_accuracy = evaluate(backend, model, prepared.test_images, prepared.test_labels)
        record["epochs"].append(
            {
                "epoch": epoch + 1,
                "train_loss": outcome.loss_sum / outcome.examples,
                "train_accuracy": outcome.correct / outcome.examples,
                "test_loss": finite_or_none(test_loss),
                "test_accuracy": test_accuracy,
                "seconds": outcome.seconds + time.perf_counter() - eval_start,  # train_ch5 times both
                "train_seconds": outcome.seconds,
                "examples_per_second": outcome.examples / outcome.seconds,
            }
        )
        if epoch + 1 < recipe.epochs:
            store.save_checkpoint(key, backend.get_state(model), record)
        store.save_record(key, record)
        if progress:
            progress(epoch, None, None, record["epochs"][-1])
    else:
        record["status"] = "complete"
    record["meta"]["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    store.save_record(key, record)
    store.remove_checkpoint(key)
    return record


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
