"""LeNet in TensorFlow with Keras 3 layers, built from common.spec. Mirrors backends/torch_lenet.py function for
function: NumPy batches in, NumPy numbers out; never imports torch, mxnet or jax.

Why Keras 3 (`keras` on the TensorFlow backend) and not `tf.keras`: since TensorFlow 2.16 `tf.keras` *is* Keras 3
(the Keras 2 code lives on as the separate `tf_keras` package), so importing `keras` says plainly what runs.
KERAS_BACKEND is set to "tensorflow" before Keras is first imported; a process that already imported Keras for
another backend is refused with one line.

**Layout, made explicit.** Keras's layers are channels-last: activations (N, H, W, C) (TensorFlow's CPU
convolutions run NHWC only), convolution kernels (k, k, in, out) = HWIO, dense kernels (in, out). The spec keeps
PyTorch's layouts: images (N, C, H, W), conv weights OIHW, dense weights (out, in), and Flatten in C-order
(C, H, W). This backend converts at the boundaries only, and differently from backends/jax_lenet.py on purpose:
* the batch is transposed NCHW -> NHWC as the first operation of each compiled call;
* Flatten flattens the NHWC maps as Keras does, (H, W, C) order, so feature i of the spec (c, h, w) is feature
  (h, w, c) here; instead of transposing back, the **rows of the first Dense kernel are permuted** when weights
  cross the boundary (`flatten_order()`), so shared weights give the same network as in PyTorch;
* get_weights/set_weights transpose conv kernels OIHW <-> HWIO and dense kernels (out, in) <-> (in, out).
Copy PyTorch's weights naively (transpose only) and the network computes something else; `flatten_order()`
shows the two orders, and docs/tensorflow.md shows the difference on the spec's own layer table.

**The optimiser, written out.** Keras's SGD keeps v = m*v - lr*g and adds v to the weights, and its
`weight_decay` is decoupled (w -= lr*wd*w outside the momentum). The spec's SGD is torch.optim.SGD's: L2 weight
decay added to the gradient, then heavy-ball momentum without dampening: g' = g + wd*w; buf = m*buf + g';
w -= lr*buf. Equal in exact arithmetic for constant lr and wd = 0, not in float32 and not with weight decay, so
the update is written with TensorFlow ops inside the compiled step, the momentum buffers as tf.Variables.

**The loss.** TensorFlow's `tf.nn.sparse_softmax_cross_entropy_with_logits` per example, summed, divided by the
spec's normaliser (the batch's size, or the recipe's batch size for d2lzh's loss.sum() + trainer.step(batch_size)).
Not Keras's `sparse_categorical_crossentropy(..., from_logits=True)`, which d2l-en's TensorFlow LeNet uses: inside
a traced function Keras looks at the op that made its input, and when that op is a Softmax it takes the softmax's
*input* as the logits (with a warning), so the blog post's softmax head (softmax in forward, then a loss that applies
softmax again, as PyTorch's CrossEntropyLoss does) would silently train on one softmax, not two. In eager mode
it does not look, so the same call gives two answers (tests/test_tensorflow.py shows both).

The whole step (transpose, forward, loss, tf.GradientTape gradients, update, loss sum, number correct) is one
`tf.function`, traced once per batch shape. float32 throughout; TF32 is switched off for GPUs.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from backends import init_scheme
from common.errors import UserError
from common.quiet import stderr_without

if "keras" in sys.modules and os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
    raise UserError(f"Keras was already imported for the {os.environ['KERAS_BACKEND']!r} backend in this process; "
                    "the TensorFlow backend needs KERAS_BACKEND=tensorflow")  # fmt: skip
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's start-up INFO lines; warnings still show
# oneDNN's kernels, pinned on. On Linux TensorFlow turns them on by default only where the processor has AVX512_VNNI,
# AVX512_BF16, AVX_VNNI or AMX (its DefaultOneDnnPolicy), so without the pin an AVX2 machine runs Eigen's kernels:
# other float rounding than an AVX-512 machine, and 4x the time a step of seed-mxnet takes (1.76 s against 0.43 s
# at one thread on the AMD EPYC Zen 3 here). TF_ENABLE_ONEDNN_OPTS=0 still turns them off; `kernels()` records
# what ran. TensorFlow reads the variable once, when it loads; the pin is then taken out of the environment again,
# so the process's environment (recorded with each run as the user's kernel pins) stays the caller's.
_PIN_ONEDNN = "TF_ENABLE_ONEDNN_OPTS" not in os.environ
ONEDNN_OPTS = os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# TensorFlow's TFLite helpers try `from jax import xla_computation` at import and go on without it (ImportError).
# With JAX installed beside it, that would load all of JAX into every TensorFlow run; unless this process has
# already imported JAX, the import is answered "not here" while TensorFlow and Keras load.
_HIDE_JAX = "jax" not in sys.modules
if _HIDE_JAX:
    sys.modules["jax"] = None  # type: ignore[assignment]
# TensorFlow's core says at start-up, past TF_CPP_MIN_LOG_LEVEL, that oneDNN is on (the pin above): left out.
try:
    with stderr_without("oneDNN custom operations are on", "before absl::InitializeLog() is called"):
        import keras  # noqa: E402 - must follow the environment settings above
        import tensorflow as tf  # noqa: E402
finally:
    if _HIDE_JAX:
        del sys.modules["jax"]

from tensorflow.python.util import _pywrap_util_port  # noqa: E402 - where TensorFlow answers IsMklEnabled (no public API)

ONEDNN = bool(_pywrap_util_port.IsMklEnabled())  # read (once, for the process) while the pin is in place
if _PIN_ONEDNN:
    del os.environ["TF_ENABLE_ONEDNN_OPTS"]

from common import spec  # noqa: E402
from common.contract import join_state, split_state  # noqa: E402
from common.init import bias_bound  # noqa: E402

NAME = "tensorflow"

# TensorFlow fixes its thread pools when its runtime starts (the first operation), so they are set here, from
# OMP_NUM_THREADS when the harness has set it for --threads, else every core; as the JAX backend does.
_CORES = len(os.sched_getaffinity(0))
THREADS = int(os.environ.get("OMP_NUM_THREADS") or 0) or _CORES
tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(1 if THREADS == 1 else 2)
tf.config.experimental.enable_tensor_float_32_execution(False)


# ---- the network --------------------------------------------------------------------------------------------


def _kernel_initializer(scheme: str, seed: Any) -> keras.initializers.Initializer:
    """Keras's own initialiser for the scheme's weights (fans from the HWIO / (in, out) kernel, as PyTorch's)."""
    if scheme == "torch-default":
        # kaiming_uniform_(a=sqrt(5)): U(-sqrt(1/fan_in), +sqrt(1/fan_in)) = variance 1/(3 fan_in)
        return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform", seed=seed)
    # Gluon's Xavier() and d2l's, and Keras's own default (keras-default, stock mode): U(+-sqrt(6/(fan_in+fan_out)))
    return keras.initializers.GlorotUniform(seed=seed)


def _bias_initializer(scheme: str, weight_shape: tuple[int, ...], seed: Any) -> keras.initializers.Initializer:
    """PyTorch's U(-1/sqrt(fan_in), +1/sqrt(fan_in)) (Keras has no fan-dependent bias initialiser: RandomUniform
    with common.init's bound), or Gluon's zeros."""
    bound = bias_bound(scheme, weight_shape)
    return keras.initializers.RandomUniform(-bound, bound, seed=seed) if bound else keras.initializers.Zeros()


def _layers(recipe: spec.Recipe) -> list[tuple[str, list[keras.layers.Layer]]]:
    """Each spec row (after the input) as the Keras layers that compute it, channels-last."""
    out: list[tuple[str, list[keras.layers.Layer]]] = []
    for row in spec.layer_rows(recipe)[1:]:
        match row.layer:
            case spec.Conv(channels=c, kernel=k, stride=s, padding=p):
                conv = keras.layers.Conv2D(c, k, strides=s, padding="valid", name=row.name)
                out.append((row.name, ([keras.layers.ZeroPadding2D(p, name=f"{row.name}_pad")] if p else []) + [conv]))
            case spec.Pool(mode=mode, size=k, stride=s):
                pool = keras.layers.MaxPooling2D if mode == "max" else keras.layers.AveragePooling2D
                out.append((row.name, [pool(k, strides=s, padding="valid", name=row.name)]))
            case spec.Activation(function=function):
                out.append((row.name, [keras.layers.Activation(function, name=row.name)]))
            case spec.Flatten():
                out.append((row.name, [keras.layers.Flatten(name=row.name)]))  # (H, W, C) order: see above
            case spec.Dense(units=u):
                out.append((row.name, [keras.layers.Dense(u, name=row.name)]))
            case spec.Softmax():
                out.append((row.name, [keras.layers.Softmax(name=row.name)]))  # the blog post's softmax in forward
            case _:
                raise TypeError(row.layer)
    return out


def flatten_order(recipe: spec.Recipe) -> np.ndarray:
    """For each feature Keras's Flatten gives (NHWC maps, (h, w, c) order), the index of the
    same number in the spec's (c, h, w) order. Row i of Keras's first Dense kernel is column order[i] of the spec's
    weight."""
    rows = spec.layer_rows(recipe)
    at = next(i for i, row in enumerate(rows) if isinstance(row.layer, spec.Flatten))
    c, h, w = rows[at - 1].shape
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


@dataclass
class Model:
    """A built network: Keras layers, the momentum buffers, the compiled functions, device and recipe."""

    recipe: spec.Recipe
    device: str  # "/CPU:0" or "/GPU:0"
    layers: list[tuple[str, list[keras.layers.Layer]]]
    params: dict[str, tf.Variable]  # spec names ("conv1.weight", ...) -> the Keras variables (HWIO, (in, out))
    momentum: dict[str, tf.Variable]
    permutation: np.ndarray  # flatten_order(recipe)
    first_dense: str  # the Dense right after Flatten, whose kernel rows are permuted at the boundary
    step: Any = None  # tf.function (x, y) -> (sum of losses, number correct), updating the variables
    gradients: Any = None  # tf.function (x, y) -> (sum of losses, gradients by name)
    apply: Any = None  # tf.function x -> output
    evaluate: Any = None  # tf.function (x, y) -> (sum of losses, number correct)


def _call(model: Model, x: tf.Tensor, every_layer: bool = False):
    x = tf.transpose(x, (0, 2, 3, 1))  # NCHW (the spec's, the harness's) -> NHWC (Keras's)
    outputs = []
    for _, layers in model.layers:
        for layer in layers:
            x = layer(x)
        outputs.append(x)
    return outputs if every_layer else x


def _losses(y: tf.Tensor, output: tf.Tensor) -> tf.Tensor:
    """Softmax cross-entropy of whatever the network gives (logits, or the blog post's probabilities), per example."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=output)


def _correct(output: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tf.cast(tf.argmax(output, axis=1, output_type=tf.int32) == y, tf.int32))


def _compile(model: Model) -> None:
    recipe, opt = model.recipe, model.recipe.optimizer
    names = list(model.params)
    variables = [model.params[n] for n in names]

    def objective(x, y):
        output = _call(model, x)
        total = tf.reduce_sum(_losses(y, output))
        normaliser = tf.cast(tf.shape(y)[0], tf.float32) if recipe.loss.normalisation == "mean" else recipe.batch_size
        return total / normaliser, total, output

    def gradients(x, y):
        with tf.GradientTape() as tape:
            loss, total, _ = objective(x, y)
        return total, dict(zip(names, tape.gradient(loss, variables), strict=True))

    def step(x, y):
        with tf.GradientTape() as tape:
            loss, total, output = objective(x, y)
        grads = tape.gradient(loss, variables)
        for name, w, g in zip(names, variables, grads, strict=True):
            buf = model.momentum[name]
            if opt.weight_decay:
                g = g + opt.weight_decay * w
            buf.assign(opt.momentum * buf + g)
            w.assign_sub(opt.lr * buf)
        return total, _correct(output, y)

    def evaluate(x, y):
        output = _call(model, x)
        return tf.reduce_sum(_losses(y, output)), _correct(output, y)

    model.step = tf.function(step, reduce_retracing=True)
    model.gradients = tf.function(gradients, reduce_retracing=True)
    model.apply = tf.function(lambda x: _call(model, x), reduce_retracing=True)
    model.evaluate = tf.function(evaluate, reduce_retracing=True)


def configure_threads(threads: int | None = None) -> int:
    """TensorFlow took its thread setting from the environment when this module was imported (see above)."""
    return THREADS


def select_device(device: str = "auto") -> str:
    """'auto': a GPU when TensorFlow has one, else the CPU; 'cpu' forces the CPU; 'gpu' requires one."""
    if device not in ("auto", "cpu", "gpu"):
        raise UserError(f"unknown device {device!r}; valid: auto, cpu, gpu")
    gpus = [] if device == "cpu" else tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        raise UserError("device 'gpu' asked for, but TensorFlow sees no GPU (tensorflow-cpu, or no card)")
    return "/GPU:0" if gpus else "/CPU:0"


def device_name(model: Model) -> str:
    """The device the model runs on, as recorded with results."""
    if model.device.startswith("/CPU"):
        return "cpu"
    details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
    return f"cuda:0 ({details.get('device_name', 'GPU')})"


def build_model(recipe: spec.Recipe, device: str = "auto", seed: int = 0) -> Model:
    """The recipe's Keras layers and the spec's SGD; weights from Keras's own initialisers (seeded)."""
    where = select_device(device)
    shapes = spec.parameter_shapes(recipe)
    with tf.device(where):
        layers = _layers(recipe)
        x = tf.zeros((1, recipe.input_size, recipe.input_size, recipe.in_channels))
        for _, group in layers:  # builds every layer's variables (HWIO kernels, (in, out) dense kernels)
            for layer in group:
                x = layer(x)
        params = {}
        for name, group in layers:
            for layer in group:
                if isinstance(layer, keras.layers.Conv2D | keras.layers.Dense):
                    params[f"{name}.weight"], params[f"{name}.bias"] = layer.kernel.value, layer.bias.value
        momentum = {n: tf.Variable(tf.zeros_like(v), trainable=False) for n, v in params.items()}
    if set(params) != set(shapes):
        raise AssertionError(f"built {sorted(params)}, spec has {sorted(shapes)}")
    rows = spec.layer_rows(recipe)
    first_dense = next(r.name for r in rows if isinstance(r.layer, spec.Dense))
    model = Model(recipe, where, layers, params, momentum, flatten_order(recipe), first_dense)
    native_init(model, seed)
    _compile(model)
    return model


def native_init(model: Model, seed: int) -> None:
    """Keras's own initialisers for the recipe's scheme, drawn in layer order from one
    keras.random.SeedGenerator(seed) (the 'native' mode). The momentum buffers are left as they are."""
    generator = keras.random.SeedGenerator(seed)
    scheme = init_scheme(NAME, model.recipe)
    shapes = spec.parameter_shapes(model.recipe)
    with tf.device(model.device):
        for name, variable in model.params.items():
            layer = name.rsplit(".", 1)[0]
            if name.endswith(".weight"):
                value = _kernel_initializer(scheme, generator)(variable.shape)
            else:
                value = _bias_initializer(scheme, shapes[f"{layer}.weight"], generator)(variable.shape)
            variable.assign(tf.cast(value, tf.float32))


# ---- weights and state in the spec's layout -----------------------------------------------------------------


def _to_spec(model: Model, name: str, value: Any) -> np.ndarray:
    """A Keras variable's value as a NumPy copy in the spec's layout: HWIO -> OIHW; (in, out) -> (out, in), with the
    first Dense's rows put back from Flatten's (h, w, c) order into the spec's (c, h, w)."""
    array = np.asarray(value)
    if name == f"{model.first_dense}.weight":
        spec_rows = np.empty_like(array)
        spec_rows[model.permutation] = array
        array = spec_rows
    if name.endswith(".weight"):
        array = array.transpose(3, 2, 0, 1) if array.ndim == 4 else array.T
    return np.array(array, dtype=np.float32, order="C", copy=True)


def _from_spec(model: Model, name: str, value: np.ndarray) -> np.ndarray:
    """A spec-layout array as Keras keeps it: OIHW -> HWIO; (out, in) -> (in, out), the first Dense's rows permuted
    into Flatten's (h, w, c) order."""
    array = np.asarray(value, dtype=np.float32).reshape(spec.parameter_shapes(model.recipe)[name])
    if name.endswith(".weight"):
        array = array.transpose(2, 3, 1, 0) if array.ndim == 4 else array.T
    if name == f"{model.first_dense}.weight":
        array = array[model.permutation]
    return np.ascontiguousarray(array)


def _assign(model: Model, target: dict[str, tf.Variable], named: dict[str, np.ndarray], what: str) -> None:
    if set(named) != set(target):
        raise ValueError(f"{what} {sorted(named)} do not match parameters {sorted(target)}")
    for name, variable in target.items():
        variable.assign(_from_spec(model, name, named[name]))


def set_weights(model: Model, weights: dict[str, np.ndarray]) -> None:
    """Copy named NumPy weights (spec layout) into the model (the momentum buffers are left as they are)."""
    _assign(model, model.params, weights, "weights")


def get_weights(model: Model) -> dict[str, np.ndarray]:
    """Named NumPy copies of the weights, in the spec's layout."""
    return {name: _to_spec(model, name, v.numpy()) for name, v in model.params.items()}


def get_state(model: Model) -> dict[str, np.ndarray]:
    """Everything needed to resume training: the weights and the momentum buffers ("momentum/conv1.weight", ...),
    all in the spec's layout."""
    buffers = {name: _to_spec(model, name, v.numpy()) for name, v in model.momentum.items()}
    return join_state(get_weights(model), buffers)


def set_state(model: Model, state: dict[str, np.ndarray]) -> None:
    """Restore what get_state saved."""
    weights, buffers = split_state(state)
    set_weights(model, weights)
    _assign(model, model.momentum, buffers, "momentum buffers")


# ---- computing ----------------------------------------------------------------------------------------------


def _batch(model: Model, x: np.ndarray, y: np.ndarray | None = None):
    with tf.device(model.device):
        images = tf.constant(np.asarray(x, dtype=np.float32))
        return images if y is None else (images, tf.constant(np.asarray(y, dtype=np.int32)))


def forward(model: Model, x: np.ndarray) -> np.ndarray:
    """The network's output (logits, or probabilities for a softmax head); LeNet has no train/eval difference."""
    with tf.device(model.device):
        return model.apply(_batch(model, x)).numpy()


def loss_and_gradients(model: Model, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    """Mean per-example loss and the gradient SGD would follow (before weight decay), weights unchanged."""
    with tf.device(model.device):
        total, grads = model.gradients(*_batch(model, x, y))
    return float(total) / len(y), {name: _to_spec(model, name, g.numpy()) for name, g in grads.items()}


def train_step(model: Model, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """One SGD step, one compiled call; returns (sum of per-example losses, number correct) before the update."""
    with tf.device(model.device):
        total, correct = model.step(*_batch(model, x, y))
    return float(total), int(correct)


def evaluate(model: Model, x: np.ndarray, y: np.ndarray, batch_size: int) -> tuple[float, int]:
    """(sum of per-example losses, number correct) over a dataset, in batches (summed in float64, as PyTorch's)."""
    loss_sum, correct = 0.0, 0
    for s in range(0, len(y), batch_size):
        with tf.device(model.device):
            total, right = model.evaluate(*_batch(model, x[s : s + batch_size], y[s : s + batch_size]))
        loss_sum, correct = loss_sum + float(total), correct + int(right)
    return loss_sum, correct


def layer_shapes(model: Model) -> list[tuple[str, tuple[int, ...], int]]:
    """(layer name, output shape of one example in the spec's (C, H, W) order, parameter count), measured by
    running one example through the built layers."""
    recipe = model.recipe
    with tf.device(model.device):
        outputs = _call(model, tf.zeros((1, recipe.in_channels, recipe.input_size, recipe.input_size)), True)
    rows = []
    for (name, layers), out in zip(model.layers, outputs, strict=True):
        shape = (out.shape[3], *out.shape[1:3]) if len(out.shape) == 4 else tuple(out.shape[1:])  # NHWC -> CHW
        rows.append((name, tuple(int(d) for d in shape), sum(int(np.prod(v.shape)) for lay in layers
                                                             for v in lay.weights)))  # fmt: skip
    return rows


def versions() -> dict[str, str]:
    """Framework versions recorded with results."""
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__}


def kernels() -> dict[str, Any]:
    """TensorFlow's build (CUDA/cuDNN where built with them); whether its oneDNN kernels ran (`onednn`, as
    TensorFlow itself answers, and the TF_ENABLE_ONEDNN_OPTS it read); the layout its convolutions run in."""
    info = tf.sysconfig.get_build_info()
    return {"onednn": ONEDNN, "onednn_opts": ONEDNN_OPTS, "layout": "NHWC",
            "cuda_build": bool(info.get("is_cuda_build")),
            **({"cudnn": str(info["cudnn_version"])} if info.get("cudnn_version") else {})}  # fmt: skip


def _op_label(event: str) -> str:
    """A kernel's trace event named as the other backends' profiles name theirs: `gradient_tape/conv2_1/convolution/
    Conv2DBackpropInput:_MklNativeConv2DBackpropInput` -> `conv2 backward: _MklNativeConv2DBackpropInput`."""
    path, _, kernel = event.rpartition(":")
    parts = path.split("/")
    backward = parts[0] == "gradient_tape"
    layer = re.sub(r"_\d+$", "", parts[backward]) if len(parts) > backward + 1 else ""
    return f"{' '.join(filter(None, [layer, 'backward' if backward else 'forward']))}: {kernel}"


def profile_ops(model: Model, x: np.ndarray, y: np.ndarray, steps: int) -> dict[str, float]:
    """Seconds each TensorFlow kernel took (summed) over `steps` training steps, from tf.profiler's trace: the
    events of its executor's threads named `op:KernelType` (e.g. `gradient_tape/conv2_1/.../Conv2DBackpropInput:
    _MklNativeConv2DBackpropInput`), read from the XSpace it writes, named by `_op_label`."""
    import glob
    import tempfile

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory() as scratch:
        tf.profiler.experimental.start(scratch)
        try:
            for _ in range(steps):
                train_step(model, x, y)
        finally:
            tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        for path in glob.glob(os.path.join(scratch, "**", "*.xplane.pb"), recursive=True):
            with open(path, "rb") as file:
                space.MergeFromString(file.read())
    ops: dict[str, float] = {}
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name.replace("::", "") and not name.startswith("EagerLocalExecute"):
                    op = _op_label(name)
                    ops[op] = ops.get(op, 0.0) + event.duration_ps / 1e12
    return ops


def native_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """TensorFlow's own shuffle: tf.random.experimental.stateless_shuffle of range(n), seed (seed, epoch)."""
    with tf.device("/CPU:0"):
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=[seed, epoch])
    return order.numpy()
