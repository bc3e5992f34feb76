"""The run grid on Ray and sequentially: the same records either way, a killed worker retried to the same numbers,
one training per run when two drivers share a results directory, Ctrl-C keeping checkpoints, fast failures.

The Ray tests start real local Ray instances (a few seconds each) and train tiny grids on the real MNIST files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from common import seal
from common.results import RunKey, RunStore, record_json, write_atomic
from experiments.running import ray_executor

pytestmark = pytest.mark.integration  # its tests start processes or train to the end

REPO = Path(__file__).resolve().parent.parent
TIMING = ("seconds", "train_seconds", "examples_per_second")


def experiments(*argv: str, env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    """`python -m experiments ...` in the background, stderr captured as text."""
    return subprocess.Popen([sys.executable, "-m", "experiments", *argv], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})},
                            **popen)  # fmt: skip


def finish(process: subprocess.Popen, timeout: float = 300) -> str:
    """Wait for a background command; fail with its output unless it succeeded; return its stderr."""
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"exit {process.returncode}\n{out}\n{err}"
    return err


def grid_args(results: Path, backend: str = "torch", recipes: str = "d2l", seeds: int = 1, epochs: int = 1,
              limit: int = 512) -> list[str]:  # fmt: skip
    return ["run", "--backend", backend, "--recipes", recipes, "--datasets", "mnist", "--seeds", str(seeds),
            "--epochs", str(epochs), "--limit", str(limit), "--device", "cpu", "--threads", "1",
            "--results", str(results)]  # fmt: skip


def records(root: Path) -> dict[str, dict]:
    """Every run record under a results directory, by relative path."""
    return {str(p.relative_to(root)): json.loads(p.read_text()) for p in sorted(root.rglob("*.json"))
            if not {".checkpoints", ray_executor.GRID} & set(p.relative_to(root).parts)}  # fmt: skip


def same_numbers(a: dict, b: dict) -> bool:
    """Two records of one run hold the same losses and accuracies (timings and metadata aside)."""
    strip = [{k: v for k, v in e.items() if k not in TIMING} for e in a["epochs"]]
    return a["step_losses"] == b["step_losses"] and strip == [
        {k: v for k, v in e.items() if k not in TIMING} for e in b["epochs"]
    ]


def ray_processes(token: str | None = None) -> dict[int, str]:
    """Ray's own processes (GCS, raylet, workers) running on this machine: pid -> command line; with `token`, only
    those whose environment carries it (started, through a driver, by the test that set it)."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if token is not None and f"{RAY_TOKEN}={token}".encode() not in (proc / "environ").read_bytes():
                continue
        except OSError:
            continue
        if proc.name.isdigit() and ("gcs_server" in cmdline or "raylet" in cmdline or cmdline.startswith("ray::")):
            found[int(proc.name)] = cmdline[:120]
    return found


RAY_TOKEN = "LENET_REPRO_TEST_RAY"  # set by no_ray_left for the drivers a test starts; inherited by their Ray


@pytest.fixture
def no_ray_left(monkeypatch):
    """After the test, no Ray process it started may be left running (a local instance stops with its driver).
    Its processes are told apart by a token in their environment, which the test's drivers hand down to their Ray:
    a grid running beside the tests on this machine, whose instances come and go, is not the test's."""
    token = uuid.uuid4().hex
    monkeypatch.setenv(RAY_TOKEN, token)

    def left() -> list[str]:
        return list(ray_processes(token).values())

    yield
    deadline = time.monotonic() + 60  # Ray's processes exit within seconds on a quiet machine, slower under load
    while left() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left() == []


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "recipes", "seeds"), [("torch", "seed-torch-fixed,d2l", 1), ("mxnet", "d2l", 2)])
def test_a_two_worker_ray_grid_equals_the_sequential_grid_record_for_record(backend, recipes, seeds, tmp_path,
                                                                            no_ray_left):  # fmt: skip
    sequential, on_ray = tmp_path / "sequential", tmp_path / "ray"
    runs = seeds * len(recipes.split(","))
    finish(experiments(*grid_args(sequential, backend, recipes, seeds)))
    err = finish(experiments(*grid_args(on_ray, backend, recipes, seeds), "--workers", "2"))
    assert "a local Ray instance: up to 2 runs at once, 1 thread(s) each" in err
    assert f"[grid] {runs}/{runs} runs done, 0 running" in err
    expected, got = records(sequential), records(on_ray)
    assert sorted(got) == sorted(expected) and len(got) == runs
    for path, record in got.items():
        assert record["step_losses"] == expected[path]["step_losses"], path
        assert same_numbers(record, expected[path]), path
        assert record["meta"]["threads"] == expected[path]["meta"]["threads"] == 1
        (attempt,) = record["meta"]["attempts"]
        assert attempt["engine"] == "ray" and attempt["node_ip"] and attempt["shared_storage"] is True
    assert not list(on_ray.glob(".checkpoints/**/*.npz")), "finished runs keep no checkpoint"


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_retried_and_ends_with_the_uninterrupted_numbers(tmp_path, no_ray_left):
    args = dict(epochs=3, limit=4096)
    key = RunKey("torch", "mnist", "d2l", 0, "shared", 4096, 3)
    finish(experiments(*grid_args(tmp_path / "whole", **args)))
    store = RunStore(tmp_path / "killed")
    driver = experiments(*grid_args(store.root, **args), "--workers", "1")
    deadline = time.monotonic() + 300  # an epoch takes seconds on a quiet machine, minutes on a loaded one
    while not store.checkpoint_path(key).exists() and time.monotonic() < deadline:  # the first epoch is done
        time.sleep(0.02)
    workers = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _is_training_worker(p)]
    if not store.checkpoint_path(key).exists() or not workers:
        driver.terminate()  # the driver stops its Ray instance: nothing is left running after a failure
        driver.wait(timeout=120)
    assert store.checkpoint_path(key).exists(), "no checkpoint of the first epoch within 300 s"
    assert workers, "no Ray worker was training"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)  # as if the worker's machine went away
    finish(driver)
    resumed = store.load_record(key)
    assert resumed["status"] == "complete"
    assert same_numbers(resumed, RunStore(tmp_path / "whole").load_record(key))
    first, retry = resumed["meta"]["attempts"]
    assert first["from_epoch"] == 0 and retry["from_epoch"] >= 1, "the retry resumed from the checkpoint"


def _is_training_worker(proc: Path) -> bool:
    """A Ray worker training a run for this test's driver (its environment carries the test's token: a grid running
    beside the tests on this machine is not the test's to kill)."""
    try:
        return (proc / "cmdline").read_bytes().startswith(b"ray::train_task") and (
            f"{RAY_TOKEN}={os.environ[RAY_TOKEN]}".encode() in (proc / "environ").read_bytes())
    except OSError:
        return False


@pytest.mark.slow
def test_two_drivers_on_one_results_directory_train_each_run_once(tmp_path, no_ray_left):
    """A sequential driver and a Ray driver started together on the same grid."""
    args = grid_args(tmp_path, seeds=4, epochs=2, limit=4096)
    first = experiments(*args)
    second = experiments(*args, "--workers", "1")
    logs = finish(first) + finish(second)
    stored = records(tmp_path)
    assert len(stored) == 4 and all(r["status"] == "complete" for r in stored.values())
    for seed in range(4):
        label = f"torch d2l mnist seed {seed} (shared-epochs2-limit4096)"
        assert logs.count(f"[grid] {label}: complete") == 1, logs  # trained by exactly one of the two
    for record in stored.values():  # by one driver: a Ray worker lost under load is retried by Ray (its driver's
        # second attempt, resumed from the checkpoint), never taken up by the sequential driver at the same time
        assert len({attempt.get("engine", "sequential") for attempt in record["meta"]["attempts"]}) == 1, record


@pytest.mark.slow
def test_a_run_held_by_another_driver_is_skipped_then_taken_up_or_left_finished(tmp_path):
    """Deterministic: this test holds two runs' locks like another driver would, then lets them go."""
    store = RunStore(tmp_path)
    keys = [RunKey("torch", "mnist", "d2l", seed, "shared", 256, 1) for seed in range(3)]
    held = [store.try_lock(keys[0]), store.try_lock(keys[1])]
    assert None not in held and store.try_lock(keys[0]) is None, "a held lock cannot be taken twice"
    driver = experiments(*grid_args(tmp_path, seeds=3, limit=256))
    deadline = time.monotonic() + 120
    while not store.record_path(keys[2]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.record_path(keys[2]).exists(), "the driver wrote no record of the free run within 120 s"
    assert store.load_record(keys[0]) is None and driver.poll() is None, "the driver waits for held runs"
    # The other driver "finishes" seed 1: a complete record (copied from seed 2's, marked as seed 1), then lets go.
    while store.load_record(keys[2])["status"] != "complete" and time.monotonic() < deadline:
        time.sleep(0.02)  # the record exists after the epoch; the run's last write marks it complete
    assert store.load_record(keys[2])["status"] == "complete", "the free run did not finish within 120 s"
    finished = seal.sealed({**store.load_record(keys[2]), "seed": 1})  # as a driver writes it: sealed
    write_atomic(store.record_path(keys[1]), record_json(finished).encode())
    held[1].release()
    held[0].release()  # the other driver stopped before seed 0 was done: this driver takes it up
    err = finish(driver)
    label = "torch d2l mnist seed {} (shared-epochs1-limit256)"
    assert f"{label.format(0)} is being trained by another driver: skipped" in err
    assert f"{label.format(1)} was finished by another driver" in err
    assert f"[grid] {label.format(0)}: complete" in err and f"[grid] {label.format(1)}: complete" not in err
    assert store.load_record(keys[0])["status"] == "complete"


def test_run_one_refuses_a_run_another_process_is_training(tmp_path):
    store = RunStore(tmp_path)
    key = RunKey("torch", "mnist", "d2l", 0, "shared", 256, 1)
    lock = store.try_lock(key)
    result = subprocess.run([sys.executable, "-m", "experiments", "run-one", "--backend", "torch", "--recipe", "d2l",
                             "--dataset", "mnist", "--limit", "256", "--epochs", "1", "--results", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    lock.release()
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: {key.label()} is being trained by another process; "
                                     "run it again when that one ends")  # fmt: skip


@pytest.mark.slow
def test_ctrl_c_on_a_ray_driver_keeps_checkpoints_and_the_next_run_resumes(tmp_path, no_ray_left):
    key = RunKey("torch", "mnist", "d2l", 0, "shared", 16384, 3)
    store = RunStore(tmp_path)
    args = grid_args(store.root, epochs=3, limit=16384)
    driver = experiments(*args, "--workers", "1", start_new_session=True)
    deadline = time.monotonic() + 120
    while not store.checkpoint_path(key).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.checkpoint_path(key).exists(), "no checkpoint of the first epoch within 120 s"
    os.killpg(driver.pid, signal.SIGINT)  # what Ctrl-C in its terminal sends
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, err
    assert "[grid] stopped: every finished epoch is checkpointed" in err
    assert store.checkpoint_path(key).exists() and store.load_record(key)["status"] == "partial"
    finish(experiments(*args))  # the next invocation (here without Ray) resumes
    resumed = store.load_record(key)
    assert resumed["status"] == "complete" and len(resumed["epochs"]) == 3
    assert [a["from_epoch"] for a in resumed["meta"]["attempts"]][0] == 0
    assert resumed["meta"]["attempts"][-1]["from_epoch"] >= 1


@pytest.mark.parametrize(
    ("address", "message"),
    [
        # these two import Ray and try to connect: seconds each
        pytest.param("127.0.0.1:1", "error: no Ray cluster answers at 127.0.0.1:1 (Connection refused); start one "
                     "with", marks=pytest.mark.slow),
        pytest.param("auto", "error: cannot connect to the Ray cluster at auto: Could not find any running Ray "
                     "instance", marks=pytest.mark.slow),
        ("nohost", "error: RAY_ADDRESS 'nohost' is not host:port"),
    ],
)
def test_an_unreachable_or_malformed_ray_address_fails_fast_in_one_line(address, message, tmp_path):
    if address == "auto" and ray_processes():
        pytest.skip("a Ray instance runs on this machine: 'auto' finds it")
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "experiments", *grid_args(tmp_path)], cwd=REPO, timeout=60,
                            capture_output=True, text=True, env={**os.environ, "RAY_ADDRESS": address})  # fmt: skip
    assert time.monotonic() - start < 30
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert records(tmp_path) == {}


def test_a_worker_without_the_drivers_directory_checkpoints_on_its_own_disk(tmp_path, monkeypatch):
    """The choice a Ray task makes between the shared results directory and its node's scratch directory."""
    import numpy as np

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "node-tmp"))
    key = RunKey("torch", "mnist", "d2l", 0, "shared", 256, 3)
    driver = RunStore(tmp_path / "results")
    write_atomic(driver.root / ray_executor.GRID / "marker", b"driver")
    store, shared, lock = ray_executor.worker_store(key, str(driver.root), "marker", None)
    assert shared and store.root == driver.root and lock is not None
    again = ray_executor.worker_store(key, str(driver.root), "marker", None)
    assert again[2] is None, "a second worker finds it locked"
    lock.release()
    # Another node: no marker there. It starts from the driver's checkpoint unless its own is further on.
    one_epoch = {"epochs": [{}], "step_losses": [1.0], "meta": {}}
    ahead = {"epochs": [{}, {}], "step_losses": [1.0, 0.5], "meta": {}}
    driver.save_checkpoint(key, {"w": np.ones(2)}, one_epoch)
    shipped = driver.checkpoint_path(key).read_bytes()
    store, shared, lock = ray_executor.worker_store(key, str(driver.root), "not-here", shipped)
    assert not shared and store.root != driver.root and str(store.root).startswith(str(tmp_path / "node-tmp"))
    assert store.load_checkpoint(key)[1] == one_epoch
    store.save_checkpoint(key, {"w": np.zeros(2)}, ahead)
    lock.release()
    store, _, lock = ray_executor.worker_store(key, str(driver.root), "not-here", shipped)
    assert store.load_checkpoint(key)[1] == ahead
    lock.release()
    assert not list(store.root.rglob("*.driver"))


@pytest.mark.slow
def test_a_gpu_grid_on_a_ray_instance_without_gpus_fails_in_one_line(tmp_path, no_ray_left):
    args = [a if a != "cpu" else "gpu" for a in grid_args(tmp_path)]
    result = subprocess.run([sys.executable, "-m", "experiments", *args, "--workers", "1"], cwd=REPO, timeout=120,
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: DEVICE=gpu asked for, but the Ray cluster has no GPU; use DEVICE=auto or cpu")


@pytest.mark.slow
@pytest.mark.ray
def test_bench_grid_measures_both_settings_and_the_batched_seeds(tmp_path, no_ray_left):
    """`lenet-repro bench-grid` trains the same runs one at a time on every core and a run per core on local Ray and
    says which gave more epochs an hour; then times seeds batched in one process where a framework can."""
    result = subprocess.run([sys.executable, "-m", "experiments", "bench-grid", "--runs", "2", "--epochs", "1",
                             "--limit", "512", "--steps", "1", "--batched", "torch,tensorflow"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    cores = len(os.sched_getaffinity(0))
    assert f"1 run(s) at once, {cores} thread(s) each:" in out and "for the 2 epochs" in out, out
    if cores > 1:
        assert f"{cores} run(s) at once, 1 thread(s) each:" in out and f"best on {cores} cores:" in out, out
    torch_line = next(line for line in out.splitlines() if line.strip().startswith("PyTorch"))
    assert all(f"{seeds} seed(s)" in torch_line for seeds in (1, 2, 4)), torch_line
    assert "no batched step" in next(line for line in out.splitlines() if line.strip().startswith("TensorFlow"))
