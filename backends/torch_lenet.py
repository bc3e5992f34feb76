"""LeNet in PyTorch, built from common.spec. Mirrors backends/mxnet_lenet.py function for function.

Takes NumPy batches in, gives NumPy numbers out; never imports mxnet.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from backends import init_scheme
from common import spec
from common.contract import join_state, split_state
from common.errors import UserError
from common.memory import keep_freed_memory

NAME = "torch"
# PyTorch's CPU allocator allocates each output anew: malloc keeps freed memory, so that steps reuse it instead of
# page-faulting through every activation (common/memory.py; 1.4-1.6x faster steps here).
MALLOC_KEEPS_FREED = keep_freed_memory()


@dataclass
class Model:
    """A built network with its optimiser, device and recipe."""

    recipe: spec.Recipe
    net: nn.Sequential
    optimizer: torch.optim.SGD
    device: torch.device
    names: list[str] = field(default_factory=list)  # spec parameter names, in net.parameters() order


def configure_threads(threads: int | None = None) -> int:
    """Use `threads` intra-op threads (default: OMP_NUM_THREADS if set, else one per core); returns the count."""
    threads = threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    return threads


def select_device(device: str = "auto") -> torch.device:
    """'auto': CUDA when available, else CPU; 'cpu' forces the CPU; 'gpu' requires CUDA."""
    if device not in ("auto", "cpu", "gpu"):
        raise UserError(f"unknown device {device!r}; valid: auto, cpu, gpu")
    if device == "gpu" and not torch.cuda.is_available():
        raise UserError("device 'gpu' asked for, but PyTorch sees no CUDA device")
    if device != "cpu" and torch.cuda.is_available():
        return torch.device("cuda", 0)
    return torch.device("cpu")


def device_name(model: Model) -> str:
    """The device the model runs on, as recorded with results."""
    if model.device.type == "cuda":
        return f"cuda:{model.device.index or 0} ({torch.cuda.get_device_name(model.device)})"
    return "cpu"


def _layer(layer: spec.Layer, in_shape: tuple[int, ...]) -> nn.Module:
    """One spec layer as a torch module."""
    match layer:
        case spec.Conv(channels=c, kernel=k, stride=s, padding=p):
            return nn.Conv2d(in_shape[0], c, k, stride=s, padding=p)
        case spec.Pool(mode="max", size=k, stride=s):
            return nn.MaxPool2d(k, s)
        case spec.Pool(mode="avg", size=k, stride=s):
            return nn.AvgPool2d(k, s)
        case spec.Activation(function="relu"):
            return nn.ReLU()
        case spec.Activation(function="sigmoid"):
            return nn.Sigmoid()
        case spec.Flatten():
            return nn.Flatten()  # C-order (C, H, W), as the blog post's x.view(-1, 16*4*4) and Gluon's flatten
        case spec.Dense(units=u):
            return nn.Linear(in_shape[0], u)
        case spec.Softmax():
            return nn.Softmax(dim=1)  # the blog post's torch.softmax inside forward; the loss applies another
    raise TypeError(layer)


def build_model(recipe: spec.Recipe, device: str = "auto", seed: int = 0) -> Model:
    """The recipe's network and SGD optimiser; weights from PyTorch's own initialisers (seeded)."""
    torch.manual_seed(seed)
    rows = spec.layer_rows(recipe)
    net = nn.Sequential()
    names = []
    for previous, row in zip(rows, rows[1:], strict=False):
        net.add_module(row.name, _layer(row.layer, previous.shape))
        if isinstance(row.layer, spec.Conv | spec.Dense):
            names += [f"{row.name}.weight", f"{row.name}.bias"]
    torch_device = select_device(device)
    # channels_last (NHWC) lets oneDNN's convolutions and pooling vectorise over channels: ~1.5x faster on
    # the CPU for LeNet's few channels. It changes the memory layout only; the spec's C-order flatten still
    # sees logical (N, C, H, W), so outputs match the NCHW network to float rounding (the parity tests).
    net.to(torch_device, memory_format=torch.channels_last)
    opt = recipe.optimizer
    # Heavy-ball momentum without dampening: buf = m*buf + g; w -= lr*buf (MXNet's form, lr folded in).
    optimizer = torch.optim.SGD(net.parameters(), lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
    model = Model(recipe, net, optimizer, torch_device, names)
    native_init(model, seed)
    return model


def native_init(model: Model, seed: int) -> None:
    """PyTorch's own initialisers for the recipe's scheme, from torch's RNG (the 'native' mode)."""
    scheme = init_scheme(NAME, model.recipe)  # stock mode: torch-default, PyTorch's own defaults
    torch.manual_seed(seed)
    for module in model.net:
        if isinstance(module, nn.Conv2d | nn.Linear):
            module.reset_parameters()  # Kaiming-uniform(a=sqrt(5)) weights, uniform biases
            if scheme in ("gluon-xavier", "d2l-xavier"):
                nn.init.xavier_uniform_(module.weight)
            if scheme == "gluon-xavier":
                nn.init.zeros_(module.bias)  # Gluon biases start at zero


def _parameters(model: Model) -> dict[str, torch.nn.Parameter]:
    return dict(zip(model.names, model.net.parameters(), strict=True))


def set_weights(model: Model, weights: dict[str, np.ndarray]) -> None:
    """Copy named NumPy weights (spec layout) into the network."""
    params = _parameters(model)
    if set(weights) != set(params):
        raise ValueError(f"weights {sorted(weights)} do not match parameters {sorted(params)}")
    with torch.no_grad():
        for name, param in params.items():  # copy_ keeps the parameter's own (channels_last) layout
            param.copy_(torch.from_numpy(np.ascontiguousarray(weights[name], dtype=np.float32)))


def get_weights(model: Model) -> dict[str, np.ndarray]:
    """Named NumPy copies of the network's weights."""
    return {name: p.detach().cpu().numpy().copy() for name, p in _parameters(model).items()}


def get_state(model: Model) -> dict[str, np.ndarray]:
    """Everything needed to resume training: the weights and SGD's momentum buffers (none without momentum or
    before the first step), in the spec's layout (common.contract.join_state)."""
    kept = model.optimizer.state
    buffers = {name: kept[p]["momentum_buffer"].detach().cpu().numpy().copy()
               for name, p in _parameters(model).items() if kept.get(p, {}).get("momentum_buffer") is not None}
    return join_state(get_weights(model), buffers)


def set_state(model: Model, state: dict[str, np.ndarray]) -> None:
    """Restore what get_state saved; each buffer takes its parameter's memory layout (channels-last)."""
    weights, buffers = split_state(state)
    set_weights(model, weights)
    for name, p in _parameters(model).items():
        if name in buffers:
            buffer = torch.empty_like(p).copy_(torch.from_numpy(np.ascontiguousarray(buffers[name])))
            model.optimizer.state[p] = {"momentum_buffer": buffer}


def _tensor(x: np.ndarray, model: Model) -> torch.Tensor:
    tensor = torch.from_numpy(x).to(model.device, non_blocking=True)
    return tensor.contiguous(memory_format=torch.channels_last) if tensor.dim() == 4 else tensor


def _objective(model: Model, output: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(objective whose gradient SGD follows, sum of per-example losses)."""
    # CrossEntropyLoss applies log-softmax to whatever forward returns (logits, or the blog post's softmax).
    losses = nn.functional.cross_entropy(output, y, reduction="none")  # (N,)
    total = losses.sum()
    if model.recipe.loss.normalisation == "mean":
        return total / len(y), total  # CrossEntropyLoss's default 'mean' over the actual batch
    return total / model.recipe.batch_size, total  # Gluon's sum + trainer.step(batch_size)


def forward(model: Model, x: np.ndarray) -> np.ndarray:
    """The network's output (logits, or probabilities for a softmax head) in eval mode."""
    model.net.eval()  # no dropout or batch norm in LeNet, but train/eval is set as the blog post's loop implies
    with torch.no_grad():
        return model.net(_tensor(x, model)).cpu().numpy()


def loss_and_gradients(model: Model, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    """Mean per-example loss and the gradient SGD would follow, without updating the weights."""
    model.net.train()
    model.net.zero_grad(set_to_none=True)
    objective, total = _objective(model, model.net(_tensor(x, model)), _tensor(y, model))
    objective.backward()
    grads = {name: p.grad.detach().cpu().numpy().copy() for name, p in _parameters(model).items()}
    model.net.zero_grad(set_to_none=True)
    return total.item() / len(y), grads


def train_step(model: Model, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """One SGD step on a batch; returns (sum of per-example losses, number correct) before the update."""
    model.net.train()
    xt, yt = _tensor(x, model), _tensor(y, model)
    model.optimizer.zero_grad(set_to_none=True)
    output = model.net(xt)
    objective, total = _objective(model, output, yt)
    objective.backward()
    model.optimizer.step()
    correct = (output.argmax(dim=1) == yt).sum()
    return total.item(), int(correct)


def evaluate(model: Model, x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[float, int]:
    """(sum of per-example losses, number correct) over a dataset, in eval mode."""
    model.net.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=model.device)
    correct = torch.zeros((), dtype=torch.int64, device=model.device)
    with torch.no_grad():
        for start in range(0, len(y), batch_size):
            xt, yt = _tensor(x[start : start + batch_size], model), _tensor(y[start : start + batch_size], model)
            output = model.net(xt)
            loss_sum += nn.functional.cross_entropy(output, yt, reduction="sum").double()
            correct += (output.argmax(dim=1) == yt).sum()
    return float(loss_sum), int(correct)


def layer_shapes(model: Model) -> list[tuple[str, tuple[int, ...], int]]:
    """(layer name, output shape of one example, parameter count) measured by running the network."""
    recipe = model.recipe
    x = _tensor(np.zeros((1, recipe.in_channels, recipe.input_size, recipe.input_size), np.float32), model)
    rows = []
    with torch.no_grad():
        for name, module in model.net.named_children():
            x = module(x)
            rows.append((name, tuple(x.shape[1:]), sum(p.numel() for p in module.parameters())))
    return rows


def versions() -> dict[str, str]:
    """Framework versions recorded with results."""
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": np.__version__}


@functools.cache
def kernels() -> dict[str, Any]:
    """ATen's CPU capability, the memory layout its convolutions run in, the MKL and oneDNN builds, and what oneDNN
    dispatches to on this processor (its verbose lines, read while one LeNet-sized convolution runs); whether
    malloc keeps freed memory; cuDNN's version on a GPU."""
    from common import machine

    def convolution() -> None:
        with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
            x = torch.ones(4, 6, 12, 12).to(memory_format=torch.channels_last)
            torch.nn.functional.conv2d(x, torch.ones(16, 6, 5, 5))

    libraries = [line.strip(" -") for line in torch.__config__.show().splitlines()
                 if "Math Kernel Library" in line or "MKL-DNN" in line or "oneDNN" in line]  # fmt: skip
    verbose = machine.captured_output(convolution) if torch.backends.mkldnn.is_available() else ""
    out: dict[str, Any] = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "layout": "NHWC (channels_last)",
        "libraries": libraries,
        "onednn_isa": machine.onednn_isa(verbose),
        "onednn_conv": machine.onednn_implementations(verbose),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "malloc_keeps_freed": MALLOC_KEEPS_FREED,
    }
    if torch.cuda.is_available():
        out["cudnn"] = torch.backends.cudnn.version()
    return out


def seeds_step(recipe: spec.Recipe, seeds: int) -> Callable[[np.ndarray, np.ndarray], float]:
    """A training step of `seeds` models of the recipe at once (seeds 0, 1, ...), each on its own batch (x: (seeds,
    N, C, H, W), y: (seeds, N)): torch.func.vmap of the network's functional form over the stacked parameters, which
    PyTorch runs as one grouped convolution (and batched matrix products) across the seeds, then the spec's SGD on
    the stacked tensors. Returns a function that steps them all and gives the sum of their losses."""
    from torch.func import functional_call, grad_and_value, stack_module_state, vmap

    models = [build_model(recipe, "cpu", seed) for seed in range(seeds)]
    params, _ = stack_module_state([model.net for model in models])  # type: ignore[arg-type]
    template = copy.deepcopy(models[0].net).to("meta")
    opt = recipe.optimizer

    def objective(weights: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor):
        total = nn.functional.cross_entropy(functional_call(template, weights, (x,)), y, reduction="sum")
        return total / (len(y) if recipe.loss.normalisation == "mean" else recipe.batch_size), total

    gradients = vmap(grad_and_value(objective, has_aux=True))
    buffers = {name: torch.zeros_like(value) for name, value in params.items()}

    def run(x: np.ndarray, y: np.ndarray) -> float:
        grads, (_, totals) = gradients(params, torch.from_numpy(x), torch.from_numpy(y))
        with torch.no_grad():
            for name, value in params.items():
                buffers[name].mul_(opt.momentum).add_(grads[name] + opt.weight_decay * value)
                value.sub_(opt.lr * buffers[name])
        return float(totals.sum().detach())

    return run


def profile_ops(model: Model, x: np.ndarray, y: np.ndarray, steps: int) -> dict[str, float]:
    """Seconds each ATen operation took (self time, summed) over `steps` training steps, from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            train_step(model, x, y)
    return {event.key: event.self_cpu_time_total / 1e6 for event in profiler.key_averages()
            if event.self_cpu_time_total > 0}  # fmt: skip


def native_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """PyTorch's own shuffle (DataLoader's RandomSampler draws torch.randperm), seeded per epoch."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).numpy()
