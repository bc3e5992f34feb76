"""Tests of experiments/seed_scripts: the blog post's two scripts run offline on the verified files, for a set length.

Short real runs (20 PyTorch steps, 3 MXNet steps at 96x96) with network connections refused, checks that the
data each script reads is the verified content, and that MXNet's worker processes are gone when a run ends.
Skipped, with the reason, only when the provisioned data files are absent (run `make data`).
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from common import data, sources

pytestmark = pytest.mark.integration  # its tests start processes or train to the end

REPO_ROOT = Path(__file__).resolve().parent.parent


def require_real(dataset: str) -> None:
    """Skip, saying why, when the provisioned files of `dataset` are absent."""
    missing = sources.missing_files(dataset)
    if missing:
        pytest.skip(f"{dataset} files absent from {data.data_dir() / dataset} ({', '.join(missing)}); "
                    f"run `make data`")


@pytest.fixture
def no_network(monkeypatch):
    """Refuse every internet connection in this process (and the processes it forks).

    Local (AF_UNIX) sockets stay allowed: MXNet's DataLoader passes batches from its workers through them.
    """
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(method):
        """`method`, refusing internet addresses."""
        def call(sock, address, *args, **kwargs):
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                raise OSError(f"network access to {address} attempted during an offline test")
            return method(sock, address, *args, **kwargs)
        return call

    monkeypatch.setattr(socket.socket, "connect", guarded(connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(connect_ex))


def sha256_of(path: Path) -> str:
    """sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def run_cli(module: str, *args: str) -> dict:
    """Run `python -m module args` in its own process group; check it exits cleanly and leaves no process."""
    process = subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
    assert process.returncode == 0, err
    deadline = time.monotonic() + 10  # workers may take a moment to see their parent gone
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _group_alive(process.pid), "a worker outlived the script in its process group"
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------------
# PyTorch, MNIST


def test_torch_root_holds_verified_content_and_repairs_it(tmp_path):
    require_real("mnist")
    from experiments.running.seed_scripts import seed_torch

    root = seed_torch.prepare_root(tmp_path / "root")
    raw = root / "MNIST" / "raw"
    for name in data.FILE_NAMES:
        assert sha256_of(raw / name) == data.EXPECTED["mnist"][name].sha256, name
    # Damage one file and plant a legacy processed/ folder (torchvision would read it instead of raw/).
    (raw / data.LABEL_FILES["test"]).write_bytes(b"\0" * 10008)
    (root / "MNIST" / "processed").mkdir()
    (root / "MNIST" / "processed" / "test.pt").write_bytes(b"junk")
    seed_torch.prepare_root(tmp_path / "root")
    assert sha256_of(raw / data.LABEL_FILES["test"]) == data.EXPECTED["mnist"][data.LABEL_FILES["test"]].sha256
    assert not (root / "MNIST" / "processed").exists()


def test_torch_dataset_is_the_verified_mnist(tmp_path, no_network):
    require_real("mnist")
    import torchvision

    from experiments.running.seed_scripts import seed_torch

    root = seed_torch.prepare_root(tmp_path / "root")
    for split, train in (("train", True), ("test", False)):
        dataset = torchvision.datasets.MNIST(root=str(root), train=train, download=False)
        images, labels = data.load_split("mnist", split)
        assert len(dataset) == len(images) == (60000 if train else 10000)
        assert np.array_equal(dataset.data.numpy(), images)
        assert np.array_equal(dataset.targets.numpy(), labels)
    loader = seed_torch.build_loader(root)
    assert (loader.batch_size, len(loader)) == (64, 938)
    image, label = loader.dataset[0]
    assert tuple(image.shape) == (1, 28, 28) and -1.0 <= float(image.min()) < float(image.max()) <= 1.0


@pytest.mark.slow
def test_torch_run_counts_steps_and_is_repeatable(no_network):
    require_real("mnist")
    from experiments.running.seed_scripts import seed_torch

    first = seed_torch.run(epochs=10, max_steps=20, seed=3)
    assert (first["steps"], first["examples"]) == (20, 20 * 64)
    assert first["seconds"] > 0 and first["setup_seconds"] > 0
    # Softmax inside forward, then CrossEntropyLoss: the loss of probabilities lies in [1.46, 2.46].
    assert 1.4 < first["final_loss"] < 2.5
    again = seed_torch.run(epochs=10, max_steps=20, seed=3)
    assert again["final_loss"] == first["final_loss"]


def test_torch_loop_limits_steps_across_epochs():
    import torch

    from experiments.running.seed_scripts import seed_torch

    torch.manual_seed(0)
    batches = [(torch.rand(5, 1, 28, 28), torch.randint(0, 10, (5,))) for _ in range(3)]

    def counted(epochs, max_steps):
        """(steps, examples) of the seed loop over 3 batches per epoch."""
        net = seed_torch.LeNet()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
        steps, examples, loss = seed_torch.train(net, batches, torch.nn.CrossEntropyLoss(), optimizer,
                                                 epochs, max_steps)
        assert math.isfinite(loss)
        return steps, examples

    assert counted(2, None) == (6, 30)
    assert counted(10, 4) == (4, 20)
    assert counted(1, 100) == (3, 15)


@pytest.mark.slow
def test_torch_cli():
    require_real("mnist")
    result = run_cli("experiments.running.seed_scripts.seed_torch", "--max-steps", "5", "--threads", "1")
    assert (result["steps"], result["examples"], result["threads"]) == (5, 320, 1)


# ---------------------------------------------------------------------------------------------------------
# MXNet Gluon, Fashion-MNIST


@pytest.mark.environment("mxnet")
def test_mxnet_dataset_is_the_verified_fashion_mnist(tmp_path, no_network):
    require_real("fashion-mnist")
    from mxnet.gluon.data import vision

    from experiments.running.seed_scripts import seed_mxnet

    with seed_mxnet.local_fashion_mnist():
        datasets = {split: vision.FashionMNIST(root=str(tmp_path), train=split == "train")
                    for split in ("train", "test")}
    assert "_get_data" not in vision.FashionMNIST.__dict__  # the library's own method is back
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded into the root
    for split, dataset in datasets.items():
        images, labels = data.load_split("fashion-mnist", split)
        assert len(dataset) == (60000 if split == "train" else 10000)
        pixels = dataset._data
        assert (pixels.dtype, pixels.shape) == (np.uint8, (len(images), 28, 28, 1))
        assert np.array_equal(pixels.asnumpy()[..., 0], images)
        assert dataset._label.dtype == np.int32 and np.array_equal(dataset._label, labels)


@pytest.mark.environment("mxnet")
@pytest.mark.slow
def test_mxnet_seed_loaders_read_the_local_files(no_network):
    require_real("fashion-mnist")
    from experiments.running.seed_scripts import seed_mxnet

    train_iter, test_iter = seed_mxnet.load_data()
    try:
        assert (len(train_iter), len(test_iter)) == (235, 40)  # 60000 and 10000 in batches of 256
        assert train_iter._num_workers == 4 and test_iter._num_workers == 4  # d2lzh's setting, untouched
        images, labels = data.load_split("fashion-mnist", "test")
        image, label = test_iter._dataset[7]  # Resize(96) then ToTensor, as d2lzh builds it
        assert image.shape == (1, 96, 96) and image.dtype == np.float32 and label == labels[7]
        pixels = image.asnumpy()
        assert 0 <= pixels.min() and pixels.max() <= 1  # ToTensor's scaling, no normalisation
        assert abs(pixels.mean() - images[7].mean() / 255) < 0.01  # the same picture, only resized
    finally:
        seed_mxnet.shutdown(train_iter, test_iter)
    assert multiprocessing.active_children() == []


@pytest.mark.environment("mxnet")
@pytest.mark.slow
def test_mxnet_run_counts_steps_and_stops_workers():
    # In a fresh process: the blog post's script must run with MXNet's default engine, and this test process may
    # already have imported MXNet through our backend (which picks the NaiveEngine).
    require_real("fashion-mnist")
    result = run_cli("experiments.running.seed_scripts.seed_mxnet", "--epochs", "10", "--max-steps", "3",
                     "--no-evaluate")
    assert (result["steps"], result["examples"], result["epochs"]) == (3, 3 * 256, 1)
    assert result["seconds"] > 0 and result["setup_seconds"] > 0
    assert result["context"].startswith(("cpu", "gpu"))
    assert result["final_loss"] > 0 and 0 <= result["train_acc"] <= 1 and result["test_acc"] is None


@pytest.mark.environment("mxnet")
def test_mxnet_step_limit_and_epoch_plan():
    from experiments.running.seed_scripts import seed_mxnet

    batches = [(np.zeros((4, 1)), np.zeros(4))] * 3
    limited = seed_mxnet.StepLimit(batches, 5)
    assert [len(list(limited)) for _ in range(3)] == [3, 2, 0]
    assert (limited.steps, limited.examples, len(limited)) == (5, 20, 3)
    assert seed_mxnet._plan_epochs(10, 5, 3) == 2  # never an empty epoch (train_ch5 divides by n)
    assert seed_mxnet._plan_epochs(10, None, 3) == 10
    assert seed_mxnet._plan_epochs(1, 100, 3) == 1


@pytest.mark.environment("mxnet")
def test_mxnet_evaluation_switch_and_log_parsing():
    import d2lzh.utils as d2l_utils

    from experiments.running.seed_scripts import seed_mxnet

    original = d2l_utils.evaluate_accuracy
    with seed_mxnet.timed_evaluation(evaluate=False) as timer:
        assert math.isnan(d2l_utils.evaluate_accuracy(None, None, None))
    assert timer["calls"] == 1 and d2l_utils.evaluate_accuracy is original
    log = ("training on cpu(0)\nepoch 1, loss 2.3, train acc 0.100, test acc 0.200, time 1.0 sec\n"
           "epoch 2, loss 0.9000, train acc 0.650, test acc nan, time 1.0 sec\n")
    assert seed_mxnet._last_epoch(log) == {"final_loss": 0.9, "train_acc": 0.65, "test_acc": None}
