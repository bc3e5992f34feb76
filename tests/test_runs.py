"""The run store and the harness: atomic writes, exact resume, skipping finished runs, divergence, the CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from backends import python_for
from common import data, environments, spec
from common.errors import UserError
from common.results import RunKey, RunStore, decode_predictions, write_atomic
from experiments import cli
from experiments.running import local_executor
from experiments.running.runs import train_run

pytestmark = pytest.mark.integration  # its tests start processes or train to the end

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ["torch", "mxnet"]


def test_write_atomic_keeps_the_old_file_when_a_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "run.json"
    write_atomic(target, b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"], "no temporary file is left behind"


def _key(backend: str, **changes) -> RunKey:
    fields = {"backend": backend, "dataset": "fashion-mnist", "recipe": "seed-mxnet-28", "seed": 1, "limit": 1024,
              "epochs": 3}  # fmt: skip
    return RunKey(**{**fields, **changes})


class _Interrupt(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_interrupted_run_resumes_to_identical_numbers(backend, tmp_path):
    key = _key(backend)
    whole = train_run(key, RunStore(tmp_path / "whole"), "cpu")
    assert whole["status"] == "complete" and len(whole["epochs"]) == 3 and len(whole["step_losses"]) == 12

    def stop_in_second_epoch(epoch, step, total, row=None):
        if epoch == 1 and step == 2:
            raise _Interrupt

    store = RunStore(tmp_path / "resumed")
    with pytest.raises(_Interrupt):
        train_run(key, store, "cpu", stop_in_second_epoch)
    partial = store.load_record(key)
    assert partial["status"] == "partial" and len(partial["epochs"]) == 1
    assert store.checkpoint_path(key).exists()
    resumed = train_run(key, store, "cpu")
    assert resumed["step_losses"] == whole["step_losses"]
    for a, b in zip(resumed["epochs"], whole["epochs"], strict=True):
        timing = ("seconds", "train_seconds", "examples_per_second")
        assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}
    assert not store.checkpoint_path(key).exists(), "a finished run keeps no checkpoint"


@pytest.mark.slow
def test_run_killed_in_its_second_epoch_resumes_from_the_command_line(tmp_path):
    args = ["--backend", "torch", "--recipe", "seed-torch-fixed", "--dataset", "mnist", "--seed", "0",
            "--epochs", "2", "--limit", "4000", "--device", "cpu"]  # fmt: skip
    command = [sys.executable, "-m", "experiments", "run-one", *args]
    subprocess.run([*command, "--results", str(tmp_path / "whole")], check=True, cwd=REPO, capture_output=True)
    key = RunKey("torch", "mnist", "seed-torch-fixed", 0, "shared", 4000, 2)
    store = RunStore(tmp_path / "killed")
    process = subprocess.Popen([*command, "--results", str(store.root)], cwd=REPO, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    # The record is written right after the checkpoint, so once it exists both hold the first epoch.
    while not store.record_path(key).exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    assert store.record_path(key).exists(), f"no record of the first epoch (exit code {process.poll()})"
    process.send_signal(signal.SIGKILL)  # no chance to clean up: as if the machine went away
    process.wait()
    killed = store.load_record(key)
    assert killed is not None and killed["status"] == "partial" and len(killed["epochs"]) == 1
    assert store.checkpoint_path(key).exists()
    subprocess.run([*command, "--results", str(store.root)], check=True, cwd=REPO, capture_output=True)
    whole, resumed = RunStore(tmp_path / "whole").load_record(key), store.load_record(key)
    assert resumed["status"] == "complete"
    assert resumed["step_losses"] == whole["step_losses"]
    assert [e["test_accuracy"] for e in resumed["epochs"]] == [e["test_accuracy"] for e in whole["epochs"]]


@pytest.mark.slow
def test_finished_runs_are_not_run_again(tmp_path, monkeypatch):
    argv = ["run", "--backend", "torch", "--recipes", "d2l", "--datasets", "mnist", "--epochs", "1",
            "--limit", "256", "--results", str(tmp_path), "--device", "cpu"]  # fmt: skip
    assert cli.main(argv) == 0
    record_path = RunStore(tmp_path).record_path(RunKey("torch", "mnist", "d2l", 0, "shared", 256, 1))
    before = record_path.stat().st_mtime_ns

    def must_not_run(self, key):
        raise AssertionError(f"{key} was run again")

    monkeypatch.setattr(local_executor.SubprocessExecutor, "submit", must_not_run)
    assert cli.main(argv) == 0
    assert record_path.stat().st_mtime_ns == before


def test_divergence_is_recorded_and_stops_the_run(tmp_path, monkeypatch):
    exploding = dataclasses.replace(spec.RECIPES["seed-torch-fixed"], optimizer=spec.Optimizer(lr=1e8))
    monkeypatch.setitem(spec.RECIPES, "seed-torch-fixed", exploding)
    key = RunKey("torch", "mnist", "seed-torch-fixed", 0, "shared", 2048, 3)
    record = train_run(key, RunStore(tmp_path), "cpu")
    assert record["status"] == "diverged"
    assert record["step_losses"][-1] is None and len(record["step_losses"]) == record["diverged_at_step"]
    assert len(record["epochs"]) < 3
    json.loads(RunStore(tmp_path).record_path(key).read_text())  # strict JSON: no NaN literals
    assert train_run(key, RunStore(tmp_path), "cpu")["diverged_at_step"] == record["diverged_at_step"]


def test_stored_run_with_another_spec_is_refused(tmp_path, monkeypatch):
    key = _key("torch", epochs=1, limit=256)
    train_run(key, RunStore(tmp_path), "cpu")
    changed = dataclasses.replace(spec.RECIPES["seed-mxnet-28"], batch_size=128)
    monkeypatch.setitem(spec.RECIPES, "seed-mxnet-28", changed)
    with pytest.raises(Exception, match="stored with other settings.*batch_size 256 not 128"):
        train_run(key, RunStore(tmp_path), "cpu")


def test_record_holds_the_promised_fields(tmp_path):
    key = _key("mxnet", epochs=1, limit=512)
    record = train_run(key, RunStore(tmp_path), "cpu")
    assert {"backend", "dataset", "recipe", "seed", "status", "step_losses", "epochs"} <= set(record)
    epoch = record["epochs"][0]
    assert {"epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds"} <= set(epoch)
    meta = record["meta"]
    version = subprocess.run([python_for("mxnet"), "-c", "import importlib.metadata as m; print(m.version('mxnet'))"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert meta["versions"]["mxnet"] == version and meta["device"] == "cpu(0)"
    assert meta["environment"] == {"name": "mxnet", "lock_sha256": environments.ENVIRONMENTS["mxnet"].lock_digest()}
    assert meta["spec"] == spec.recipe_to_dict(key.spec()) and meta["started"] and meta["finished"]
    assert len(record["step_losses"]) == 2 and np.isfinite(record["step_losses"]).all()
    assert meta["machine"]["cpu"] and isinstance(meta["machine"]["isa"], list) and meta["machine"]["cores"] >= 1
    assert "MKLDNN" in meta["kernels"]["features"]  # what MXNet's build runs on
    assert meta["attempts"][0]["machine"].startswith(meta["machine"]["cpu"])
    # what the trained network predicted for every test image: its accuracy is the record's
    predicted = decode_predictions(record["predictions"])
    labels = data.load_dataset(key.dataset).test_labels[:512]
    assert len(predicted) == 512 and (predicted == labels).mean() == record["epochs"][-1]["test_accuracy"]


def test_a_shared_run_made_with_other_initial_weights_is_refused(tmp_path):
    """Shared seed-torch runs from before the weights replayed PyTorch's generator must not pass for new ones."""
    from experiments.running.runs import check_same_run

    key = RunKey("torch", "mnist", "seed-torch", 0, "shared", 256, 1)
    record = train_run(key, RunStore(tmp_path), "cpu")
    assert record["meta"]["init_source"] == "torch-cpu-mt19937"
    check_same_run(key, record, key.spec())  # the run itself is accepted
    del record["meta"]["init_source"]  # as recorded before: NumPy's generator
    with pytest.raises(UserError, match="initial weights from numpy-pcg64 not torch-cpu-mt19937"):
        check_same_run(key, record, key.spec())
    d2l = RunKey("torch", "mnist", "d2l", 0, "shared", 256, 1)
    old = train_run(d2l, RunStore(tmp_path), "cpu")
    del old["meta"]["init_source"]
    check_same_run(d2l, old, d2l.spec())  # the Xavier schemes still draw from NumPy: nothing changed for them
