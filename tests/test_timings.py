"""The commands' times (docs/timings.json, `lenet-repro timings`) and how a page says them."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration  # its tests start processes or train to the end


def test_a_time_reads_as_a_reader_says_it():
    from experiments.docs import duration

    assert [duration(s) for s in (42, 61, 150, 5400, 20738)] == [
        "42 seconds", "61 seconds", "2 minutes", "90 minutes", "5.8 hours"]


def test_reproduce_is_timed_by_what_it_trains_and_publish_by_every_committed_run():
    """make reproduce's estimate covers one run of every recipe and dataset in every framework (the frameworks the
    Makefile loops over), each from the committed runs' epoch times; publish's is the sum of the committed epochs."""
    import backends
    from common import data, spec
    from experiments import timings

    keys = timings.reproduce_keys()
    assert len(keys) == len(backends.frameworks()) * len(spec.RECIPES) * len(data.DATASETS)
    assert {k.mode for k in keys} == {"shared"} and {k.seed for k in keys} == {0}
    estimates = timings.from_records()
    built_in = [k for k in keys if not backends.info(k.backend).plugin]  # a plug-in has no committed runs
    assert estimates["reproduce"]["runs"] == len(built_in)
    assert 0 < estimates["reproduce"]["seconds"] < estimates["publish"]["seconds"]


def test_the_expected_time_of_a_run_comes_from_its_committed_siblings(tmp_path):
    from common.results import RunKey, RunStore
    from experiments.running.grid import expected_seconds

    store = RunStore(tmp_path)
    key = RunKey("torch", "mnist", "d2l", 0)
    record = {"backend": "torch", "dataset": "mnist", "recipe": "d2l", "seed": 0, "mode": "shared", "limit": None,
              "epochs_override": None, "status": "complete", "step_losses": [1.0], "meta": {},
              "epochs": [{"seconds": s, "train_seconds": s, "examples_per_second": 60000 / s}
                         for s in (9.0, 3.0, 3.0, 5.0)]}  # fmt: skip
    store.save_record(key, record)
    # the first epoch (warm-up) left out; median of 3, 3, 5 is 3 s, times the recipe's epochs, plus the start-up
    assert expected_seconds([key], store, start=10.0) == {key: 10.0 + 3.0 * key.spec().epochs}
    short = RunKey("torch", "mnist", "d2l", 1, epochs=2, limit=6000)
    assert expected_seconds([short], store, start=0.0) == {short: pytest.approx(3.0 * 2 * 0.1)}
    assert expected_seconds([RunKey("jax", "mnist", "d2l", 0)], store) == {}


def test_a_command_it_cannot_measure_is_one_line():
    done = subprocess.run([sys.executable, "-m", "experiments", "timings", "--measure", "lunch"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "lunch" in done.stderr
