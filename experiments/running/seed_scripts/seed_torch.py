"""The seed blog post's PyTorch LeNet script (MNIST), runnable offline for a chosen length, with timings.

Faithful to the post's complete script (the recipe is written out in docs/seed.md): the same `class LeNet`
(softmax inside `forward`, then CrossEntropyLoss), transform, DataLoader arguments, optimiser and loop body.
Changed only where it must be: (1) the dataset is read from the verified local files (download=False, from a
torchvision root built by `prepare_root`); (2) the caller chooses the epochs and may stop after `max_steps`
optimiser steps; (3) the timings are returned, and the every-200-batches print can be silenced (loss.item()
stays: it is part of the blog post's per-step cost).

`ReferenceRun` trains the script as a reference run of the harness (backend 'script'): the blog post's `train`
loop, one epoch per call, on MNIST or Fashion-MNIST (torchvision's FashionMNIST class in place of MNIST,
nothing else changed), with a forward hook on the criterion recording each step's loss and the test set
evaluated after each epoch outside the loop.

CLI: `python -m experiments.running.seed_scripts.seed_torch [--epochs N] [--max-steps S] [--verbose]` prints one
JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
import torchvision
import torchvision.transforms as transforms

from common import data as lenet_data
from common.errors import UserError, run_cli
from common.train import EpochOutcome

BATCH_SIZE = 64  # the blog post's DataLoader batch size
ROOT_NAME = ".seed-torch-root"  # under the data folder; torchvision reads <root>/<class name>/raw/<IDX name>
# The torchvision dataset class per dataset: the seed uses MNIST; Fashion-MNIST swaps in its class, nothing else.
DATASET_CLASSES = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST}
TEST_BATCH = 1000  # the harness's test pass (no gradient: the batch size changes nothing but speed)


# ---------------------------------------------------------------------------------------------------------
# The blog post's model, verbatim (its comments translated)


class LeNet(nn.Module):
    """The blog post's LeNet, exactly as written (ReLU, max pooling, softmax in forward)."""

    def __init__(self):
        super(LeNet, self).__init__()  # noqa: UP008 - the blog post's spelling
        self.conv1 = nn.Conv2d(1, 6, 5)  # 1 input channel, 6 output channels, 5x5 kernel
        self.pool = nn.MaxPool2d(2, 2)  # max pooling, 2x2 window
        self.conv2 = nn.Conv2d(6, 16, 5)  # 6 input channels, 16 output channels, 5x5 kernel
        self.fc1 = nn.Linear(16*4*4, 120)  # fully connected layer 1
        self.fc2 = nn.Linear(120, 84)  # fully connected layer 2
        self.fc3 = nn.Linear(84, 10)  # output layer, 10 classes

    def forward(self, x):
        """The blog post's forward pass, ending in softmax (CrossEntropyLoss then applies log-softmax again)."""
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = x.view(-1, 16*4*4)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        x = self.fc3(x)
        x = torch.softmax(x, dim=1)
        return x


# ---------------------------------------------------------------------------------------------------------
# A torchvision MNIST root holding the verified files


def _expected(dataset: str, name: str) -> lenet_data.Expected:
    """Size and sha256 of the decompressed file `name` of `dataset`."""
    return lenet_data.EXPECTED[dataset][name]


def _is_verified(path: Path, dataset: str, name: str) -> bool:
    """Whether `path` holds exactly the published decompressed content of `name` (size, then sha256)."""
    expected = _expected(dataset, name)
    try:
        if path.stat().st_size != expected.size:
            return False
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return False
    return digest.hexdigest() == expected.sha256


def _idx_content(dataset: str, name: str, data_root: lenet_data.StrPath | None) -> bytes:
    """The decompressed IDX bytes of file `name`, rebuilt from the verified arrays and checked by sha256."""
    split = "train" if name.startswith("train-") else "test"
    images, labels = lenet_data.load_split(dataset, split, data_root)
    is_images = name == lenet_data.IMAGE_FILES[split]
    array = images if is_images else labels.astype(np.uint8)  # load_split widens labels to int64
    magic = lenet_data.IMAGES_MAGIC if is_images else lenet_data.LABELS_MAGIC
    header = b"".join(int(value).to_bytes(4, "big") for value in (magic, *array.shape))
    content = header + np.ascontiguousarray(array).tobytes()
    if hashlib.sha256(content).hexdigest() != _expected(dataset, name).sha256:  # guards the header rebuild itself
        raise UserError(f"rebuilt {name} does not match its published sha256; this is a bug in {__name__}")
    return content


def _write_atomic(path: Path, content: bytes) -> None:
    """Write `content` so that readers never see half a file (the project's one helper, common.atomic)."""
    from common.atomic import write_atomic

    write_atomic(path, content)


def _fill_root(root: Path, dataset: str, data_root: lenet_data.StrPath | None) -> Path:
    """Make `root`/<class name>/raw hold the four verified decompressed files, rewriting any that differ."""
    folder = root / dataset_class(dataset).__name__
    raw = folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    # torchvision prefers a legacy <class>/processed/{training,test}.pt over raw/ when both exist: never keep one.
    shutil.rmtree(folder / "processed", ignore_errors=True)
    for name in lenet_data.FILE_NAMES:
        if not _is_verified(raw / name, dataset, name):
            _write_atomic(raw / name, _idx_content(dataset, name, data_root))
    return root


def dataset_class(dataset: str) -> type[torchvision.datasets.MNIST]:
    """torchvision's class for `dataset` ('mnist': the blog post's MNIST; 'fashion-mnist': FashionMNIST)."""
    return DATASET_CLASSES[lenet_data.check_dataset(dataset)]


def prepare_root(target: lenet_data.StrPath | None = None, data_root: lenet_data.StrPath | None = None,
                 dataset: str = "mnist") -> Path:
    """A torchvision root (default <data dir>/.seed-torch-root) whose <class name>/raw/ holds the verified files.

    A read-only data folder falls back to a folder in the system's temp directory.
    """
    if target is not None:
        return _fill_root(Path(target), dataset, data_root)
    try:
        return _fill_root(lenet_data.data_dir(data_root) / ROOT_NAME, dataset, data_root)
    except OSError:
        user = getattr(os, "getuid", lambda: "user")()
        return _fill_root(Path(tempfile.gettempdir()) / f"lenet{ROOT_NAME}-{user}", dataset, data_root)


# ---------------------------------------------------------------------------------------------------------
# The blog post's data, model set-up and loop


def seed_dataset(root: lenet_data.StrPath, dataset: str = "mnist", train: bool = True,
                 limit: int | None = None) -> torch.utils.data.Dataset:
    """The blog post's transform and dataset (download=False, the local root); `limit`: only the first examples."""
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    trainset = dataset_class(dataset)(root=str(root), train=train, download=False, transform=transform)
    return trainset if limit is None else torch.utils.data.Subset(trainset, range(min(limit, len(trainset))))


def build_loader(root: lenet_data.StrPath, dataset: str = "mnist", limit: int | None = None
                 ) -> torch.utils.data.DataLoader:
    """The blog post's DataLoader over the training set."""
    trainset = seed_dataset(root, dataset, True, limit)
    trainloader = torch.utils.data.DataLoader(trainset, batch_size=BATCH_SIZE, shuffle=True)
    return trainloader


def train(net, trainloader, criterion, optimizer, epochs: int = 10, max_steps: int | None = None,
          quiet: bool = True) -> tuple[int, int, float]:
    """The blog post's training loop; returns (steps, examples, last loss). Additions: counters, limit, quiet."""
    steps, examples, loss = 0, 0, None
    for epoch in range(epochs):  # the seed: range(10), "loop over the dataset 10 times"
        running_loss = 0.0
        for i, data in enumerate(trainloader, 0):
            inputs, labels = data
            optimizer.zero_grad()
            outputs = net(inputs)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            if i % 200 == 199:  # print the loss every 200 batches
                if not quiet:
                    print(f'[{epoch + 1}, {i + 1:5d}] loss: {running_loss / 200:.3f}')
                running_loss = 0.0
            steps += 1
            examples += len(labels)
            if steps == max_steps:
                break
        if steps == max_steps:
            break
    if not quiet:
        print('Finished Training')
    return steps, examples, (float("nan") if loss is None else loss.item())


def run(epochs: int = 10, max_steps: int | None = None, quiet: bool = True, seed: int = 0,
        threads: int | None = None, root: lenet_data.StrPath | None = None, evaluate: bool = False) -> dict:
    """Run the blog post's script for `epochs` (or until `max_steps` optimiser steps) and return counts and timings.

    `seconds` is the training loop's wall time; `setup_seconds` covers the root check, dataset, loader, model
    and optimiser. `root` is the torchvision root to use (default: see prepare_root). The script never evaluates
    on the test set, so `evaluate` (which the MXNet script's runner takes too) can only be False.
    """
    if evaluate:
        raise UserError("the blog post's PyTorch script has no test pass to time (evaluate must be False)")
    if epochs < 1 or (max_steps is not None and max_steps < 1):
        raise UserError(f"epochs and max_steps must be at least 1 (got {epochs}, {max_steps})")
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)  # the blog post's script leaves the RNG unseeded; fixing it makes runs repeatable
    start = time.perf_counter()
    trainloader = build_loader(prepare_root(root))
    net = LeNet()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    setup_seconds = time.perf_counter() - start
    start = time.perf_counter()
    steps, examples, final_loss = train(net, trainloader, criterion, optimizer, epochs, max_steps, quiet)
    seconds = time.perf_counter() - start
    return {"script": "seed_torch", "dataset": "mnist", "device": "cpu", "batch_size": BATCH_SIZE,
            "epochs": epochs, "max_steps": max_steps, "steps": steps, "examples": examples,
            "seconds": seconds, "seconds_per_step": seconds / steps, "setup_seconds": setup_seconds,
            "final_loss": final_loss, "threads": torch.get_num_threads(), "seed": seed}


class ReferenceRun:
    """The seed script as a reference run (a runs.Session): set up as `run` does, trained one epoch at a time.

    Set-up follows `run`: torch.manual_seed(seed), the blog post's loader, `LeNet()` (PyTorch's own initialisers),
    CrossEntropyLoss, SGD(lr 0.001, momentum 0.9). Each epoch is the blog post's `train` loop with epochs=1: the loop
    body is the script's, and `running_loss` restarts each epoch as it does in the script's 10-epoch loop. The
    DataLoader's shuffle draws from torch's global RNG, which the state saves, so a resumed run continues with
    the same batches. On the CPU, as the script runs.
    """

    def __init__(self, dataset: str, seed: int, limit: int | None = None, device: str = "auto",
                 data_root: lenet_data.StrPath | None = None) -> None:
        if device == "gpu":
            raise UserError("the blog post's PyTorch script runs on the CPU (it never moves the model): use DEVICE=cpu")
        torch.manual_seed(seed)
        root = prepare_root(data_root=data_root, dataset=dataset)
        self.trainloader = build_loader(root, dataset, limit)
        self.testloader = torch.utils.data.DataLoader(seed_dataset(root, dataset, False, limit), TEST_BATCH)
        self.net = LeNet()
        self.criterion = nn.CrossEntropyLoss()
        self.optimizer = optim.SGD(self.net.parameters(), lr=0.001, momentum=0.9)
        self.threads = torch.get_num_threads()

    def versions(self) -> dict[str, str]:
        from backends import load_backend  # the versions the PyTorch backend records, recorded the same way

        return load_backend("torch").versions()

    def kernels(self) -> dict[str, Any]:
        from backends import load_backend  # the kernels the PyTorch backend records: the script runs the same framework

        return load_backend("torch").kernels()

    def device_name(self) -> str:
        return "cpu"

    def environment(self) -> dict[str, str | None]:
        from common import environments

        return environments.current()  # the script runs in its framework's environment (run-one hands it there)

    def train_epoch(self, epoch: int, on_step=None) -> EpochOutcome:
        """One epoch of the blog post's loop; a hook on the criterion records each step's loss and correct count."""
        outcome = EpochOutcome()
        total = len(self.trainloader)

        def record(_criterion, inputs, loss):
            outputs, labels = inputs
            outcome.step_losses.append(loss.item())
            outcome.loss_sum += loss.item() * len(labels)  # the criterion's mean over the batch
            outcome.correct += int((outputs.argmax(dim=1) == labels).sum())
            outcome.examples += len(labels)
            if on_step:
                on_step(len(outcome.step_losses), total)

        hook = self.criterion.register_forward_hook(record)
        start = time.perf_counter()
        try:
            train(self.net, self.trainloader, self.criterion, self.optimizer, epochs=1)
        finally:
            hook.remove()
        outcome.seconds = time.perf_counter() - start
        outcome.diverged = not all(math.isfinite(loss) for loss in outcome.step_losses)
        return outcome

    def evaluate(self) -> tuple[float, float]:
        """(mean test loss, test accuracy): the criterion on the net's outputs (the blog post's softmax), no
        gradient."""
        was_training = self.net.training
        self.net.eval()
        loss_sum, correct, count = 0.0, 0, 0
        with torch.no_grad():
            for inputs, labels in self.testloader:
                outputs = self.net(inputs)
                loss_sum += float(nn.functional.cross_entropy(outputs, labels, reduction="sum"))
                correct += int((outputs.argmax(dim=1) == labels).sum())
                count += len(labels)
        self.net.train(was_training)
        return loss_sum / count, correct / count

    def predict(self) -> np.ndarray:
        """The class the script's network predicts for every test image, in the test loader's order (the file's)."""
        was_training = self.net.training
        self.net.eval()
        with torch.no_grad():
            predicted = [self.net(inputs).argmax(dim=1).numpy() for inputs, _ in self.testloader]
        self.net.train(was_training)
        return np.concatenate(predicted).astype(np.uint8)

    def get_state(self) -> dict[str, np.ndarray]:
        """Weights, the optimiser's momentum buffers and torch's global RNG (the next epoch's shuffle)."""
        buffer = io.BytesIO()
        torch.save(self.optimizer.state_dict(), buffer)
        weights = {f"net.{name}": value.numpy().copy() for name, value in self.net.state_dict().items()}
        return {**weights, "optimizer": np.frombuffer(buffer.getvalue(), dtype=np.uint8),
                "torch_rng": torch.get_rng_state().numpy().copy()}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what get_state saved."""
        self.net.load_state_dict({name[4:]: torch.from_numpy(value) for name, value in state.items()
                                  if name.startswith("net.")})
        self.optimizer.load_state_dict(torch.load(io.BytesIO(state["optimizer"].tobytes()), weights_only=True))
        torch.set_rng_state(torch.from_numpy(state["torch_rng"]))


def main(argv: list[str] | None = None) -> int:
    """`python -m experiments.running.seed_scripts.seed_torch`: run the blog post's script and print the result as
    JSON."""
    parser = argparse.ArgumentParser(prog="python -m experiments.running.seed_scripts.seed_torch",
                                     description="The blog post's PyTorch LeNet on local MNIST, timed.")
    parser.add_argument("--epochs", type=int, default=10, help="epochs (the seed: 10)")
    parser.add_argument("--max-steps", type=int, help="stop after this many optimiser steps in all")
    parser.add_argument("--seed", type=int, default=0, help="torch RNG seed (default 0)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--verbose", action="store_true", help="print the blog post's loss lines")
    args = parser.parse_args(argv)
    result = run(args.epochs, args.max_steps, quiet=not args.verbose, seed=args.seed, threads=args.threads)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    run_cli(main)
