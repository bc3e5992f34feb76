"""The blog post's scripts as reference runs (backend 'script'): records, exact resume, both datasets, the CLI.

Short runs on real data subsets. The MXNet script runs in its own processes: it must start with MXNet's
default engine, which this test process may have replaced by importing our MXNet backend.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from common.data import load_dataset
from common.errors import run_cli
from common.results import RunKey, RunStore, decode_predictions
from experiments import cli
from experiments.running.runs import train_run
from tests.test_seed_scripts import require_real

pytestmark = pytest.mark.integration  # its tests start processes or train to the end

REPO = Path(__file__).resolve().parent.parent
TIMING = ("seconds", "train_seconds", "examples_per_second")


class _Interrupt(Exception):
    pass


def _without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


@pytest.mark.slow
def test_torch_script_on_fashion_mnist_resumes_to_identical_numbers(tmp_path):
    require_real("fashion-mnist")
    key = RunKey("script", "fashion-mnist", "seed-torch", 2, "native", 1024, 3)
    whole = train_run(key, RunStore(tmp_path / "whole"), "cpu")
    assert whole["status"] == "complete" and len(whole["epochs"]) == 3
    assert len(whole["step_losses"]) == 3 * 16  # 1024 examples in batches of 64
    assert whole["meta"]["spec"]["name"] == "seed-torch" and whole["meta"]["device"] == "cpu"
    # Softmax inside forward, then CrossEntropyLoss: every loss of probabilities lies in [1.46, 2.47].
    assert all(1.46 < loss < 2.47 for loss in whole["step_losses"])
    first = whole["epochs"][0]
    assert first["train_loss"] == pytest.approx(sum(whole["step_losses"][:16]) / 16, rel=1e-6)
    assert 0 <= first["test_accuracy"] <= 1 and 1.46 < first["test_loss"] < 2.47

    def stop_in_second_epoch(epoch, step, total, row=None):
        if epoch == 1 and step == 5:
            raise _Interrupt

    store = RunStore(tmp_path / "resumed")
    with pytest.raises(_Interrupt):
        train_run(key, store, "cpu", stop_in_second_epoch)
    assert len(store.load_record(key)["epochs"]) == 1 and store.checkpoint_path(key).exists()
    resumed = train_run(key, store, "cpu")
    assert resumed["step_losses"] == whole["step_losses"]
    assert _without_timing(resumed["epochs"]) == _without_timing(whole["epochs"])
    # the script's own network's predictions, image by image in the test set's order: its recorded accuracy
    predicted = decode_predictions(whole["predictions"])
    labels = load_dataset("fashion-mnist").test_labels[:1024]
    assert (predicted == labels).mean() == whole["epochs"][-1]["test_accuracy"]
    assert resumed["predictions"] == whole["predictions"]


@pytest.mark.slow
def test_torch_script_seeds_differ_and_repeat(tmp_path):
    require_real("mnist")
    records = [train_run(RunKey("script", "mnist", "seed-torch", seed, "native", 256, 1), RunStore(tmp_path / str(i)),
                         "cpu") for i, seed in enumerate((0, 0, 1))]  # fmt: skip
    assert records[0]["step_losses"] == records[1]["step_losses"]
    assert records[0]["step_losses"] != records[2]["step_losses"]


def _run_one(results: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "experiments", "run-one", "--backend", "script", "--recipe", "seed-mxnet",
               "--dataset", "mnist", "--seed", "1", "--epochs", "2", "--limit", "512", "--device", "cpu",
               "--results", str(results), *extra]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


@pytest.mark.slow
def test_mxnet_script_on_mnist_killed_resumes_to_identical_numbers(tmp_path):
    require_real("mnist")
    key = RunKey("script", "mnist", "seed-mxnet", 1, "native", 512, 2)
    whole_process = _run_one(tmp_path / "whole")
    assert whole_process.wait(timeout=300) == 0, whole_process.stderr.read()
    whole = RunStore(tmp_path / "whole").load_record(key)
    assert whole["status"] == "complete" and len(whole["step_losses"]) == 2 * 2  # 512 in batches of 256
    for row in whole["epochs"]:  # what train_ch5 printed agrees with the harness's records of the same epoch
        assert row["printed"]["loss"] == pytest.approx(row["train_loss"], abs=6e-5)
        assert row["printed"]["train_acc"] == pytest.approx(row["train_accuracy"], abs=6e-4)
        assert row["printed"]["test_acc"] == pytest.approx(row["test_accuracy"], abs=6e-4)
        assert 0 < row["train_seconds"] < row["seconds"]  # train_ch5's time includes its own test pass

    store = RunStore(tmp_path / "killed")
    process = _run_one(store.root)
    deadline = time.monotonic() + 300
    while not store.record_path(key).exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    assert store.record_path(key).exists(), f"no record of the first epoch (exit code {process.poll()})"
    os.killpg(process.pid, signal.SIGKILL)  # the run and its loader workers, with no chance to clean up
    process.wait()
    killed = store.load_record(key)
    assert killed is not None and killed["status"] == "partial" and len(killed["epochs"]) == 1
    resumed_process = _run_one(store.root)
    assert resumed_process.wait(timeout=300) == 0, resumed_process.stderr.read()
    resumed = store.load_record(key)
    assert resumed["step_losses"] == whole["step_losses"]
    assert _without_timing(resumed["epochs"]) == _without_timing(whole["epochs"])
    predicted = decode_predictions(whole["predictions"])
    assert (predicted == load_dataset("mnist").test_labels[:512]).mean() == whole["epochs"][-1]["test_accuracy"]


def test_seed_torch_trains_with_the_settings_the_pytorch_script_sets_up():
    """The recipe's optimiser, batch size, loss and preprocessing against the objects the blog post's PyTorch script
    builds (its network is compared layer for layer in test_spec.py)."""
    require_real("mnist")
    from common import data, spec
    from common.preprocess import prepare_images
    from experiments.running.seed_scripts import seed_torch

    recipe = spec.get_recipe("seed-torch")
    run = seed_torch.ReferenceRun("mnist", 0, limit=8, device="cpu")
    (group,) = run.optimizer.param_groups
    settings = recipe.optimizer.lr, recipe.optimizer.momentum, recipe.optimizer.weight_decay
    assert (group["lr"], group["momentum"], group["weight_decay"]) == settings
    assert run.trainloader.batch_size == recipe.batch_size
    assert (run.criterion.reduction, recipe.loss.normalisation) == ("mean", "mean")
    images = data.load_split("mnist", "train")[0][:8]
    script_inputs = np.stack([run.trainloader.dataset[i][0].numpy() for i in range(8)])  # ToTensor, Normalize
    np.testing.assert_array_equal(script_inputs, prepare_images(images, recipe.preprocess))


@pytest.mark.environment("mxnet")
def test_seed_mxnet_trains_with_the_settings_the_mxnet_script_sets_up():
    """Likewise the Gluon script's trainer, loader and preprocessing (Resize(96), ToTensor)."""
    require_real("fashion-mnist")
    from common import data, spec
    from common.preprocess import prepare_images
    from experiments.running.seed_scripts import seed_mxnet

    recipe = spec.get_recipe("seed-mxnet")
    run = seed_mxnet.ReferenceRun("fashion-mnist", 0, limit=256, device="cpu")
    try:
        optimizer = run.trainer._optimizer
        settings = recipe.optimizer.lr, recipe.optimizer.momentum, recipe.optimizer.weight_decay
        assert (run.trainer.learning_rate, optimizer.momentum, optimizer.wd) == settings
        assert run.train_iter._batch_sampler._batch_size == recipe.batch_size
        images = data.load_split("fashion-mnist", "test")[0][:8]
        script_inputs = np.stack([run.test_iter._dataset[i][0].asnumpy() for i in range(8)])  # Resize, ToTensor
        np.testing.assert_array_equal(script_inputs, prepare_images(images, recipe.preprocess))
    finally:
        seed_mxnet.shutdown(run.train_iter, run.test_iter)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--recipes", "d2l"], "unknown recipe 'd2l'; valid: seed-mxnet, seed-torch"),
        (["--mode", "shared"], "native mode only"),
    ],
)
def test_script_backend_refuses_what_the_scripts_cannot_do(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        run_cli(cli.main, ["run", "--backend", "script", "--results", str(tmp_path), *argv])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
