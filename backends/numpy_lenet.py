"""LeNet in NumPy alone: every layer's forward pass and its backward pass written out by hand.

This is what `loss.backward()` and `trainer.step()` compute, in the open. It mirrors backends/torch_lenet.py and
backends/mxnet_lenet.py function for function (same names, same signatures) and never imports either framework,
so it can be the oracle both are checked against: float64 by default (the math itself), float32 selectable
(`build_model(..., dtype=np.float32)`) to see how far float32 arithmetic alone moves the numbers.

Read it layer by layer: Conv, Pool (max and average), Sigmoid and ReLU, Flatten, Dense, Softmax, then the loss
and the SGD step. Each class has its forward and, right below, its backward; the formula each one implements is
the comment above it. Notation: x the layer's input, y its output, dy = dL/dy arriving from the layer above,
dx = dL/dx handed to the layer below; n indexes examples, (i, j) output positions, (p, q) kernel offsets.

Layout: between the input and Flatten, activations are kept channels-last, (N, H, W, C), so that a convolution
is one matrix product with N*H*W rows; Flatten turns them back into the spec's C-order (C, H, W) features.
Parameters keep the spec's layout: conv weights (out, in, k, k), dense weights (out, in).
Nothing loops over examples or pixels: the only Python loops run over a kernel's k*k offsets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from backends import init_scheme
from common import spec
from common.batches import epoch_order
from common.contract import join_state, split_state
from common.errors import UserError
from common.init import initial_weights
from common.memory import keep_freed_memory

NAME = "numpy"
MALLOC_KEEPS_FREED = keep_freed_memory()  # NumPy allocates each result anew: freed memory reused (common/memory.py)
Array = np.ndarray
Grads = dict[str, Array]


def windows(x: Array, k: int, stride: int) -> Array:
    """Every k x k window of x (N, H, W, C) at the stride, as a view (N, Ho, Wo, k, k, C): nothing is copied."""
    return sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride].transpose(0, 1, 2, 4, 5, 3)


def scatter_windows(dwin: Array, in_shape: tuple[int, ...], k: int, stride: int) -> Array:
    """The adjoint of `windows`: add each window's gradient (N, Ho, Wo, k, k, C) back onto the input positions
    it was read from (positions read by several windows receive the sum). One loop step per kernel offset; where the
    windows tile the input without overlap (stride = k, LeNet's pooling) one copy, which adds nothing to nothing
    (the same numbers, bit for bit)."""
    dx = np.zeros(in_shape, dwin.dtype)
    n, ho, wo = dwin.shape[:3]
    if stride == k:  # dx[n, k*i+p, k*j+q] = dwin[n, i, j, p, q]
        dx[:, : k * ho, : k * wo] = dwin.transpose(0, 1, 3, 2, 4, 5).reshape(n, k * ho, k * wo, dwin.shape[-1])
        return dx
    for p in range(k):
        for q in range(k):
            dx[:, p : p + stride * (ho - 1) + 1 : stride, q : q + stride * (wo - 1) + 1 : stride] += dwin[:, :, :, p, q]
    return dx


class Conv:
    """y[n,i,j,o] = b[o] + sum_{c,p,q} W[o,c,p,q] * xpad[n, s*i+p, s*j+q, c]   (xpad: x zero-padded by `pad`)"""

    def __init__(self, name: str, layer: spec.Conv, first: bool) -> None:
        self.w, self.b = f"{name}.weight", f"{name}.bias"
        self.k, self.stride, self.pad = layer.kernel, layer.stride, layer.padding
        self.first = first  # the network's input needs no gradient

    def forward(self, x: Array, params: dict[str, Array]) -> Array:
        pad = self.pad
        self.xpad_shape = (x.shape[0], x.shape[1] + 2 * pad, x.shape[2] + 2 * pad, x.shape[3])
        xpad = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))) if pad else x
        win = windows(xpad, self.k, self.stride)  # (N, Ho, Wo, k, k, C)
        self.out_shape = win.shape[:3]
        self.cols = win.reshape(-1, np.prod(win.shape[3:]))  # "im2col": one row per output position, (p, q, c)
        y = self.cols @ self.matrix(params).T + params[self.b]
        return y.reshape(*self.out_shape, -1)

    def matrix(self, params: dict[str, Array]) -> Array:
        """The weights (out, in, k, k) as a matrix whose columns are in the rows' (p, q, c) order."""
        weight = params[self.w]
        return weight.transpose(0, 2, 3, 1).reshape(len(weight), -1)

    # dW[o,c,p,q] = sum_{n,i,j} dy[n,i,j,o] * xpad[n, s*i+p, s*j+q, c];  db[o] = sum_{n,i,j} dy[n,i,j,o]
    # dxpad[n, s*i+p, s*j+q, c] += sum_o dy[n,i,j,o] * W[o,c,p,q]   (then the padding is cut off)
    def backward(self, dy: Array, params: dict[str, Array], grads: Grads) -> Array | None:
        out, c, k, _ = params[self.w].shape
        dy_rows = dy.reshape(-1, out)
        grads[self.w] = (dy_rows.T @ self.cols).reshape(out, k, k, c).transpose(0, 3, 1, 2)
        grads[self.b] = dy_rows.sum(axis=0)
        if self.first:
            return None
        dcols = (dy_rows @ self.matrix(params)).reshape(*self.out_shape, k, k, c)
        dxpad = scatter_windows(dcols, self.xpad_shape, self.k, self.stride)
        pad = self.pad
        return dxpad[:, pad : dxpad.shape[1] - pad, pad : dxpad.shape[2] - pad] if pad else dxpad


class MaxPool:
    """y[n,i,j,c] = max_{p,q} x[n, s*i+p, s*j+q, c]"""

    def __init__(self, layer: spec.Pool) -> None:
        self.k, self.stride = layer.size, layer.stride

    def forward(self, x: Array, params: dict[str, Array]) -> Array:
        win = windows(x, self.k, self.stride)
        flat = win.reshape(*win.shape[:3], -1, win.shape[-1])  # (N, Ho, Wo, k*k, C), window in row-major (p, q)
        # argmax keeps the first of equal maxima in row-major order: the tie rule of the frameworks' kernels
        self.argmax, self.in_shape = flat.argmax(axis=3), x.shape
        return np.take_along_axis(flat, self.argmax[:, :, :, None], axis=3)[:, :, :, 0]

    # dx[n, s*i+p, s*j+q, c] += dy[n,i,j,c] if (p, q) is where the window's maximum was, else 0
    def backward(self, dy: Array, params: dict[str, Array], grads: Grads) -> Array:
        offsets = np.arange(self.k * self.k).reshape(self.k, self.k, 1)
        winner = self.argmax[:, :, :, None, None, :] == offsets  # (N, Ho, Wo, k, k, C)
        dwin = np.where(winner, dy[:, :, :, None, None, :], 0.0).astype(dy.dtype, copy=False)
        return scatter_windows(dwin, self.in_shape, self.k, self.stride)


class AvgPool:
    """y[n,i,j,c] = (1/k^2) sum_{p,q} x[n, s*i+p, s*j+q, c]"""

    def __init__(self, layer: spec.Pool) -> None:
        self.k, self.stride = layer.size, layer.stride

    def forward(self, x: Array, params: dict[str, Array]) -> Array:
        self.in_shape = x.shape
        return windows(x, self.k, self.stride).mean(axis=(3, 4))

    # dx[n, s*i+p, s*j+q, c] += dy[n,i,j,c] / k^2   for every (p, q)
    def backward(self, dy: Array, params: dict[str, Array], grads: Grads) -> Array:
        share = (dy / (self.k * self.k))[:, :, :, None, None, :]
        dwin = np.broadcast_to(share, (*dy.shape[:3], self.k, self.k, dy.shape[3]))
        return scatter_windows(dwin, self.in_shape, self.k, self.stride)


class Sigmoid:
    """y = 1 / (1 + exp(-x)), computed as (1 + tanh(x/2)) / 2, which never overflows"""

    def forward(self, x: Array, params: dict[str, Array]) -> Array:
        self.y = 0.5 * (1.0 + np.tanh(0.5 * x))
        return self.y

    # dx = dy * y * (1 - y)
    def backward(self, dy: Array, params: dict[str, Array], grads: Grads) -> Array:
        return dy * self.y * (1.0 - self.y)


class ReLU:
    """y = max(x, 0)"""

    def forward(self, x: Array, params: dict[str, Array]) -> Array:
        self.positive = x > 0
        return np.where(self.positive, x, 0.0).astype(x.dtype, copy=False)

    # dx = dy where x > 0, else 0 (at x = 0 exactly: 0, as the frameworks define it)
    def backward(self, dy: Array, params: dict[str, Array], grads: Grads) -> Array:
        return np.where(self.positive, dy, 0.0).astype(dy.dtype, copy=False)


class Flatten:
    """y[n, c*H*W + h*W + w] = x[n,h,w,c]: the spec's C-order (C, H, W) features, like x.view(-1, 16*4*4)"""

    def forward(self, x: Array, params: dict[str, Array]) -> Array:
        self.in_shape = x.shape
        return x.transpose(0, 3, 1, 2).reshape(len(x), -1)

    # dx is dy put back in the input's shape: flattening moves numbers, it computes nothing
    def backward(self, dy: Array, params: dict[str, Array], grads: Grads) -> Array:
        n, h, w, c = self.in_shape
        return dy.reshape(n, c, h, w).transpose(0, 2, 3, 1)


class Dense:
    """y = x W^T + b   (W: (units, inputs))"""

    def __init__(self, name: str) -> None:
        self.w, self.b = f"{name}.weight", f"{name}.bias"

    def forward(self, x: Array, params: dict[str, Array]) -> Array:
        self.x = x
        return x @ params[self.w].T + params[self.b]

    # dW = dy^T x;  db = sum_n dy[n];  dx = dy W
    def backward(self, dy: Array, params: dict[str, Array], grads: Grads) -> Array:
        grads[self.w] = dy.T @ self.x
        grads[self.b] = dy.sum(axis=0)
        return dy @ params[self.w]


class Softmax:
    """y[n,k] = exp(x[n,k]) / sum_j exp(x[n,j])   (the seed-torch quirk: a softmax inside the network)"""

    def forward(self, x: Array, params: dict[str, Array]) -> Array:
        self.y = softmax(x)
        return self.y

    # dx[n,k] = y[n,k] * (dy[n,k] - sum_j dy[n,j] y[n,j])
    def backward(self, dy: Array, params: dict[str, Array], grads: Grads) -> Array:
        return self.y * (dy - (dy * self.y).sum(axis=1, keepdims=True))


def softmax(x: Array) -> Array:
    """exp(x) / sum exp(x) over classes, shifted by the row maximum so that exp never overflows."""
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy(output: Array, labels: Array) -> tuple[Array, Array]:
    """Softmax cross-entropy of the network's output, whatever it is (logits, or the blog post's probabilities):
    loss[n] = logsumexp(o[n]) - o[n, label[n]];  dloss[n]/do[n,k] = softmax(o[n])[k] - [k == label[n]].
    Returns (per-example losses, their gradients with respect to the output)."""
    shifted = output - output.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(labels))
    d_output = np.exp(log_probs)
    d_output[rows, labels] -= 1.0
    return -log_probs[rows, labels], d_output


# ---- the model and the functions every backend has ---------------------------------------------------------


@dataclass
class Model:
    """The recipe's layers, its parameters and SGD's momentum buffers, all in one dtype."""

    recipe: spec.Recipe
    layers: list
    dtype: type
    params: dict[str, Array]
    velocity: dict[str, Array] = field(default_factory=dict)  # momentum buffers, zero before the first step


def configure_threads(threads: int | None = None) -> int:
    """NumPy's BLAS reads its thread count (OMP_NUM_THREADS) when NumPy is imported; report it."""
    return int(os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or 0) or len(
        os.sched_getaffinity(0)
    )


def select_device(device: str = "auto") -> str:
    """NumPy computes on the CPU: 'auto' and 'cpu' mean the CPU; 'gpu' is refused."""
    if device not in ("auto", "cpu", "gpu"):
        raise UserError(f"unknown device {device!r}; valid: auto, cpu, gpu")
    if device == "gpu":
        raise UserError("the NumPy backend computes on the CPU only; use DEVICE=auto or cpu with it")
    return "cpu"


def device_name(model: Model) -> str:
    return f"cpu ({np.dtype(model.dtype).name})"


def _layer(name: str, layer: spec.Layer, first: bool):
    match layer:
        case spec.Conv():
            return Conv(name, layer, first)
        case spec.Pool(mode="max"):
            return MaxPool(layer)
        case spec.Pool(mode="avg"):
            return AvgPool(layer)
        case spec.Activation(function="sigmoid"):
            return Sigmoid()
        case spec.Activation(function="relu"):
            return ReLU()
        case spec.Flatten():
            return Flatten()
        case spec.Dense():
            return Dense(name)
        case spec.Softmax():
            return Softmax()
    raise TypeError(layer)


def build_model(recipe: spec.Recipe, device: str = "auto", seed: int = 0, dtype: type = np.float64) -> Model:
    """The recipe's layers with the spec's initial weights for `seed` (NumPy has no initialisers of its own)."""
    select_device(device)
    rows = spec.layer_rows(recipe)[1:]
    layers = [_layer(row.name, row.layer, first=index == 0) for index, row in enumerate(rows)]
    model = Model(recipe, layers, dtype, {})
    native_init(model, seed)
    return model


def native_init(model: Model, seed: int) -> None:
    """NumPy's 'own' initial weights are the spec's draw: the same numbers shared mode gives every backend (the
    reference has no defaults of its own: stock mode is refused in one line)."""
    init_scheme(NAME, model.recipe)
    set_weights(model, initial_weights(model.recipe, seed))


def set_weights(model: Model, weights: dict[str, Array]) -> None:
    """Copy named weights (spec layout) into the model, in its dtype; momentum starts again from zero."""
    shapes = spec.parameter_shapes(model.recipe)
    if set(weights) != set(shapes):
        raise ValueError(f"weights {sorted(weights)} do not match parameters {sorted(shapes)}")
    model.params = {name: np.array(weights[name], dtype=model.dtype).reshape(shapes[name]) for name in shapes}
    model.velocity = {name: np.zeros_like(value) for name, value in model.params.items()}


def get_weights(model: Model) -> dict[str, Array]:
    return {name: value.copy() for name, value in model.params.items()}


def get_state(model: Model) -> dict[str, Array]:
    """Weights plus the momentum buffers: everything needed to resume training."""
    return join_state(get_weights(model), {name: v.copy() for name, v in model.velocity.items()})


def set_state(model: Model, state: dict[str, Array]) -> None:
    weights, buffers = split_state(state)
    set_weights(model, weights)
    model.velocity = {name: np.array(buffers[name], dtype=model.dtype) for name in model.params}


def _run(model: Model, x: Array) -> Array:
    """Forward through every layer, keeping what each backward needs. x: (N, C, H, W) as the harness gives it."""
    out = np.asarray(x, dtype=model.dtype).transpose(0, 2, 3, 1)  # to channels-last
    for layer in model.layers:
        out = layer.forward(out, model.params)
    return out


def _backward(model: Model, d_output: Array) -> Grads:
    """Backward through every layer in reverse: each turns dL/d(its output) into dL/d(its input) and its grads."""
    grads: Grads = {}
    d = d_output
    for layer in reversed(model.layers):
        d = layer.backward(d, model.params, grads)
    return grads


def forward(model: Model, x: Array) -> Array:
    """The network's output (logits, or probabilities for a softmax head)."""
    return _run(model, x)


def loss_normaliser(model: Model, n: int) -> int:
    """What the summed loss is divided by: the batch's size ('mean') or the recipe's batch size (d2lzh's)."""
    return n if model.recipe.loss.normalisation == "mean" else model.recipe.batch_size


def loss_and_gradients(model: Model, x: Array, y: Array) -> tuple[float, dict[str, Array]]:
    """Mean per-example loss and the gradient SGD would follow, without updating the weights."""
    output = _run(model, x)
    losses, d_output = cross_entropy(output, np.asarray(y))
    grads = _backward(model, d_output / loss_normaliser(model, len(y)))
    return float(losses.sum()) / len(y), grads


def train_step(model: Model, x: Array, y: Array) -> tuple[float, int]:
    """One SGD step; returns (sum of per-example losses, number correct) before the update.

    The spec's SGD, PyTorch's form (MXNet's coincides for a constant lr):
        g = grad + weight_decay * w;   v = momentum * v + g;   w = w - lr * v
    """
    y = np.asarray(y)
    output = _run(model, x)
    losses, d_output = cross_entropy(output, y)
    grads = _backward(model, d_output / loss_normaliser(model, len(y)))
    opt = model.recipe.optimizer
    for name, w in model.params.items():
        g = grads[name] + opt.weight_decay * w if opt.weight_decay else grads[name]
        v = model.velocity[name]
        v *= opt.momentum
        v += g
        w -= opt.lr * v
    return float(losses.sum()), int((output.argmax(axis=1) == y).sum())


def evaluate(model: Model, x: Array, y: Array, batch_size: int) -> tuple[float, int]:
    """(sum of per-example losses, number correct) over a dataset."""
    loss_sum, correct = 0.0, 0
    for start in range(0, len(y), batch_size):
        labels = np.asarray(y[start : start + batch_size])
        output = _run(model, x[start : start + batch_size])
        loss_sum += float(cross_entropy(output, labels)[0].sum())
        correct += int((output.argmax(axis=1) == labels).sum())
    return loss_sum, correct


def layer_shapes(model: Model) -> list[tuple[str, tuple[int, ...], int]]:
    """(layer name, output shape of one example in the spec's (C, H, W) order, parameter count), by running it."""
    recipe = model.recipe
    out = np.zeros((1, recipe.input_size, recipe.input_size, recipe.in_channels), model.dtype)
    rows = []
    for row, layer in zip(spec.layer_rows(recipe)[1:], model.layers, strict=True):
        out = layer.forward(out, model.params)
        shape = (out.shape[3], *out.shape[1:3]) if out.ndim == 4 else out.shape[1:]
        count = sum(model.params[name].size for name in model.params if name.rsplit(".", 1)[0] == row.name)
        rows.append((row.name, tuple(shape), count))
    return rows


def versions() -> dict[str, str]:
    return {"numpy": np.__version__}


def kernels() -> dict[str, Any]:
    """NumPy's SIMD dispatch on this processor, the BLAS (with its core type) behind its matrix products, and
    whether malloc keeps freed memory for the next step."""
    from common import machine

    return {**machine.numpy_kernels(), "layout": "NHWC (im2col)", "malloc_keeps_freed": MALLOC_KEEPS_FREED}


def profile_ops(model: Model, x: Array, y: Array, steps: int) -> dict[str, float]:
    """Seconds each Python function and NumPy routine took (own time, summed) over `steps` training steps, from
    cProfile: NumPy has no profiler of its own, and its kernels are the routines this module calls."""
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        train_step(model, x, y)
    profiler.disable()
    ops: dict[str, float] = {}
    for entry in profiler.getstats():  # code: a function's code object, or a builtin's description
        code = entry.code
        name = code if isinstance(code, str) else f"{os.path.basename(code.co_filename)}:{code.co_qualname}"
        ops[name] = ops.get(name, 0.0) + entry.inlinetime  # own time, in seconds
    return ops


def native_order(seed: int, epoch: int, n: int) -> Array:
    """NumPy has no sampler of its own: its native order is the shared one."""
    return epoch_order(seed, epoch, n, True)
