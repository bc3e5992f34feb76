"""d2l-en's batch-level shuffle: fixed batches in a new order each epoch, and the paired study that measures it."""

from __future__ import annotations

import numpy as np
import pytest

from common import seal
from common.batches import batch_order, batch_slices, epoch_order
from experiments.studies import order_study
from tests.test_seed_scripts import require_real


@pytest.mark.parametrize("n", [1000, 1024])
def test_batch_order_keeps_the_batches_and_shuffles_their_order(n):
    size = 64
    epochs = [batch_order(3, epoch, n, size) for epoch in range(3)]
    for order in epochs:
        assert np.array_equal(np.sort(order), np.arange(n))  # every example once
        batches = [order[s] for s in batch_slices(n, size)]
        for batch in batches:  # each batch is consecutive examples of the file, starting at a multiple of size
            assert batch[0] % size == 0 and np.array_equal(batch, np.arange(batch[0], batch[0] + len(batch)))
        if n % size:  # a short last batch stays last
            assert len(batches[-1]) == n % size and batches[-1][-1] == n - 1
    firsts = [[order[s][0] for s in batch_slices(n, size)] for order in epochs]
    assert sorted(firsts[0]) == sorted(firsts[1]) == sorted(firsts[2])  # the same batches every epoch
    assert firsts[0] != firsts[1] != firsts[2]  # in another order
    assert np.array_equal(batch_order(3, 1, n, size), epochs[1])  # a pure function of (seed, epoch)
    assert not np.array_equal(batch_order(4, 1, n, size), epochs[1])


def test_the_example_shuffle_makes_new_batches_every_epoch():
    n, size = 1024, 64
    first, second = (epoch_order(3, epoch, n) for epoch in (0, 1))
    batches = {frozenset(first[s]) for s in batch_slices(n, size)}
    assert not batches & {frozenset(second[s]) for s in batch_slices(n, size)}


@pytest.mark.slow
def test_the_study_pairs_both_orders_by_seed_and_resumes(tmp_path):
    require_real("mnist")
    path = tmp_path / "order.json"
    first = order_study.study(path, "d2l", "mnist", 1, limit=512)
    assert [(r["seed"], r["arm"]) for r in first["runs"]] == [(0, "examples"), (0, "batches")]
    examples, batches = first["runs"]
    assert len(examples["epoch_losses"]) == len(batches["epoch_losses"]) == 10
    assert examples["epoch_losses"] != batches["epoch_losses"]  # only the order differs, and it shows
    second = order_study.study(path, "d2l", "mnist", 2, limit=512)  # only seed 1 is new
    assert second["runs"][:2] == first["runs"] and len(second["runs"]) == 4
    assert seal.read_json(path, "study file") == second
    text = order_study.summary(second)
    assert "batches − examples, final test accuracy" in text and "paired (2 seeds)" in text
    assert "Pitman-Morgan paired test" in text


def _study(examples: list[float], batches: list[float]) -> dict:
    runs = []
    for seed, (a, b) in enumerate(zip(examples, batches, strict=True)):
        runs += [{"seed": seed, "arm": "examples", "test_accuracy": a, "epoch_losses": [0.5 + a, 0.1 + a]},
                 {"seed": seed, "arm": "batches", "test_accuracy": b, "epoch_losses": [0.5 + b, 0.1 + b]}]  # fmt: skip
    return {"recipe": "d2l", "dataset": "mnist", "backend": "torch", "runs": runs}


def test_the_summary_says_how_many_seeds_would_decide_an_undecided_accuracy_only():
    undecided = order_study.summary(_study([0.80, 0.82, 0.81, 0.79], [0.81, 0.84, 0.80, 0.82]))
    assert "same result: undecided" in undecided
    assert "at the measured spread of the differences, about " in undecided
    assert "paired seeds would decide it" in undecided
    decided = order_study.summary(_study([0.80, 0.82, 0.81, 0.79], [0.801, 0.819, 0.812, 0.789]))
    assert "same result: yes" in decided and "would decide it" not in decided
