"""The variance study (`lenet-repro variance`): its arms, one bit, predictions, churn and per-class gaps."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import backends
from common.results import decode_predictions, encode_predictions
from experiments.analysis import variance as analysis
from experiments.studies import variance

pytestmark = pytest.mark.integration  # its tests start processes or train to the end


@pytest.mark.parametrize("n", [0, 1, 9, 10, 10000])
def test_predictions_pack_two_to_a_byte_and_come_back(n):
    values = np.random.default_rng(n).integers(0, 10, size=n).astype(np.uint8)
    entry = encode_predictions(values)
    assert entry["n"] == n and len(entry["data"]) <= 4 * (n // 2 + 1) // 3 + 4
    assert np.array_equal(decode_predictions(entry), values)
    with pytest.raises(ValueError):
        encode_predictions(np.array([16]))


def test_every_arm_plans_its_runs_and_varies_one_thing():
    base = backends.baseline()
    assert [r["threads"] for r in variance.plan("threads", 4)] == [1, 2, 1, 2]
    assert {(r["weights"], r["order"]) for r in variance.plan("rerun", 3)} == {(0, 0)}
    assert [r["order"] for r in variance.plan("order", 3)] == [0, 1, 2] and {
        r["weights"] for r in variance.plan("order", 3)} == {0}
    assert [r["weights"] for r in variance.plan("weights", 3)] == [0, 1, 2]
    assert [r["flip"] for r in variance.plan("one-bit", 3)] == [0, 1, 2]
    assert {r["backend"] for arm in variance.IN_BASELINE for r in variance.plan(arm, 2)} == {base}
    framework = variance.plan("framework", 10)
    assert len(framework) >= 10 and {r["backend"] for r in framework} == set(backends.names())
    assert {r["mode"] for r in framework} == {"shared"} and {r["group"] for r in framework} == {0, 1}
    defaults = variance.plan("defaults", 10)
    assert {r["backend"] for r in defaults} == set(backends.with_defaults()) and {r["mode"] for r in defaults} == {
        "stock"}


def test_one_bit_flips_the_lowest_bit_of_one_weight_and_nothing_else():
    weights = {"a": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), "b": np.ones(5, np.float32)}
    seen = set()
    for k in range(6):
        name, index = variance.flipped_index(weights, k)
        flipped = variance.flip_lowest_bit(weights, name, index)
        changed = [(n, i) for n in weights for i in np.flatnonzero(flipped[n] != weights[n])]
        assert changed == [(name, index)]
        bits = flipped[name].reshape(-1).view(np.uint32)[index] ^ weights[name].reshape(-1).view(np.uint32)[index]
        assert bits == 1  # the lowest bit of the float32's mantissa
        seen.add((name, index))
    assert len(seen) == 6 and weights["b"][0] == 1.0  # each run another weight; the original untouched


def _run(arm, k, predictions, accuracy=None, **extra):
    predicted = np.asarray(predictions, dtype=np.uint8)
    return {"arm": arm, "k": k, "test_accuracy": accuracy, "predictions": encode_predictions(predicted), **extra}


def test_churn_and_class_gap_compare_each_arms_pairs():
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3], dtype=np.uint8)
    runs = [_run("seed", 0, [0, 0, 1, 1, 2, 2, 3, 3], 1.0), _run("seed", 1, [0, 1, 1, 1, 2, 2, 3, 0], 0.75),
            _run("seed", 2, [0, 0, 1, 1, 2, 2, 3, 3], 1.0)]  # fmt: skip
    s = analysis.arm_summary(runs, labels)
    assert s["pairs"] == 3 and s["churn"] == pytest.approx((2 / 8 + 2 / 8 + 0) / 3)
    assert s["class_gap"] == pytest.approx(0.5) and not s["identical"]
    assert s["difference"] == pytest.approx((0.25 + 0.25 + 0) / 3) and s["std_low"] < s["std"] < s["std_high"]
    grouped = [dict(r, group=g) for r, g in zip(runs, (0, 0, 1), strict=True)]  # a seed's frameworks
    assert analysis.arm_summary(grouped, labels)["pairs"] == 1
    same = analysis.arm_summary([runs[0], runs[2]], labels)
    assert same["identical"] and same["churn"] == 0 and same["std"] == 0


def test_the_study_trains_records_predictions_resumes_and_summarises(tmp_path):
    """On the first 200 images of the real data: two arms, two runs each, in fresh processes; the identical reruns
    predict alike bit for bit on the CPU; a second call trains nothing."""
    command = [sys.executable, "-m", "experiments", "variance", "--recipe", "d2l", "--dataset", "mnist",
               "--limit", "200", "--runs", "2", "--arms", "rerun,seed", "--out", str(tmp_path)]  # fmt: skip
    first = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-2000:]
    results = json.loads((tmp_path / "variance-d2l-mnist-limit200.json").read_text())
    assert sorted((r["arm"], r["k"]) for r in results["runs"]) == [("rerun", 0), ("rerun", 1), ("seed", 0),
                                                                    ("seed", 1)]  # fmt: skip
    assert all(decode_predictions(r["predictions"]).size == 200 for r in results["runs"])
    reruns = [r for r in results["runs"] if r["arm"] == "rerun"]
    assert reruns[0]["predictions"] == reruns[1]["predictions"]
    assert "rerun" in first.stdout and "equal" in first.stdout and "the test set's floor" in first.stdout
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "rerun 0" not in again.stdout


def test_too_few_runs_or_an_unknown_arm_is_one_line(tmp_path):
    for argument in (["--runs", "1"], ["--arms", "lunch"]):
        done = subprocess.run([sys.executable, "-m", "experiments", "variance", "--out", str(tmp_path), *argument],
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_one_bit_apart_pairs_the_original_with_the_closest_run_that_answers_differently():
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 7], dtype=np.uint8)
    original = _run("rerun", 0, labels, 1.0)
    same = _run("one-bit", 0, labels, 1.0, flipped="a[0]")
    near = _run("one-bit", 1, [0, 1, 2, 3, 4, 5, 7, 6], 0.75, flipped="b[1]")
    far = _run("one-bit", 2, [1, 0, 3, 2, 4, 5, 6, 7], 0.5, flipped="c[2]")
    pair = analysis.one_bit_apart({"runs": [original, same, far, near]})
    assert pair["runs"][1]["flipped"] == "b[1]" and list(pair["images"]) == [6, 7]
    assert analysis.one_bit_apart({"runs": [original, same]}) is None
