"""The training loop, written once for every backend: NumPy batches in, NumPy numbers out."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from common.batches import batch_slices, epoch_order, steps_per_epoch
from common.contract import Backend
from common.preprocess import Images
from common.results import OWN_DRAWS
from common.spec import Recipe

EVAL_BATCH = 1000  # evaluation has no gradient: a larger batch is faster and changes no result beyond rounding


@dataclass
class EpochOutcome:
    """What one epoch produced (d2lzh's train_ch5 figures plus per-step losses)."""

    step_losses: list[float] = field(default_factory=list)  # mean per-example loss of each step's batch
    loss_sum: float = 0.0
    correct: int = 0
    examples: int = 0
    seconds: float = 0.0
    diverged: bool = False
    eval_seconds: float = 0.0  # part of `seconds` a blog post script's own loop spent on the test set (train_ch5)
    printed: dict[str, float | None] = field(default_factory=dict)  # what a blog post script printed for the epoch


def training_order(backend: Backend, recipe: Recipe, mode: str, seed: int, epoch: int, n: int) -> np.ndarray:
    """Example order for an epoch: shared across backends, or the framework's own shuffle (native, stock)."""
    if mode in OWN_DRAWS and recipe.shuffle:
        return backend.native_order(seed, epoch, n)
    return epoch_order(seed, epoch, n, recipe.shuffle)


def train_epoch(
    backend: Backend,
    model: object,
    images: Images | np.ndarray,
    labels: np.ndarray,
    order: np.ndarray,
    on_step: Callable[[int, int], None] | None = None,
) -> EpochOutcome:
    """One pass over the training set in the given order; stops at the first non-finite loss."""
    recipe: Recipe = model.recipe  # type: ignore[attr-defined]
    outcome = EpochOutcome()
    total_steps = steps_per_epoch(len(order), recipe.batch_size, recipe.last_batch)
    start = time.perf_counter()
    for step, batch in enumerate(batch_slices(len(order), recipe.batch_size, recipe.last_batch)):
        index = order[batch]
        loss_sum, correct = backend.train_step(model, images[index], labels[index])
        outcome.step_losses.append(loss_sum / len(index))
        outcome.loss_sum += loss_sum
        outcome.correct += correct
        outcome.examples += len(index)
        if not math.isfinite(loss_sum):
            outcome.diverged = True
            break
        if on_step:
            on_step(step + 1, total_steps)
    outcome.seconds = time.perf_counter() - start
    return outcome


def predict(backend: Backend, model: object, images: Images | np.ndarray) -> np.ndarray:
    """The class each image is predicted to be (argmax of the network's output), in the images' order."""
    return np.concatenate([np.argmax(backend.forward(model, images[start : start + EVAL_BATCH]), axis=1)
                           for start in range(0, len(images), EVAL_BATCH)]).astype(np.uint8)  # fmt: skip


def evaluate(
    backend: Backend, model: object, images: Images | np.ndarray, labels: np.ndarray
) -> tuple[float, float]:
    """(mean loss, accuracy) on a dataset."""
    loss_sum, correct = backend.evaluate(model, images, labels, EVAL_BATCH)
    return loss_sum / len(labels), correct / len(labels)

