"""The demo (`lenet-repro demo`): what it says of each finding, from its runs, and the page and file it writes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import backends
from common.results import RunStore
from experiments import demo

pytestmark = pytest.mark.integration  # its tests start processes or train to the end


def _record(key, accuracies, losses=None, status="complete"):
    epochs = [{"epoch": i + 1, "train_loss": 1.0, "train_accuracy": a, "test_loss": 1.0, "test_accuracy": a,
               "seconds": 1.0, "train_seconds": 1.0, "examples_per_second": 100.0} for i, a in enumerate(accuracies)]
    return {"backend": key.backend, "dataset": key.dataset, "recipe": key.recipe, "seed": key.seed, "mode": key.mode,
            "limit": key.limit, "epochs_override": key.epochs, "status": status,
            "step_losses": list(losses or [2.3, 1.0]), "epochs": epochs, "meta": {"device": "cpu"}}  # fmt: skip


def _part(name):
    return next(part for part in demo.PARTS if part.name == name)


def test_each_finding_is_said_from_what_its_runs_measured(tmp_path):
    store = RunStore(tmp_path)
    softmax = _part("softmax")
    quirk, fixed = softmax.keys()
    store.save_record(quirk, _record(quirk, [0.10, 0.12]))
    store.save_record(fixed, _record(fixed, [0.90, 0.955]))
    rows = demo.measure(softmax, store)
    assert rows["seed-torch"]["accuracy"] == 0.12 and rows["seed-torch-fixed"]["accuracy"] == 0.955
    assert "12.0%" in demo.sentence(softmax, rows) and "83.5 points apart" in demo.sentence(softmax, rows)

    defaults = _part("defaults")
    finals = {"torch": 0.11, "mxnet": 0.10, "jax": 0.95, "tensorflow": 0.90}
    for key in defaults.keys():
        store.save_record(key, _record(key, [0.1, finals.get(key.backend, 0.5)]))
    said = demo.sentence(defaults, demo.measure(defaults, store))
    assert "JAX and TensorFlow left the plateau" in said and "PyTorch and MXNet still guess at chance" in said

    same = _part("same_start")
    for key in same.keys():
        shift = 0.0 if key.backend == backends.baseline() else 1e-4
        store.save_record(key, _record(key, [0.9, 0.93 + shift], [2.3, 1.0 + shift]))
    rows = demo.measure(same, store)
    said = demo.sentence(same, rows)
    assert "within 0.01 points of PyTorch" in said and "at most 1.0e-04" in said
    header, body = demo.table_rows(same, rows)
    assert header[-1].startswith("largest per-step loss difference") and body[0][-1] == "—"


def test_a_run_that_diverged_or_is_missing_has_no_accuracy(tmp_path):
    store = RunStore(tmp_path)
    softmax = _part("softmax")
    quirk, _ = softmax.keys()
    store.save_record(quirk, _record(quirk, [], status="diverged"))
    rows = demo.measure(softmax, store)
    assert rows["seed-torch"]["accuracy"] is None and rows["seed-torch-fixed"]["accuracy"] is None
    header, body = demo.table_rows(softmax, rows)
    assert [row[1] for row in body] == ["—", "—"]


def test_the_published_column_is_the_committed_runs_final_accuracies():
    """Every part's runs by a built-in backend have committed full runs to stand beside (the recipe's epochs, every
    seed); a plug-in's have none, and its column says so ("—")."""
    for part in demo.PARTS:
        for key in part.keys():
            if backends.info(key.backend).plugin:
                assert demo.published_accuracies(key) == []
                continue
            published = demo.published_accuracies(key)
            assert len(published) >= 3, key.label()
            assert all(0.0 < a <= 1.0 for a in published)


def test_the_lists_read_as_prose():
    assert demo.and_list(["JAX"]) == "JAX"
    assert demo.and_list(["JAX", "TensorFlow"]) == "JAX and TensorFlow"
    assert demo.and_list(["A", "B", "C"]) == "A, B and C"


def test_the_demo_runs_writes_its_page_and_numbers_and_resumes(tmp_path):
    """On the first 200 examples (the real data), every part trains, demo.json holds each final test accuracy as a
    fraction under the registry's names, the page holds its plots inside it, and a second call trains nothing."""
    command = [sys.executable, "-m", "experiments", "demo", "--results", str(tmp_path), "--limit", "200",
               "--device", "cpu"]  # fmt: skip
    first = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-2000:]
    measured = json.loads((tmp_path / "demo.json").read_text())
    assert set(measured) - {"one_bit"} == {"softmax", "defaults", "same_start"}
    assert set(measured["softmax"]) == {"seed-torch", "seed-torch-fixed"}
    assert set(measured["same_start"]) == set(backends.names())
    assert set(measured["defaults"]) == set(backends.with_defaults())
    assert all(0.0 <= a <= 1.0 for name in ("softmax", "defaults", "same_start") for a in measured[name].values())
    page = (tmp_path / "demo.html").read_text()
    assert page.count("data:image/png;base64,") == 3 + ("one_bit" in measured) and "http" not in page
    if "one_bit" in measured:  # from the committed variance study: two runs one bit apart, and what they disagree on
        assert measured["one_bit"]["disagree"] > 0 and len(measured["one_bit"]["accuracy"]) == 2
    assert "the first 200 training and test examples" in page
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "running" not in again.stderr, again.stderr[-2000:]
    assert json.loads((tmp_path / "demo.json").read_text()) == measured


@pytest.mark.parametrize("argument", ["--workers 0", "--device tpu", "--limit -3"])
def test_a_bad_option_is_one_line(argument, tmp_path):
    done = subprocess.run([sys.executable, "-m", "experiments", "demo", "--results", str(tmp_path),
                           *argument.split()], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
