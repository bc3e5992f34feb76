"""The seed blog post's MXNet Gluon + d2lzh LeNet script (Fashion-MNIST at 96x96), offline, for a chosen length, timed.

Faithful to the post's complete script (the recipe is written out in docs/seed.md): the same `nn.Sequential` net,
`d2l.try_gpu()`, Xavier initialisation, `d2l.load_data_fashion_mnist(batch_size=256, resize=96)` (Resize +
ToTensor, shuffle, 4 worker processes), `gluon.Trainer(..., 'sgd', {'learning_rate': 0.9})` and
`d2l.train_ch5`, which trains and evaluates on the test set after every epoch. Changed only where it must be:
(1) while the datasets are built, `local_fashion_mnist` makes gluon's FashionMNIST read the verified local
files instead of downloading; (2) the caller chooses the epochs and may stop after `max_steps` optimiser
steps (train_iter is wrapped in a step-limiting view; `evaluate=False` skips train_ch5's test pass, reported
as test acc nan); (3) timings are returned, and train_ch5's prints can be silenced.

`ReferenceRun` trains the script as a reference run of the harness (backend 'script'): `d2l.train_ch5` for one
epoch per call, on Fashion-MNIST or MNIST (the verified MNIST arrays fed to the same dataset class, nothing
else changed), with a forward hook on the net recording each training step's loss and the test set
evaluated after each epoch outside train_ch5, beside the test accuracy train_ch5 prints.

MXNet reads its thread settings (OMP_NUM_THREADS, MXNET_CPU_WORKER_NTHREADS) when it is imported, so there is
no `threads` argument: set those variables before starting Python.

CLI: `python -m experiments.running.seed_scripts.seed_mxnet [--epochs N] [--max-steps S] [--no-evaluate] [--verbose]`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import itertools
import json
import math
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import d2lzh as d2l
import d2lzh.utils as d2l_utils
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, init, nd
from mxnet.gluon import loss as gloss
from mxnet.gluon import nn
from mxnet.gluon.data import vision
from mxnet.util import is_np_array

from common import data as lenet_data
from common.errors import UserError, run_cli
from common.train import EpochOutcome

BATCH_SIZE = 256  # the blog post's batch_size
RESIZE = 96  # the blog post's resize=96
EPOCH_LINE = re.compile(r"epoch (\d+), loss (\S+), train acc (\S+), test acc (\S+), time (\S+) sec")


# ---------------------------------------------------------------------------------------------------------
# Reading the verified local files


@contextlib.contextmanager
def local_fashion_mnist(data_root: lenet_data.StrPath | None = None, dataset: str = "fashion-mnist",
                        limit: int | None = None) -> Iterator[None]:
    """While active, gluon's FashionMNIST takes its arrays from the verified local files instead of downloading.

    `dataset` 'mnist' feeds the MNIST arrays to the same class (gluon's FashionMNIST differs from its MNIST only
    in the download addresses), `limit` keeps only the first examples of each split.

    Why a patch: FashionMNIST._get_data downloads unless <root>/<name>.gz has the sha1 of the *official* .gz
    bytes. Our verified files are Debian re-compressions (same content, other bytes), so no root directory can
    pass that check. Only that one method is replaced, by one that sets _data/_label exactly as the original
    does (nd.array uint8 (N, 28, 28, 1), int32 NumPy labels), from common.data's sha256-verified arrays. The
    dataset class, transforms, DataLoader and d2lzh code stay the libraries' own.
    """
    def _get_data(self):
        """MXNet's MNIST._get_data after its download and gzip parsing, fed by common.data.load_split."""
        images, labels = lenet_data.load_split(dataset, "train" if self._train else "test", data_root)
        images, labels = images[:limit], labels[:limit]
        label = labels.astype(np.int32)
        if is_np_array():
            label = mx.np.array(label, dtype=label.dtype)
        data = images.reshape(len(label), 28, 28, 1)
        array_fn = mx.np.array if is_np_array() else nd.array
        self._data = array_fn(data, dtype=data.dtype)
        self._label = label

    own = vision.FashionMNIST.__dict__.get("_get_data")  # normally absent: the method is inherited from MNIST
    vision.FashionMNIST._get_data = _get_data
    try:
        yield
    finally:
        if own is None:
            del vision.FashionMNIST._get_data
        else:
            vision.FashionMNIST._get_data = own


def load_data(data_root: lenet_data.StrPath | None = None, dataset: str = "fashion-mnist",
              limit: int | None = None) -> tuple[gluon.data.DataLoader, gluon.data.DataLoader]:
    """The blog post's `d2l.load_data_fashion_mnist(batch_size=256, resize=96)`, reading the verified local files."""
    root = str(lenet_data.data_dir(data_root) / dataset)  # unused by the patch; keeps ~/.mxnet untouched
    with local_fashion_mnist(data_root, lenet_data.check_dataset(dataset), limit):
        return d2l.load_data_fashion_mnist(batch_size=BATCH_SIZE, resize=RESIZE, root=root)


def shutdown(*loaders: gluon.data.DataLoader) -> None:
    """Stop the loaders' worker processes now: DataLoader only terminates them in __del__, which may run late."""
    for loader in loaders:
        pool = getattr(loader, "_worker_pool", None)
        if pool is not None:
            pool.terminate()
            pool.join()
            loader._worker_pool = None  # __del__ would terminate it again


# ---------------------------------------------------------------------------------------------------------
# Step limit, evaluation switch, output capture


class StepLimit:
    """Re-iterable view of train_iter that ends after `max_steps` batches in all, counting steps and examples."""

    def __init__(self, loader: gluon.data.DataLoader, max_steps: int | None) -> None:
        self.loader, self.max_steps, self.steps, self.examples = loader, max_steps, 0, 0

    def __iter__(self) -> Iterator:
        """The loader's batches, stopping before fetching one past the limit."""
        remaining = None if self.max_steps is None else self.max_steps - self.steps
        for X, y in itertools.islice(self.loader, remaining):
            self.steps += 1
            self.examples += X.shape[0]
            yield X, y

    def __len__(self) -> int:
        """Batches per epoch of the underlying loader."""
        return len(self.loader)


@contextlib.contextmanager
def timed_evaluation(evaluate: bool = True) -> Iterator[dict]:
    """Time train_ch5's per-epoch test evaluation, or skip it (train_ch5 then prints test acc nan)."""
    original = d2l_utils.evaluate_accuracy  # train_ch5 looks it up in d2lzh.utils' globals at each call
    timer = {"seconds": 0.0, "calls": 0}

    def evaluate_accuracy(data_iter, net, ctx):
        """d2lzh's evaluate_accuracy (or nan when skipped), timed."""
        start = time.perf_counter()
        try:
            return original(data_iter, net, ctx) if evaluate else float("nan")
        finally:
            timer["seconds"] += time.perf_counter() - start
            timer["calls"] += 1

    d2l_utils.evaluate_accuracy = evaluate_accuracy
    try:
        yield timer
    finally:
        d2l_utils.evaluate_accuracy = original


class _Tee(io.StringIO):
    """Keeps everything written; also passes it on to the real stdout unless quiet."""

    def __init__(self, quiet: bool) -> None:
        super().__init__()
        self.out = None if quiet else sys.stdout

    def write(self, text: str) -> int:
        """Record `text` (and echo it unless quiet)."""
        if self.out is not None:
            self.out.write(text)
        return super().write(text)


def _last_epoch(log: str) -> dict:
    """Loss, train acc and test acc from train_ch5's last epoch line (None where absent or nan)."""
    found = EPOCH_LINE.findall(log)
    if not found:
        return {"final_loss": None, "train_acc": None, "test_acc": None}
    values = [float(text) for text in found[-1][1:4]]
    return dict(zip(("final_loss", "train_acc", "test_acc"), (None if math.isnan(v) else v for v in values),
                    strict=True))


# ---------------------------------------------------------------------------------------------------------
# The blog post's script


def build_net() -> nn.Sequential:
    """The blog post's network, verbatim."""
    net = nn.Sequential()
    net.add(nn.Conv2D(channels=6, kernel_size=5, activation='sigmoid'),
            nn.MaxPool2D(pool_size=2, strides=2),
            nn.Conv2D(channels=16, kernel_size=5, activation='sigmoid'),
            nn.MaxPool2D(pool_size=2, strides=2),
            nn.Dense(120, activation='sigmoid'),
            nn.Dense(84, activation='sigmoid'),
            nn.Dense(10)
            )
    return net


def _plan_epochs(epochs: int, max_steps: int | None, batches_per_epoch: int) -> int:
    """Epochs to hand train_ch5: no more than needed for max_steps, so that no epoch is empty (n = 0)."""
    if max_steps is None:
        return epochs
    return min(epochs, math.ceil(max_steps / batches_per_epoch))


def _seed_everything(seed: int) -> None:
    """Seed MXNet (Xavier init) and NumPy (the loader's shuffle); the seed script leaves them unseeded."""
    mx.random.seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def run(epochs: int = 10, max_steps: int | None = None, quiet: bool = True, seed: int = 0,
        evaluate: bool = True, data_root: lenet_data.StrPath | None = None) -> dict:
    """Run the seed script for `epochs` (or until `max_steps` optimiser steps) and return counts and timings.

    `seconds` is train_ch5's wall time, which includes its per-epoch test evaluation (`eval_seconds`; part of
    the blog post's cost) unless evaluate=False; `train_seconds` is the rest. `setup_seconds` covers the net, its
    initialisation, the datasets, the loaders (forking 2 x 4 workers) and the trainer.
    """
    if epochs < 1 or (max_steps is not None and max_steps < 1):
        raise UserError(f"epochs and max_steps must be at least 1 (got {epochs}, {max_steps})")
    _seed_everything(seed)
    start = time.perf_counter()
    net = build_net()
    ctx = d2l.try_gpu()
    net.initialize(force_reinit=True, ctx=ctx, init=init.Xavier())
    batch_size = BATCH_SIZE
    train_iter, test_iter = load_data(data_root)
    try:
        loss = gloss.SoftmaxCrossEntropyLoss()  # noqa: F841 - as in the seed; train_ch5 makes its own
        trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.9})
        num_epochs = _plan_epochs(epochs, max_steps, len(train_iter))
        limited = StepLimit(train_iter, max_steps)
        log = _Tee(quiet)
        setup_seconds = time.perf_counter() - start
        start = time.perf_counter()
        with timed_evaluation(evaluate) as evaluation, contextlib.redirect_stdout(log):
            d2l.train_ch5(net, limited, test_iter, batch_size, trainer, ctx, num_epochs)
            nd.waitall()  # MXNet runs asynchronously: count all queued work
        seconds = time.perf_counter() - start
    finally:
        shutdown(train_iter, test_iter)
    return {"script": "seed_mxnet", "dataset": "fashion-mnist", "context": str(ctx), "batch_size": batch_size,
            "resize": RESIZE, "epochs": num_epochs, "max_steps": max_steps, "steps": limited.steps,
            "examples": limited.examples, "seconds": seconds, "seconds_per_step": seconds / limited.steps,
            "train_seconds": seconds - evaluation["seconds"], "eval_seconds": evaluation["seconds"],
            "evaluate": evaluate, "setup_seconds": setup_seconds, **_last_epoch(log.getvalue()), "seed": seed}


class _LabelTap:
    """Re-iterable view of a loader that remembers the labels of the batch it last handed out."""

    def __init__(self, loader: gluon.data.DataLoader) -> None:
        self.loader, self.labels = loader, None

    def __iter__(self) -> Iterator:
        for X, y in self.loader:
            self.labels = y
            yield X, y

    def __len__(self) -> int:
        return len(self.loader)


class ReferenceRun:
    """The seed script as a reference run (a runs.Session): set up as `run` does, trained one epoch at a time.

    Set-up follows `run`: MXNet, NumPy and Python seeded, the blog post's net, `try_gpu()`, Xavier, the blog post's
    loaders, SGD lr 0.9. Each epoch is `d2l.train_ch5(..., num_epochs=1)`: its loop is d2lzh's own, and it
    prints (and we keep) its loss, train acc and test acc. Gluon's loader shuffles with NumPy's global RNG,
    which the state saves, so a resumed run continues with the same batches.
    """

    def __init__(self, dataset: str, seed: int, limit: int | None = None, device: str = "auto",
                 data_root: lenet_data.StrPath | None = None) -> None:
        _seed_everything(seed)
        self.net = build_net()
        self.ctx = mx.cpu() if device == "cpu" else d2l.try_gpu()
        if device == "gpu" and self.ctx.device_type != "gpu":
            raise UserError("device 'gpu' asked for, but d2lzh's try_gpu() finds no GPU for MXNet")
        self.net.initialize(force_reinit=True, ctx=self.ctx, init=init.Xavier())
        self.train_iter, self.test_iter = load_data(data_root, dataset, limit)
        self.trainer = gluon.Trainer(self.net.collect_params(), 'sgd', {'learning_rate': 0.9})
        self.threads = int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))
        self.loss = gloss.SoftmaxCrossEntropyLoss()  # the harness's own copy, for the records and the test pass

    def __del__(self) -> None:
        shutdown(*[loader for loader in (getattr(self, "train_iter", None), getattr(self, "test_iter", None))
                   if loader is not None])

    def versions(self) -> dict[str, str]:
        return {"mxnet": mx.__version__, "d2lzh": importlib.metadata.version("d2lzh"), "numpy": np.__version__}

    def kernels(self) -> dict[str, Any]:
        from backends import load_backend  # the kernels the MXNet backend records: the script runs the same framework

        return load_backend("mxnet").kernels()

    def device_name(self) -> str:
        return str(self.ctx)

    def environment(self) -> dict[str, str | None]:
        from common import environments

        return environments.current()  # the script runs in its framework's environment (run-one hands it there)

    def train_epoch(self, epoch: int, on_step=None) -> EpochOutcome:
        """One epoch of train_ch5; a forward hook on the net records each training step (inside autograd.record)."""
        outcome = EpochOutcome()
        feed = _LabelTap(self.train_iter)
        total = len(self.train_iter)

        def record(_net, _inputs, output):
            if not autograd.is_recording():
                return  # train_ch5's test pass
            with autograd.pause():
                labels = feed.labels.as_in_context(output.context)
                loss_sum, correct = self._batch_figures(output, labels)
            outcome.step_losses.append(loss_sum / labels.shape[0])
            outcome.loss_sum += loss_sum
            outcome.correct += correct
            outcome.examples += labels.shape[0]
            if on_step:
                on_step(len(outcome.step_losses), total)

        hook = self.net.register_forward_hook(record)
        log = _Tee(quiet=True)
        start = time.perf_counter()
        try:
            with timed_evaluation() as evaluation, contextlib.redirect_stdout(log):
                d2l.train_ch5(self.net, feed, self.test_iter, BATCH_SIZE, self.trainer, self.ctx, 1)
                nd.waitall()
        finally:
            hook.detach()
        outcome.seconds = time.perf_counter() - start
        outcome.eval_seconds = evaluation["seconds"]
        printed = _last_epoch(log.getvalue())
        outcome.printed = {"loss": printed["final_loss"], "train_acc": printed["train_acc"],
                           "test_acc": printed["test_acc"]}
        outcome.diverged = not all(math.isfinite(loss) for loss in outcome.step_losses)
        return outcome

    def evaluate(self) -> tuple[float, float]:
        """(mean test loss, test accuracy) over the blog post's test loader, outside train_ch5."""
        loss_sum, correct, count = 0.0, 0, 0
        for X, y in self.test_iter:
            X, y = X.as_in_context(self.ctx), y.as_in_context(self.ctx)
            batch_loss, batch_correct = self._batch_figures(self.net(X), y)
            loss_sum, correct, count = loss_sum + batch_loss, correct + batch_correct, count + y.shape[0]
        return loss_sum / count, correct / count

    def predict(self) -> np.ndarray:
        """The class the script's network predicts for every test image, in the test iterator's order (the file's)."""
        return np.concatenate([self.net(X.as_in_context(self.ctx)).argmax(axis=1).asnumpy()
                               for X, _ in self.test_iter]).astype(np.uint8)  # fmt: skip

    def _batch_figures(self, output: nd.NDArray, labels: nd.NDArray) -> tuple[float, int]:
        """(sum of per-example softmax cross-entropy losses, number correct) of one batch's outputs."""
        loss_sum = float(self.loss(output, labels).sum().asscalar())
        correct = int((output.argmax(axis=1) == labels.astype("float32")).sum().asscalar())
        return loss_sum, correct

    def get_state(self) -> dict[str, np.ndarray]:
        """Weights, the trainer's states and NumPy's global RNG (the next epoch's shuffle)."""
        params = {f"param.{i:02d}": p.data().asnumpy() for i, p in enumerate(self.net.collect_params().values())}
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "trainer.states")
            self.trainer.save_states(path)
            trainer = np.fromfile(path, dtype=np.uint8)
        kind, keys, position, has_gauss, cached = np.random.get_state()
        return {**params, "trainer": trainer, "numpy_rng_keys": keys,
                "numpy_rng_rest": np.array([position, has_gauss, cached], dtype=np.float64)}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what get_state saved (one forward pass first, to finish Gluon's deferred initialisation)."""
        self.net(nd.zeros((1, 1, RESIZE, RESIZE), ctx=self.ctx))
        for i, param in enumerate(self.net.collect_params().values()):
            param.set_data(nd.array(state[f"param.{i:02d}"], ctx=self.ctx))
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "trainer.states")
            state["trainer"].tofile(path)
            self.trainer.load_states(path)
        position, has_gauss, cached = state["numpy_rng_rest"]
        np.random.set_state(("MT19937", state["numpy_rng_keys"], int(position), int(has_gauss), float(cached)))


def main(argv: list[str] | None = None) -> int:
    """`python -m experiments.running.seed_scripts.seed_mxnet`: run the seed script and print the result as JSON."""
    parser = argparse.ArgumentParser(prog="python -m experiments.running.seed_scripts.seed_mxnet",
                                     description="The blog post's MXNet Gluon LeNet on local Fashion-MNIST, timed.")
    parser.add_argument("--epochs", type=int, default=10, help="epochs (the seed: 10)")
    parser.add_argument("--max-steps", type=int, help="stop after this many optimiser steps in all")
    parser.add_argument("--seed", type=int, default=0, help="MXNet and NumPy RNG seed (default 0)")
    parser.add_argument("--no-evaluate", dest="evaluate", action="store_false",
                        help="skip train_ch5's per-epoch test evaluation")
    parser.add_argument("--verbose", action="store_true", help="print train_ch5's lines")
    args = parser.parse_args(argv)
    result = run(args.epochs, args.max_steps, quiet=not args.verbose, seed=args.seed, evaluate=args.evaluate)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    run_cli(main)
