"""LeNet in MXNet Gluon, built from common.spec. Mirrors backends/torch_lenet.py function for function.

Takes NumPy batches in, gives NumPy numbers out; never imports torch. The context comes from d2lzh's
`try_gpu`, as in the seed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.quiet import stderr_without

# MXNet reads its engine and OpenMP settings once, when it is first imported. Measured on 2 cores at 96x96
# (seed-mxnet, one step of 256): default settings 358 ms, OMP_NUM_THREADS=cores 246 ms, plus the synchronous
# NaiveEngine 215 ms: our loop reads the loss every step anyway, so the threaded engine only adds overhead.
# Neither changes any kernel's arithmetic. Values already set in the environment win.
# They are put back afterwards, so that child processes (the seed script's DataLoader workers, whose forked
# engine hangs under NaiveEngine) start with MXNet's defaults.
_CHOSEN = {"OMP_NUM_THREADS": str(len(os.sched_getaffinity(0))), "MXNET_ENGINE_TYPE": "NaiveEngine"}
_SAVED = {name: os.environ.get(name) for name in _CHOSEN}
os.environ.update({name: _SAVED[name] or value for name, value in _CHOSEN.items()})
THREADS = int(os.environ["OMP_NUM_THREADS"])

import mxnet as mx  # noqa: E402 - must follow the environment settings above
from mxnet import autograd, gluon, init, nd  # noqa: E402
from mxnet.gluon import nn  # noqa: E402

with stderr_without("MXNet start using engine"):  # MXNet logs the engine chosen above
    mx.nd.zeros(1).wait_to_read()  # the engine exists now; the environment can go back as it was
for _name, _value in _SAVED.items():
    if _value is None:
        os.environ.pop(_name)

from backends import init_scheme  # noqa: E402
from common import spec  # noqa: E402
from common.contract import join_state, split_state  # noqa: E402
from common.errors import UserError  # noqa: E402

NAME = "mxnet"


class _Softmax(nn.HybridBlock):
    """Softmax over classes inside the network (the seed-torch quirk, for parity)."""

    def hybrid_forward(self, F, x):  # noqa: N803 - Gluon's signature
        return F.softmax(x, axis=1)


@dataclass
class Model:
    """A built network with its trainer, context and recipe."""

    recipe: spec.Recipe
    net: nn.HybridSequential
    trainer: gluon.Trainer
    device: mx.Context
    params: dict[str, gluon.Parameter]  # spec parameter name -> Gluon parameter
    loss: gluon.loss.SoftmaxCrossEntropyLoss


def configure_threads(threads: int | None = None) -> int:
    """MXNet took its thread count from the environment at import (see above); report it."""
    return THREADS


def select_device(device: str = "auto") -> mx.Context:
    """'auto': d2lzh's try_gpu (a GPU when one works, else CPU); 'cpu' forces the CPU; 'gpu' requires one."""
    if device not in ("auto", "cpu", "gpu"):
        raise UserError(f"unknown device {device!r}; valid: auto, cpu, gpu")
    if device == "cpu":
        return mx.cpu()
    import d2lzh  # imported only here: it pulls in matplotlib and IPython

    context = d2lzh.try_gpu()
    if device == "gpu" and context.device_type != "gpu":
        raise UserError("device 'gpu' asked for, but MXNet has no working GPU (this build or this card)")
    return context


def device_name(model: Model) -> str:
    """The context the model runs on, as recorded with results."""
    return str(model.device)


def _layer(layer: spec.Layer, in_shape: tuple[int, ...]) -> nn.HybridBlock:
    """One spec layer as a Gluon block (input sizes given, so nothing is deferred)."""
    match layer:
        case spec.Conv(channels=c, kernel=k, stride=s, padding=p):
            return nn.Conv2D(c, k, strides=s, padding=p, in_channels=in_shape[0])
        case spec.Pool(mode="max", size=k, stride=s):
            return nn.MaxPool2D(pool_size=k, strides=s)
        case spec.Pool(mode="avg", size=k, stride=s):
            return nn.AvgPool2D(pool_size=k, strides=s)
        case spec.Activation(function=f):
            return nn.Activation(f)  # the blog post's Conv2D(activation='sigmoid') computes the same two ops
        case spec.Flatten():
            return nn.Flatten()  # C-order (C, H, W) like torch's view; made explicit instead of Dense's
        case spec.Dense(units=u):
            return nn.Dense(u, flatten=False, in_units=in_shape[0])  # input already flat: no implicit flatten
        case spec.Softmax():
            return _Softmax()
    raise TypeError(layer)


def build_model(recipe: spec.Recipe, device: str = "auto", seed: int = 0, hybridize: bool = True) -> Model:
    """The recipe's network and Gluon SGD trainer; weights from MXNet's own initialisers (seeded)."""
    rows = spec.layer_rows(recipe)
    net = nn.HybridSequential()
    params: dict[str, gluon.Parameter] = {}
    for previous, row in zip(rows, rows[1:], strict=False):
        block = _layer(row.layer, previous.shape)
        net.add(block)
        if isinstance(row.layer, spec.Conv | spec.Dense):
            params[f"{row.name}.weight"], params[f"{row.name}.bias"] = block.weight, block.bias
    context = select_device(device)
    net.initialize(ctx=context)
    opt = recipe.optimizer
    # Gluon's 'sgd': mom = m*mom - lr*(rescale*g + wd*w); w += mom (PyTorch's update for a constant lr).
    # The trainer's saved state (get_state) is keyed by each parameter's index in its list, so the list has a fixed
    # order: per layer, bias then weight. Given a ParameterDict, Gluon sorts the global names instead (conv0_bias,
    # conv0_weight, ...), which gives this same order only while the name counters stay below 10: the fourth network
    # built in a process has dense9..dense11, sorted dense10, dense11, dense9, and a state saved from another network
    # would give each layer another layer's momentum.
    layers = dict.fromkeys(name.rsplit(".", 1)[0] for name in params)
    ordered = [params[f"{layer}.{kind}"] for layer in layers for kind in ("bias", "weight")]
    trainer = gluon.Trainer(ordered, "sgd", {"learning_rate": opt.lr, "momentum": opt.momentum, "wd": opt.weight_decay})
    model = Model(recipe, net, trainer, context, params, gluon.loss.SoftmaxCrossEntropyLoss())
    native_init(model, seed)
    if hybridize:
        net.hybridize(static_alloc=True)  # one cached graph per input shape: same ops, less Python
    return model


def native_init(model: Model, seed: int) -> None:
    """MXNet's own initialisers for the recipe's scheme, from MXNet's RNG (the 'native' mode)."""
    mx.random.seed(seed)
    scheme = init_scheme(NAME, model.recipe)
    for name, param in model.params.items():
        if name.endswith(".weight"):
            if scheme == "torch-default":
                # PyTorch's kaiming_uniform_(a=sqrt(5)) is U(+-sqrt(1/fan_in)) = Xavier(in, magnitude 1)
                initializer = init.Xavier(rnd_type="uniform", factor_type="in", magnitude=1)
            elif scheme == "gluon-default":
                initializer = init.Uniform()  # what net.initialize() draws: U(-0.07, 0.07), whatever the layer
            else:
                initializer = init.Xavier()  # uniform, factor 'avg', magnitude 3 (the blog post's init.Xavier())
        elif scheme in ("gluon-xavier", "gluon-default"):
            initializer = init.Zero()  # Gluon's default bias initialiser
        else:
            fan_in = math.prod(model.params[name.replace(".bias", ".weight")].shape[1:])
            initializer = init.Uniform(1.0 / math.sqrt(fan_in))  # PyTorch's default bias distribution
        param.initialize(init=initializer, ctx=model.device, force_reinit=True)


def set_weights(model: Model, weights: dict[str, np.ndarray]) -> None:
    """Copy named NumPy weights (spec layout) into the network."""
    if set(weights) != set(model.params):
        raise ValueError(f"weights {sorted(weights)} do not match parameters {sorted(model.params)}")
    for name, param in model.params.items():
        param.set_data(nd.array(weights[name], ctx=model.device, dtype="float32"))


def get_weights(model: Model) -> dict[str, np.ndarray]:
    """Named NumPy copies of the network's weights."""
    return {name: param.data().asnumpy().copy() for name, param in model.params.items()}


def _momentum(model: Model) -> tuple[Any, dict[str, int]]:
    """The trainer's updater, which keeps each parameter's momentum under its index in the trainer's list (the
    fixed order build_model gives it), and each parameter's index by name. One device: Gluon updates in the
    trainer, not in a kvstore."""
    trainer = model.trainer
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._update_on_kvstore:
        raise RuntimeError("the trainer updates on a kvstore: its momentum is not held here")
    index = {id(param): i for i, param in enumerate(trainer._params)}
    return trainer._updaters[0], {name: index[id(param)] for name, param in model.params.items()}


def get_state(model: Model) -> dict[str, np.ndarray]:
    """Everything needed to resume training: the weights and the trainer's momentum (mom = m·mom − lr·g; none
    without momentum or before the first step), in the spec's layout (common.contract.join_state)."""
    updater, index = _momentum(model)
    buffers = {name: updater.states[i].asnumpy().copy() for name, i in index.items()
               if updater.states.get(i) is not None}  # fmt: skip
    return join_state(get_weights(model), buffers)


def set_state(model: Model, state: dict[str, np.ndarray]) -> None:
    """Restore what get_state saved."""
    weights, buffers = split_state(state)
    set_weights(model, weights)
    updater, index = _momentum(model)
    for name, buffer in buffers.items():
        updater.states[index[name]] = nd.array(buffer, ctx=model.device, dtype="float32")
        updater.states_synced[index[name]] = True


def _arrays(model: Model, x: np.ndarray, y: np.ndarray) -> tuple[nd.NDArray, nd.NDArray]:
    # Labels as float32, as d2lzh's _get_batch casts them for SoftmaxCrossEntropyLoss and the accuracy.
    return nd.array(x, ctx=model.device, dtype="float32"), nd.array(y, ctx=model.device, dtype="float32")


def _step_divisor(model: Model, batch: int) -> int:
    """What trainer.step divides the summed gradient by."""
    if model.recipe.loss.normalisation == "mean":
        return batch  # d2l-en: trainer.step(X.shape[0]), i.e. the mean over the actual batch
    return model.recipe.batch_size  # the seed: trainer.step(batch_size), also for the last partial batch


def forward(model: Model, x: np.ndarray) -> np.ndarray:
    """The network's output (logits, or probabilities for a softmax head) in predict mode."""
    return model.net(nd.array(x, ctx=model.device, dtype="float32")).asnumpy()


def loss_and_gradients(model: Model, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    """Mean per-example loss and the gradient SGD would follow, without updating the weights."""
    xs, ys = _arrays(model, x, y)
    with autograd.record():  # train mode, as during training
        losses = model.loss(model.net(xs), ys)  # (N,) per-example; SoftmaxCrossEntropyLoss applies log-softmax
    losses.backward()  # gradient of the sum; the trainer rescales by 1/divisor at step time
    divisor = _step_divisor(model, len(y))
    grads = {name: param.grad().asnumpy() / divisor for name, param in model.params.items()}
    return float(losses.sum().asscalar()) / len(y), grads


def train_step(model: Model, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """One SGD step on a batch; returns (sum of per-example losses, number correct) before the update."""
    xs, ys = _arrays(model, x, y)
    with autograd.record():
        output = model.net(xs)
        losses = model.loss(output, ys).sum()
    losses.backward()
    model.trainer.step(_step_divisor(model, len(y)))
    correct = (output.argmax(axis=1) == ys).sum()
    return float(losses.asscalar()), int(correct.asscalar())


def evaluate(model: Model, x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[float, int]:
    """(sum of per-example losses, number correct) over a dataset, in predict mode."""
    loss_sum, correct = 0.0, 0
    for start in range(0, len(y), batch_size):
        xs, ys = _arrays(model, x[start : start + batch_size], y[start : start + batch_size])
        output = model.net(xs)
        loss_sum += float(model.loss(output, ys).sum().asscalar())
        correct += int((output.argmax(axis=1) == ys).sum().asscalar())
    return loss_sum, correct


def layer_shapes(model: Model) -> list[tuple[str, tuple[int, ...], int]]:
    """(layer name, output shape of one example, parameter count) measured by running the network."""
    recipe = model.recipe
    names = [row.name for row in spec.layer_rows(recipe)[1:]]
    x = nd.zeros((1, recipe.in_channels, recipe.input_size, recipe.input_size), ctx=model.device)
    rows = []
    for name, block in zip(names, model.net, strict=True):
        x = block(x)
        count = sum(p.data().size for p in block.collect_params().values())
        rows.append((name, tuple(x.shape[1:]), count))
    return rows


def versions() -> dict[str, str]:
    """Framework versions recorded with results."""
    import d2lzh

    return {"mxnet": mx.__version__, "d2lzh": d2lzh.__version__, "numpy": np.__version__}


def profile_ops(model: Model, x: np.ndarray, y: np.ndarray, steps: int) -> dict[str, float]:
    """Seconds each MXNet operator took (summed) over `steps` training steps, from mx.profiler's aggregate
    statistics (its C API calls, which hold the operators, left out)."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        mx.profiler.set_config(profile_symbolic=True, profile_imperative=True, aggregate_stats=True,
                               filename=os.path.join(scratch, "profile.json"))  # fmt: skip
        mx.profiler.set_state("run")
        for _ in range(steps):
            train_step(model, x, y)
        mx.profiler.set_state("stop")
        table = json.loads(mx.profiler.dumps(reset=True, format="json"))
    scale = {"ms": 1e-3, "us": 1e-6}[table.get("Unit", {}).get("Time", "ms")]
    return {name: figures["Total"] * scale for name, figures in table["Time"].get("operator", {}).items()}


def kernels() -> dict[str, Any]:
    """The layout its convolutions run in (NCHW: MXNet 1.9's CPU convolution has no other) and the features MXNet
    was built with (oneDNN as MKLDNN, its BLAS, the CPU instruction sets compiled in);
    MXNet 1.9 does not say at run time which ISA its oneDNN picked (DNNL_VERBOSE=1 prints it)."""
    features = mx.runtime.Features()
    return {"layout": "NCHW", "features": [name for name, feature in features.items() if feature.enabled and (
        name.startswith(("CPU_", "BLAS_", "CUDA", "CUDNN")) or name in ("MKLDNN", "F16C"))]}


def native_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """Gluon's own shuffle (DataLoader's RandomSampler calls np.random.shuffle), seeded per epoch."""
    indices = np.arange(n)
    np.random.RandomState(seed * 1_000_003 + epoch).shuffle(indices)
    return indices
