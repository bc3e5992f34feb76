"""The order in which training examples are seen: a seeded permutation per epoch, made once in common/."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def epoch_order(seed: int, epoch: int, n: int, shuffle: bool = True) -> np.ndarray:
    """Indices of the n training examples for this epoch (0-based), the same for every backend."""
    if not shuffle:
        return np.arange(n)
    # A generator keyed by (seed, epoch) lets a resumed run recreate epoch k without replaying 0..k-1.
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_order(seed: int, epoch: int, n: int, batch_size: int) -> np.ndarray:
    """d2l-en's JAX and TensorFlow loaders (`from_tensor_slices(...).batch(b).shuffle(...)`): the batches are fixed,
    consecutive examples in the file's order, and only their order changes from epoch to epoch.

    The full batches come in the order epoch_order(seed, epoch, number of full batches); a short last batch stays
    last (in d2l-en it takes its turn with the others), so the harness's consecutive slices of this order are
    exactly those batches, for either last-batch policy.
    """
    full = n // batch_size
    starts = epoch_order(seed, epoch, full) * batch_size
    return np.concatenate([(starts[:, None] + np.arange(batch_size)).reshape(-1), np.arange(full * batch_size, n)])


def batch_slices(n: int, batch_size: int, last_batch: str = "keep") -> Iterator[slice]:
    """Consecutive batches over n examples; 'keep' yields the last partial batch, 'drop' skips it."""
    stop = n if last_batch == "keep" else n - n % batch_size
    for start in range(0, stop, batch_size):
        yield slice(start, min(start + batch_size, stop))


def steps_per_epoch(n: int, batch_size: int, last_batch: str = "keep") -> int:
    """Number of optimiser steps in one epoch."""
    return -(-n // batch_size) if last_batch == "keep" else n // batch_size
