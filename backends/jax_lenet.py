"""LeNet in JAX, with Flax linen for the network and optax for SGD, built from common.spec. Mirrors
backends/torch_lenet.py function for function.

Takes NumPy batches in, gives NumPy numbers out; never imports torch or mxnet.

Why Flax **linen** (not NNX): d2l-en's JAX chapters, the book behind the `d2l` recipe, write LeNet as a linen
`nn.Module`, and linen keeps the parameters outside the module: `net.apply(params, x)` is a pure function, so the
whole training step (forward, loss, gradients, optax update, the loss sum and the number correct) is one
`jax.jit`-compiled function of (params, optimiser state, batch), with nothing to split or merge around it.

Layouts. The spec keeps PyTorch's and Gluon's layouts: images (N, C, H, W), conv weights (out, in, k, k) = OIHW,
dense weights (out, in), and Flatten in C-order (C, H, W). Flax's convolutions are channels-last: images
(N, H, W, C), kernels (k, k, in, out) = HWIO, dense kernels (in, out). So the conversion happens at the
boundaries only: the network transposes its NCHW input to NHWC as its first operation (inside the jitted
function), Flatten transposes NHWC back to NCHW right before flattening (so the 256 / 400 / 7056 features come in
the spec's order, and Dense(120)'s weights mean the same thing as in every other backend), and
get_weights/set_weights transpose conv kernels OIHW <-> HWIO and dense kernels (out, in) <-> (in, out).

The optimiser. The spec's SGD is heavy-ball momentum without dampening, with L2 weight decay added to the
gradient: g' = g + wd*w; buf = m*buf + g'; w -= lr*buf (torch.optim.SGD's form). In optax that is the chain
add_decayed_weights(wd) -> trace(decay=m, nesterov=False) -> scale(-lr), then apply_updates (w + (-lr*buf)).
optax.sgd(lr, momentum) would be the same chain without the weight decay, which must come first.

Precision: float32 throughout (jax_enable_x64 stays off); convolutions and dense layers ask for
`Precision.HIGHEST`, which on a GPU keeps them out of TF32 (on the CPU it changes nothing).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# XLA reads XLA_FLAGS once, when the CPU backend starts. With --xla_cpu_multi_thread_eigen=false its convolutions
# and matrix products run on the calling thread alone; left true, they use XLA's intra-op pool (one thread per
# core). As backends/mxnet_lenet.py does for MXNet, the count comes from OMP_NUM_THREADS (the harness sets it for
# --threads) unless the user has set XLA_FLAGS, and the environment is put back once the backend has started, so
# that child processes choose for themselves.
_USER_FLAGS = os.environ.get("XLA_FLAGS")
_CORES = len(os.sched_getaffinity(0))
if _USER_FLAGS is None:
    _ASKED = int(os.environ.get("OMP_NUM_THREADS") or 0) or _CORES
    os.environ["XLA_FLAGS"] = (f"--xla_cpu_multi_thread_eigen={'false' if _ASKED == 1 else 'true'} "
                               f"intra_op_parallelism_threads={_ASKED}")  # fmt: skip
    THREADS = 1 if _ASKED == 1 else _CORES  # the intra-op pool has a thread per core, whatever was asked
else:
    THREADS = 1 if "--xla_cpu_multi_thread_eigen=false" in _USER_FLAGS else _CORES

import flax  # noqa: E402 - must follow the environment settings above
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jaxlib  # noqa: E402
import optax  # noqa: E402
from flax import linen as nn  # noqa: E402

jax.jit(lambda a: a @ a)(np.eye(2, dtype=np.float32)).block_until_ready()  # the CPU backend has read XLA_FLAGS
if _USER_FLAGS is None:
    os.environ.pop("XLA_FLAGS", None)

from backends import init_scheme  # noqa: E402
from common import spec  # noqa: E402
from common.contract import join_state, split_state  # noqa: E402
from common.errors import UserError  # noqa: E402
from common.init import bias_bound  # noqa: E402

NAME = "jax"
HIGHEST = jax.lax.Precision.HIGHEST


# ---- the network --------------------------------------------------------------------------------------------


def _kernel_init(scheme: str):
    """Flax's own initialiser for the scheme's weights (fans from the HWIO / (in, out) kernel, as PyTorch's)."""
    if scheme == "torch-default":
        # kaiming_uniform_(a=sqrt(5)): U(-sqrt(1/fan_in), +sqrt(1/fan_in)) = variance 1/(3 fan_in)
        return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
    if scheme == "flax-default":
        return nn.initializers.lecun_normal()  # nn.Conv's and nn.Dense's own default (stock mode)
    return nn.initializers.xavier_uniform()  # U(-sqrt(6/(fan_in+fan_out)), ...): Gluon's Xavier() and d2l's


def _bias_init(scheme: str, weight_shape: tuple[int, ...]):
    """The scheme's biases: PyTorch's U(-1/sqrt(fan_in), ...) (Flax has no fan-dependent bias initialiser, so
    jax.random.uniform with common.init's bound), or Gluon's zeros."""
    bound = bias_bound(scheme, weight_shape)
    if bound == 0:
        return nn.initializers.zeros

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class LeNet(nn.Module):
    """The recipe's layers, named as in the spec (conv1, ..., dense3), on NCHW input."""

    recipe: spec.Recipe

    @nn.compact
    def __call__(self, x: jax.Array, every_layer: bool = False):
        """The network's output, or (every_layer) the output of each spec layer, NHWC before Flatten."""
        scheme = init_scheme(NAME, self.recipe)
        shapes = spec.parameter_shapes(self.recipe)
        rows = spec.layer_rows(self.recipe)
        x = jnp.transpose(x, (0, 2, 3, 1))  # NCHW (the spec's, the harness's) -> NHWC (Flax's)
        outputs = []
        for row in rows[1:]:
            match row.layer:
                case spec.Conv(channels=c, kernel=k, stride=s, padding=p):
                    bias_init = _bias_init(scheme, shapes[f"{row.name}.weight"])
                    x = nn.Conv(c, (k, k), strides=(s, s), padding=((p, p), (p, p)), precision=HIGHEST,
                                kernel_init=_kernel_init(scheme), bias_init=bias_init, name=row.name)(x)  # fmt: skip
                case spec.Pool(mode="max", size=k, stride=s):
                    x = nn.max_pool(x, (k, k), strides=(s, s), padding="VALID")
                case spec.Pool(mode="avg", size=k, stride=s):
                    x = nn.avg_pool(x, (k, k), strides=(s, s), padding="VALID")
                case spec.Activation(function="relu"):
                    x = nn.relu(x)
                case spec.Activation(function="sigmoid"):
                    x = nn.sigmoid(x)
                case spec.Flatten():
                    # back to NCHW first: the spec's C-order (C, H, W) features, as x.view(-1, 16*4*4)
                    x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
                case spec.Dense(units=u):
                    bias_init = _bias_init(scheme, shapes[f"{row.name}.weight"])
                    x = nn.Dense(u, precision=HIGHEST, kernel_init=_kernel_init(scheme), bias_init=bias_init,
                                 name=row.name)(x)  # fmt: skip
                case spec.Softmax():
                    x = nn.softmax(x, axis=-1)  # the blog post's softmax inside forward; the loss applies another
                case _:
                    raise TypeError(row.layer)
            outputs.append(x)
        return outputs if every_layer else x


def _optimizer(opt: spec.Optimizer) -> optax.GradientTransformation:
    """The spec's SGD: g' = g + wd*w; buf = m*buf + g'; update = -lr*buf (torch.optim.SGD, no dampening)."""
    return optax.chain(
        optax.add_decayed_weights(opt.weight_decay),
        optax.trace(decay=opt.momentum, nesterov=False),
        optax.scale(-opt.lr),
    )


MOMENTUM_INDEX = 1  # the trace's state in the chain's state tuple


@dataclass(frozen=True, eq=False)
class _Functions:
    """A recipe's network, optimiser and jitted functions, shared by every model of the recipe (compiled once per
    batch shape and device)."""

    net: LeNet
    tx: optax.GradientTransformation
    init: Any  # (key, input shape) -> variables
    forward: Any  # (params, x) -> output
    gradients: Any  # (params, x, y) -> (sum of losses, gradients)
    step: Any  # (params, opt_state, x, y) -> (params, opt_state, sum of losses, number correct)
    evaluate: Any  # (params, x, y) -> (sum of losses, number correct)


@functools.cache
def _functions(recipe: spec.Recipe) -> _Functions:
    net, tx = LeNet(recipe), _optimizer(recipe.optimizer)

    def apply(params, x):
        return net.apply({"params": params}, x)

    def losses(output, y):
        # Softmax cross-entropy of whatever the network gives (logits, or the blog post's probabilities)
        return optax.softmax_cross_entropy_with_integer_labels(output, y)

    def objective(params, x, y):
        output = apply(params, x)
        total = losses(output, y).sum()
        # 'mean': over the actual batch; 'sum-over-batch-size': Gluon's loss.sum() + trainer.step(batch_size)
        normaliser = y.shape[0] if recipe.loss.normalisation == "mean" else recipe.batch_size
        return total / normaliser, (total, output)

    def gradients(params, x, y):
        (_, (total, _)), grads = jax.value_and_grad(objective, has_aux=True)(params, x, y)
        return total, grads

    def step(params, opt_state, x, y):
        (_, (total, output)), grads = jax.value_and_grad(objective, has_aux=True)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, total, jnp.sum(jnp.argmax(output, axis=1) == y)

    def evaluate(params, x, y):
        output = apply(params, x)
        return losses(output, y).sum(), jnp.sum(jnp.argmax(output, axis=1) == y)

    # lazy_init draws exactly what init would, but runs the forward pass on shapes only (nothing to compile)
    return _Functions(net, tx, net.lazy_init, jax.jit(apply), jax.jit(gradients), jax.jit(step),
                      jax.jit(evaluate))  # fmt: skip


@dataclass
class Model:
    """A built network: its parameters and optimiser state (Flax's layout), device and recipe."""

    recipe: spec.Recipe
    functions: _Functions
    device: Any  # a jax.Device
    params: dict  # {"conv1": {"kernel": HWIO, "bias": ...}, ..., "dense3": {...}}
    opt_state: Any = None  # optax's state of the chain; its trace holds the momentum buffers


def configure_threads(threads: int | None = None) -> int:
    """XLA took its thread setting from the environment when this module was imported (see above); report it."""
    return THREADS


def _gpus() -> list:
    try:
        return jax.devices("gpu")
    except RuntimeError:  # this jaxlib has no GPU backend, or it found no card
        return []


def select_device(device: str = "auto"):
    """'auto': a GPU when the installed jaxlib has one, else the CPU; 'cpu' forces the CPU; 'gpu' requires one."""
    if device not in ("auto", "cpu", "gpu"):
        raise UserError(f"unknown device {device!r}; valid: auto, cpu, gpu")
    gpus = [] if device == "cpu" else _gpus()
    if device == "gpu" and not gpus:
        raise UserError("device 'gpu' asked for, but the installed jaxlib sees no GPU (a CPU-only jaxlib, or no card)")
    return gpus[0] if gpus else jax.devices("cpu")[0]


def device_name(model: Model) -> str:
    """The device the model runs on, as recorded with results."""
    device = model.device
    if device.platform == "cpu":
        return "cpu"
    kind = "rocm" if "rocm" in str(getattr(device.client, "platform_version", "")).lower() else "cuda"
    return f"{kind}:{device.id} ({device.device_kind})"


def build_model(recipe: spec.Recipe, device: str = "auto", seed: int = 0) -> Model:
    """The recipe's network and optax SGD; weights from Flax's own initialisers (seeded)."""
    model = Model(recipe, _functions(recipe), select_device(device), {})
    native_init(model, seed)
    model.opt_state = jax.device_put(model.functions.tx.init(model.params), model.device)
    return model


def native_init(model: Model, seed: int) -> None:
    """Flax's own initialisers for the recipe's scheme from the typed key jax.random.key(seed), which linen splits
    per layer (the 'native' mode; the same bits as the legacy jax.random.PRNGKey(seed)). The momentum buffers are
    left as they are, as PyTorch's reset_parameters does."""
    recipe = model.recipe
    shape = jax.ShapeDtypeStruct((1, recipe.in_channels, recipe.input_size, recipe.input_size), jnp.float32)
    with jax.default_device(model.device):
        variables = model.functions.init(jax.random.key(seed), shape)
    model.params = jax.device_put(variables["params"], model.device)


# ---- weights and state in the spec's layout -----------------------------------------------------------------


def _to_spec(name: str, value) -> np.ndarray:
    """A Flax parameter as a NumPy copy in the spec's layout: HWIO -> OIHW, (in, out) -> (out, in)."""
    array = np.asarray(value)
    if name.endswith(".weight"):
        array = array.transpose(3, 2, 0, 1) if array.ndim == 4 else array.T
    return np.array(array, dtype=np.float32, order="C", copy=True)


def _from_spec(name: str, value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A spec-layout array as Flax keeps it: OIHW -> HWIO, (out, in) -> (in, out)."""
    array = np.asarray(value, dtype=np.float32).reshape(shape)
    if name.endswith(".weight"):
        array = array.transpose(2, 3, 1, 0) if array.ndim == 4 else array.T
    return np.ascontiguousarray(array)


def _flat(tree: dict) -> dict[str, Any]:
    """{"conv1": {"kernel": k, "bias": b}} -> {"conv1.weight": k, "conv1.bias": b}."""
    return {f"{layer}.{'weight' if kind == 'kernel' else 'bias'}": value
            for layer, leaves in tree.items() for kind, value in leaves.items()}  # fmt: skip


def _tree(model: Model, named: dict[str, np.ndarray], what: str) -> dict:
    """Named spec-layout arrays as a Flax parameter tree on the model's device; a wrong set of names: ValueError."""
    shapes = spec.parameter_shapes(model.recipe)
    if set(named) != set(shapes):
        raise ValueError(f"{what} {sorted(named)} do not match parameters {sorted(shapes)}")
    tree: dict[str, dict[str, np.ndarray]] = {}
    for name, shape in shapes.items():
        layer, kind = name.rsplit(".", 1)
        tree.setdefault(layer, {})["kernel" if kind == "weight" else "bias"] = _from_spec(name, named[name], shape)
    return jax.device_put(tree, model.device)


def set_weights(model: Model, weights: dict[str, np.ndarray]) -> None:
    """Copy named NumPy weights (spec layout) into the model (the momentum buffers are left as they are)."""
    model.params = _tree(model, weights, "weights")


def get_weights(model: Model) -> dict[str, np.ndarray]:
    """Named NumPy copies of the weights, in the spec's layout."""
    return {name: _to_spec(name, value) for name, value in _flat(model.params).items()}


def get_state(model: Model) -> dict[str, np.ndarray]:
    """Everything needed to resume training: the weights and the momentum buffers ("momentum/conv1.weight", ...),
    all in the spec's layout (the chain's other members, add_decayed_weights and scale, keep no state)."""
    momentum = model.opt_state[MOMENTUM_INDEX].trace
    return join_state(get_weights(model), {name: _to_spec(name, v) for name, v in _flat(momentum).items()})


def set_state(model: Model, state: dict[str, np.ndarray]) -> None:
    """Restore what get_state saved."""
    weights, buffers = split_state(state)
    set_weights(model, weights)
    trace = model.opt_state[MOMENTUM_INDEX]._replace(trace=_tree(model, buffers, "momentum buffers"))
    model.opt_state = (*model.opt_state[:MOMENTUM_INDEX], trace, *model.opt_state[MOMENTUM_INDEX + 1 :])


# ---- computing ----------------------------------------------------------------------------------------------


def _batch(model: Model, x: np.ndarray, y: np.ndarray | None = None):
    x = jax.device_put(np.asarray(x, dtype=np.float32), model.device)
    return x if y is None else (x, jax.device_put(np.asarray(y, dtype=np.int32), model.device))


def forward(model: Model, x: np.ndarray) -> np.ndarray:
    """The network's output (logits, or probabilities for a softmax head); LeNet has no train/eval difference."""
    return np.asarray(model.functions.forward(model.params, _batch(model, x)))


def loss_and_gradients(model: Model, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    """Mean per-example loss and the gradient SGD would follow (before weight decay), weights unchanged."""
    total, grads = model.functions.gradients(model.params, *_batch(model, x, y))
    return float(total) / len(y), {name: _to_spec(name, g) for name, g in _flat(grads).items()}


def train_step(model: Model, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """One SGD step, one compiled call; returns (sum of per-example losses, number correct) before the update."""
    model.params, model.opt_state, total, correct = model.functions.step(model.params, model.opt_state,
                                                                         *_batch(model, x, y))  # fmt: skip
    return float(total), int(correct)


def evaluate(model: Model, x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[float, int]:
    """(sum of per-example losses, number correct) over a dataset, in batches (summed in float64, as PyTorch's)."""
    results = [model.functions.evaluate(model.params, *_batch(model, x[s : s + batch_size], y[s : s + batch_size]))
               for s in range(0, len(y), batch_size)]  # fmt: skip
    return sum(float(loss) for loss, _ in results), sum(int(correct) for _, correct in results)


def layer_shapes(model: Model) -> list[tuple[str, tuple[int, ...], int]]:
    """(layer name, output shape of one example in the spec's (C, H, W) order, parameter count), measured from
    the built network by jax.eval_shape (shapes only, nothing computed)."""
    recipe = model.recipe
    x = jax.ShapeDtypeStruct((1, recipe.in_channels, recipe.input_size, recipe.input_size), jnp.float32)
    net = model.functions.net
    outputs = jax.eval_shape(lambda params, x: net.apply({"params": params}, x, every_layer=True), model.params, x)
    rows = []
    for row, out in zip(spec.layer_rows(recipe)[1:], outputs, strict=True):
        shape = (out.shape[3], *out.shape[1:3]) if len(out.shape) == 4 else out.shape[1:]  # NHWC -> (C, H, W)
        count = sum(int(np.prod(v.shape)) for v in model.params.get(row.name, {}).values())
        rows.append((row.name, tuple(shape), count))
    return rows


def versions() -> dict[str, str]:
    """Framework versions recorded with results."""
    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "numpy": np.__version__}  # fmt: skip


def kernels() -> dict[str, Any]:
    """XLA's platform and devices (on the CPU it compiles for the host processor with LLVM; XLA_FLAGS, if set, is
    in the machine's record) and the layout its convolutions run in (the network's own NHWC)."""
    return {"xla_platform": jax.default_backend(), "devices": sorted({d.device_kind for d in jax.devices()}),
            "layout": "NHWC"}


def seeds_step(recipe: spec.Recipe, seeds: int) -> Callable[[np.ndarray, np.ndarray], float]:
    """A training step of `seeds` models of the recipe at once (seeds 0, 1, ...), each on its own batch (x: (seeds,
    N, C, H, W), y: (seeds, N)): one jax.vmap of the jitted step over the stacked parameters, so that XLA runs each
    operation once for every seed. Returns a function that steps them all and gives the sum of their losses."""
    models = [build_model(recipe, "cpu", seed) for seed in range(seeds)]
    state = [jax.tree.map(lambda *leaves: jnp.stack(leaves), *[getattr(m, part) for m in models])
             for part in ("params", "opt_state")]  # fmt: skip
    step = jax.jit(jax.vmap(models[0].functions.step))

    def run(x: np.ndarray, y: np.ndarray) -> float:
        state[0], state[1], total, _ = step(state[0], state[1], jnp.asarray(x), jnp.asarray(y, dtype=jnp.int32))
        return float(total.sum())

    return run


def _hlo_labels(hlo: str) -> dict[str, str]:
    """Each instruction of a compiled HLO module, named as the program wrote it (`conv2 backward:
    conv_general_dilated`, from its metadata's op_name), else, for a fusion XLA made of its own, what its fused
    computation computes and its shape (`convolution f32[6,5,5,16] (XLA fusion)`)."""
    head = re.compile(r"\s*(ROOT )?%([\w.-]+) = (\([^)]*\)|\S+) ([\w-]+)\(")
    roots: dict[str, str] = {}  # computation -> its root instruction's opcode
    found: dict[str, tuple[str, str, str | None, str | None]] = {}
    computation = ""
    for line in hlo.splitlines():
        if line.startswith(("%", "ENTRY")) and line.rstrip().endswith("{"):
            computation = line.split()[1 if line.startswith("ENTRY") else 0].lstrip("%")
            continue
        match = head.match(line)
        if match:
            root, name, shape, opcode = match.groups()
            calls, op_name = re.search(r"calls=%([\w.-]+)", line), re.search(r'op_name="([^"]*)"', line)
            found[name] = (opcode, shape.split("{")[0].lstrip("("), calls and calls[1], op_name and op_name[1])
            if root:
                roots[computation] = opcode
    labels = {}
    for name, (opcode, shape, calls, op_name) in found.items():
        if op_name:
            path = op_name.split("/")[1:]  # jit(step)/transpose(jvp(LeNet))/conv2/conv_general_dilated
            backward = any(part.startswith("transpose(") for part in path)
            where = " ".join([*(part for part in path[:-1] if "(" not in part), "backward" if backward else "forward"])
            labels[name] = f"{where}: {path[-1] if path else opcode}"
        else:
            labels[name] = f"{roots.get(calls or '', opcode)} {shape}" + (" (XLA fusion)" if calls else "")
    return labels


def profile_ops(model: Model, x: np.ndarray, y: np.ndarray, steps: int) -> dict[str, float]:
    """Seconds each XLA operation of the compiled step took (summed) over `steps` training steps, from
    jax.profiler's trace (the events that carry an `hlo_op`), each named by its place in the network."""
    import glob
    import tempfile

    xs, ys = _batch(model, x, y)
    compiled = model.functions.step.lower(model.params, model.opt_state, xs, ys).compile()
    labels = _hlo_labels(compiled.as_text())
    with tempfile.TemporaryDirectory() as scratch:
        with jax.profiler.trace(scratch):
            for _ in range(steps):
                train_step(model, x, y)
        traces = glob.glob(os.path.join(scratch, "**", "*.xplane.pb"), recursive=True)
        profiles = [jax.profiler.ProfileData.from_file(path) for path in traces]
    ops: dict[str, float] = {}
    for profile in profiles:
        for plane in profile.planes:
            for line in plane.lines:
                for event in line.events:
                    stats = dict(event.stats)
                    if stats.get("hlo_module") == "jit_step" and "hlo_op" in stats:
                        name = labels.get(stats["hlo_op"], stats["hlo_op"])
                        ops[name] = ops.get(name, 0.0) + event.duration_ns / 1e9
    return ops


def native_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """JAX's own shuffle: jax.random.permutation of range(n) with the key fold_in(key(seed), epoch)."""
    key = jax.random.fold_in(jax.random.key(seed), epoch)
    return np.asarray(jax.random.permutation(key, n), dtype=np.int64)
