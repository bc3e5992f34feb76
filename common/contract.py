"""The backend contract: what a module must provide to be a backend of lenet-repro.

`Backend` is a typing Protocol that a module satisfies (PEP 544: a module can implement a protocol), so a type
checker verifies an implementation (`backend: Backend = my_module`, see `make typecheck`), and the conformance
suite (`backends/conformance/`) reads the same members and signatures to tell a backend's author what is missing,
test by test. `Model` is whatever the backend builds: the harness only hands it back to the same backend, and
reads one attribute of it, `model.recipe`.

Conventions every function keeps:
* Arrays in and out are NumPy: images float32 (N, C, H, W) in the spec's layout, labels int (N,); weights are a
  dict of named float arrays in the spec's layout (`common.spec.parameter_shapes`): conv weights (out, in, k, k),
  dense weights (out, in), biases (out,), whatever layout the framework keeps inside.
* `device` is "auto", "cpu" or "gpu"; anything else, or a device the machine lacks, raises
  `common.errors.UserError` (one line for the user, never a traceback).
* A backend imports no other registered backend's framework (the registry's `packages`).
* A training state (`get_state`) is the weights under their names and, where the optimiser keeps one, each
  parameter's momentum buffer under `momentum/<name>`, in the spec's layout and the framework's own momentum form
  (PyTorch's, optax's, the TensorFlow backend's and NumPy's `buf = m·buf + g`; Gluon's `mom = m·mom − lr·g`):
  `join_state` and `split_state` below, the one scheme every backend keeps (PyTorch and Gluon keep no buffer
  without momentum, nor before the first step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from common import spec

Model = Any
Weights = dict[str, np.ndarray]
MOMENTUM = "momentum/"  # the prefix of a momentum buffer's name in a training state


def join_state(weights: Weights, buffers: Weights) -> dict[str, np.ndarray]:
    """A training state: the weights, and each momentum buffer under `momentum/<parameter name>`."""
    unknown = sorted(set(buffers) - set(weights))
    if unknown:
        raise ValueError(f"momentum buffers {unknown} name no parameter")
    return {**weights, **{MOMENTUM + name: buffer for name, buffer in buffers.items()}}


def split_state(state: dict[str, np.ndarray]) -> tuple[Weights, Weights]:
    """(weights, momentum buffers by parameter name) of a training state made by join_state."""
    weights = {name: value for name, value in state.items() if not name.startswith(MOMENTUM)}
    buffers = {name.removeprefix(MOMENTUM): value for name, value in state.items() if name.startswith(MOMENTUM)}
    return weights, buffers


@runtime_checkable
class Backend(Protocol):
    """The functions every backend module defines, with these parameters (names and order)."""

    def configure_threads(self, threads: int | None = None) -> int:
        """Use `threads` threads for the framework's kernels (default: OMP_NUM_THREADS, else every core);
        returns the count in force (recorded with each run). A framework that reads its thread count once, when it
        is imported (MXNet, XLA, TensorFlow), takes it from OMP_NUM_THREADS, which the harness sets before the
        import (`--threads`); asked afterwards for another count, it keeps the one in force and returns it: the
        record holds the count the run had, not the one asked for."""
        ...

    def select_device(self, device: str = "auto") -> Any:
        """The framework's device for "auto" (an accelerator when present), "cpu" or "gpu" (required)."""
        ...

    def device_name(self, model: Model) -> str:
        """The device a model runs on, as recorded: "cpu", or e.g. "cuda:0 (NVIDIA H200)"."""
        ...

    def build_model(self, recipe: spec.Recipe, device: str = "auto", seed: int = 0) -> Model:
        """The recipe's network and its SGD optimiser, with the framework's own initial weights for `seed`."""
        ...

    def native_init(self, model: Model, seed: int) -> None:
        """Draw the recipe's initial weights again with the framework's own initialisers and generator."""
        ...

    def set_weights(self, model: Model, weights: Weights) -> None:
        """Load named weights (spec layout); a wrong set of names raises ValueError."""
        ...

    def get_weights(self, model: Model) -> Weights:
        """Named copies of the weights, in the spec's layout."""
        ...

    def get_state(self, model: Model) -> dict[str, np.ndarray]:
        """Everything training needs to resume exactly: the weights and the optimiser's state, as named arrays."""
        ...

    def set_state(self, model: Model, state: dict[str, np.ndarray]) -> None:
        """Restore what get_state returned: training then goes on as if never interrupted."""
        ...

    def forward(self, model: Model, x: np.ndarray) -> np.ndarray:
        """The network's output for a batch (logits, or probabilities for a softmax head), in eval mode."""
        ...

    def loss_and_gradients(self, model: Model, x: np.ndarray, y: np.ndarray) -> tuple[float, Weights]:
        """Mean per-example loss and the gradient SGD would follow (named, spec layout); weights unchanged."""
        ...

    def train_step(self, model: Model, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """One SGD step on a batch: (sum of per-example losses, number correct), both before the update."""
        ...

    def evaluate(self, model: Model, x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[float, int]:
        """(sum of per-example losses, number correct) over a dataset, in batches, in eval mode."""
        ...

    def layer_shapes(self, model: Model) -> list[tuple[str, tuple[int, ...], int]]:
        """(spec layer name, output shape of one example, parameter count), measured from the built network."""
        ...

    def versions(self) -> dict[str, str]:
        """The framework's package versions, recorded with every run."""
        ...

    def kernels(self) -> dict[str, Any]:
        """The kernel libraries the framework runs on this machine and the instruction set they dispatch to, as
        the framework exposes them (e.g. oneDNN's ISA, ATen's CPU capability, the BLAS core type), recorded with
        every run beside `common.machine.describe()`; an empty dict is allowed where nothing is exposed."""
        ...

    def native_order(self, seed: int, epoch: int, n: int) -> np.ndarray:
        """The framework's own shuffle of range(n) for an epoch (native mode), deterministic per (seed, epoch)."""
        ...


MEMBERS: tuple[str, ...] = tuple(
    name for name in Backend.__dict__ if not name.startswith("_") and callable(Backend.__dict__[name])
)


@runtime_checkable
class Profiled(Protocol):
    """What a backend may add to be profiled (`lenet-repro profile`): optional, outside the contract."""

    def profile_ops(self, model: Model, x: np.ndarray, y: np.ndarray, steps: int) -> dict[str, float]:
        """Seconds each operation took, summed over `steps` training steps on this batch (train_step's), as the
        framework's own profiler reports them (self time: an operation's children are not counted in it)."""
        ...


@runtime_checkable
class Batched(Protocol):
    """What a backend may add to train several seeds in one process (`lenet-repro bench-grid`): optional."""

    def seeds_step(self, recipe: spec.Recipe, seeds: int) -> Callable[[np.ndarray, np.ndarray], float]:
        """`seeds` models of the recipe (seeds 0, 1, ...) trained at once: a function of (x: (seeds, N, C, H, W),
        y: (seeds, N)) that takes one SGD step of each on its own batch and returns the sum of their losses."""
        ...


OPTIONAL_MEMBERS: tuple[str, ...] = tuple(
    name for protocol in (Profiled, Batched) for name in protocol.__dict__
    if not name.startswith("_") and callable(protocol.__dict__[name])
)
