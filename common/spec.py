"""The one LeNet spec: layers, preprocessing, initialisation, loss, optimiser and schedule, as data.

Every number a backend uses comes from here. From the spec alone this module computes each layer's
output shape, parameter count and FLOPs, so a reader can check the blog post's arithmetic (why its code
flattens 16*4*4 = 256 features, and why `resize=96` gives Dense(120) 7056*120 = 847,080 weights).

FLOP convention: a multiply-accumulate is 2 FLOPs (bias adds are not counted); an activation is 1 FLOP
per element, a pooling window 1 FLOP per input element it reads, softmax 3 per element. Training FLOPs
= forward + backward, where a convolution or dense layer's backward costs 2x its forward (gradient of
its input and of its weights) except the first layer, whose input needs no gradient (1x), and an
element-wise or pooling layer's backward costs 1x its forward.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from common.errors import UserError, unknown_name

ACTIVATIONS = ("relu", "sigmoid")
POOL_MODES = ("max", "avg")
# "stock": each framework's own defaults, whatever the recipe's original scheme (stock mode; common/init.py)
INIT_SCHEMES = ("torch-default", "gluon-xavier", "d2l-xavier", "stock")
# How the gradient that SGD sees is normalised:
#   "mean": mean of the per-example losses over the examples actually in the batch (PyTorch's
#           CrossEntropyLoss default, and d2l-en's `trainer.step(X.shape[0])`);
#   "sum-over-batch-size": per-example losses summed, then divided by the recipe's nominal batch size
#           (d2lzh's `loss(...).sum()` + `trainer.step(batch_size)`: a last partial batch of 96 examples
#           is still divided by 256).
LOSS_NORMALISATIONS = ("mean", "sum-over-batch-size")
OUTPUTS = ("logits", "softmax")
LAST_BATCH_POLICIES = ("keep", "drop")


@dataclass(frozen=True)
class Conv:
    """2-D convolution, square kernel, with bias."""

    channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    kind: str = "conv"


@dataclass(frozen=True)
class Pool:
    """2-D pooling, square window, no padding."""

    mode: Literal["max", "avg"]
    size: int
    stride: int
    kind: str = "pool"


@dataclass(frozen=True)
class Activation:
    """Element-wise non-linearity."""

    function: Literal["relu", "sigmoid"]
    kind: str = "activation"


@dataclass(frozen=True)
class Flatten:
    """(N, C, H, W) -> (N, C*H*W) in C order, the same in every backend."""

    kind: str = "flatten"


@dataclass(frozen=True)
class Dense:
    """Fully connected layer with bias."""

    units: int
    kind: str = "dense"


@dataclass(frozen=True)
class Softmax:
    """Softmax over classes inside the network's forward (the seed-torch quirk)."""

    kind: str = "softmax"


Layer = Conv | Pool | Activation | Flatten | Dense | Softmax


@dataclass(frozen=True)
class Preprocess:
    """Input pipeline applied once to the uint8 images: resize, then x/divisor, then (x-mean)/std."""

    resize: int | None = None  # bilinear resize of the 28x28 uint8 image to resize x resize, as Gluon's Resize
    divisor: float = 255.0  # ToTensor in torchvision and Gluon divides (not multiplies by 1/255) in float32
    mean: float = 0.0
    std: float = 1.0


@dataclass(frozen=True)
class Loss:
    """Softmax cross-entropy on the network's output, and how the gradient is normalised."""

    normalisation: Literal["mean", "sum-over-batch-size"] = "mean"


@dataclass(frozen=True)
class Optimizer:
    """Plain SGD with heavy-ball momentum (PyTorch and MXNet updates coincide for a constant lr)."""

    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0


@dataclass(frozen=True)
class Recipe:
    """A network plus everything needed to train it; runs on either dataset."""

    name: str
    origin: str
    layers: tuple[Layer, ...]
    preprocess: Preprocess
    init: str
    loss: Loss
    optimizer: Optimizer
    batch_size: int
    epochs: int
    output: Literal["logits", "softmax"] = "logits"
    shuffle: bool = True
    last_batch: Literal["keep", "drop"] = "keep"
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    # Descriptive fields (DESCRIPTIVE: a run made under another value is still the same run): the dataset the recipe
    # comes from (its oracle and parity batches are drawn from it; every recipe runs on both), and the registered
    # backend whose framework the blog post's script this recipe reproduces as written runs on (None: no such script).
    dataset: Literal["mnist", "fashion-mnist"] = "mnist"
    script_backend: str | None = None

    def __post_init__(self) -> None:
        validate(self)

    @property
    def input_size(self) -> int:
        """Side of the square image the network sees, after any resize."""
        return self.preprocess.resize or self.image_size

    @property
    def network(self) -> tuple[Layer, ...]:
        """The layers a backend builds: the spec's layers plus the softmax head when output='softmax'."""
        return self.layers + ((Softmax(),) if self.output == "softmax" else ())


DESCRIPTIVE = ("origin", "dataset", "script_backend")  # fields that describe a recipe without changing its training


def validate(recipe: Recipe) -> None:
    """Reject a recipe whose fields are out of their allowed sets or whose shapes do not work out."""
    checks = [
        ("init scheme", recipe.init, INIT_SCHEMES),
        ("loss normalisation", recipe.loss.normalisation, LOSS_NORMALISATIONS),
        ("output", recipe.output, OUTPUTS),
        ("last_batch policy", recipe.last_batch, LAST_BATCH_POLICIES),
    ]
    for layer in recipe.layers:
        if isinstance(layer, Activation):
            checks.append(("activation", layer.function, ACTIVATIONS))
        if isinstance(layer, Pool):
            checks.append(("pool mode", layer.mode, POOL_MODES))
    for kind, value, valid in checks:
        if value not in valid:
            raise unknown_name(kind, value, valid)
    for field, value in [("batch_size", recipe.batch_size), ("epochs", recipe.epochs)]:
        if not isinstance(value, int) or value < 1:
            raise UserError(f"{field} must be a positive integer, got {value!r}")
    if recipe.optimizer.lr <= 0:
        raise UserError(f"optimizer.lr must be positive, got {recipe.optimizer.lr!r}")
    rows = layer_rows(recipe)
    if rows[-1].shape != (recipe.num_classes,) or sum(isinstance(lay, Flatten) for lay in recipe.layers) != 1:
        raise UserError(f"recipe {recipe.name!r} must flatten once and end with {recipe.num_classes} outputs")


# ---------------------------------------------------------------------------------------------------
# Per-layer arithmetic


@dataclass(frozen=True)
class LayerRow:
    """One line of a recipe's layer table."""

    name: str
    layer: Layer | None  # None for the input row
    shape: tuple[int, ...]  # output shape of one example
    parameters: int
    forward_flops: int
    training_flops: int

    @property
    def description(self) -> str:
        """Human-readable layer description, e.g. 'conv 5x5 /1 pad 0 -> 6'."""
        return describe(self.layer)


def describe(layer: Layer | None) -> str:
    """Short text for one layer."""
    match layer:
        case None:
            return "input"
        case Conv(channels=c, kernel=k, stride=s, padding=p):
            return f"conv {k}x{k} stride {s} pad {p}, {c} channels"
        case Pool(mode=m, size=k, stride=s):
            return f"{m}-pool {k}x{k} stride {s}"
        case Activation(function=f):
            return f
        case Dense(units=u):
            return f"dense, {u} units"
        case Flatten():
            return "flatten"
        case Softmax():
            return "softmax (inside forward)"
    raise TypeError(layer)


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def layer_rows(recipe: Recipe) -> list[LayerRow]:
    """The recipe's layer table: output shape, parameters and FLOPs of each layer, from the spec alone."""
    shape: tuple[int, ...] = (recipe.in_channels, recipe.input_size, recipe.input_size)
    rows = [LayerRow("input", None, shape, 0, 0, 0)]
    counters: dict[str, int] = {}
    first_weight_layer = True
    for layer in recipe.network:
        counters[layer.kind] = counters.get(layer.kind, 0) + 1
        name = f"{layer.kind}{counters[layer.kind]}"
        new_shape, params, flops, backward = _layer_arithmetic(layer, shape, first_weight_layer)
        if params:
            first_weight_layer = False
        if min(new_shape) < 1:
            raise UserError(f"recipe {recipe.name!r}: layer {name} gets input {shape} and has no output")
        rows.append(LayerRow(name, layer, new_shape, params, flops, flops + backward))
        shape = new_shape
    return rows


def _layer_arithmetic(layer: Layer, shape: tuple[int, ...], first: bool) -> tuple[tuple[int, ...], int, int, int]:
    """(output shape, parameters, forward FLOPs, backward FLOPs) of one layer for one example."""
    size = math.prod(shape)
    match layer:
        case Conv(channels=c, kernel=k, stride=s, padding=p):
            cin, h, w = shape
            out = (c, _conv_out(h, k, s, p), _conv_out(w, k, s, p))
            macs = cin * k * k * math.prod(out)
            return out, cin * c * k * k + c, 2 * macs, (1 if first else 2) * 2 * macs
        case Dense(units=u):
            (features,) = shape
            macs = features * u
            return (u,), features * u + u, 2 * macs, (1 if first else 2) * 2 * macs
        case Pool(size=k, stride=s):
            cin, h, w = shape
            out = (cin, _conv_out(h, k, s, 0), _conv_out(w, k, s, 0))
            return out, 0, k * k * math.prod(out), k * k * math.prod(out)
        case Activation():
            return shape, 0, size, size
        case Softmax():
            return shape, 0, 3 * size, 3 * size
        case Flatten():
            return (size,), 0, 0, 0
    raise TypeError(layer)


def parameter_count(recipe: Recipe) -> int:
    """Total trainable parameters."""
    return sum(row.parameters for row in layer_rows(recipe))


def flops_ratio(recipe: str, other: str) -> float:
    """How many times `other`'s forward FLOPs per example `recipe` does."""
    return flops_per_example(get_recipe(recipe))[0] / flops_per_example(get_recipe(other))[0]


def flops_per_example(recipe: Recipe) -> tuple[int, int]:
    """(forward, training) FLOPs for one example."""
    rows = layer_rows(recipe)
    return sum(r.forward_flops for r in rows), sum(r.training_flops for r in rows)


def parameter_shapes(recipe: Recipe) -> dict[str, tuple[int, ...]]:
    """Named parameter shapes in the layout PyTorch and MXNet use: conv (out, in, k, k), dense (out, in)."""
    shapes: dict[str, tuple[int, ...]] = {}
    rows = layer_rows(recipe)
    for previous, row in zip(rows, rows[1:], strict=False):
        if isinstance(row.layer, Conv):
            k = row.layer.kernel
            shapes[f"{row.name}.weight"] = (row.layer.channels, previous.shape[0], k, k)
            shapes[f"{row.name}.bias"] = (row.layer.channels,)
        elif isinstance(row.layer, Dense):
            shapes[f"{row.name}.weight"] = (row.layer.units, previous.shape[0])
            shapes[f"{row.name}.bias"] = (row.layer.units,)
    return shapes


def format_layer_table(rows: list[LayerRow], title: str = "") -> str:
    """A fixed-width table of layer rows, for teaching."""
    header = f"{'layer':<12}{'what':<36}{'output shape':>16}{'parameters':>12}{'fwd FLOPs':>14}{'train FLOPs':>14}"
    lines = [title] if title else []
    lines += [header, "-" * len(header)]
    for row in rows:
        shape = "x".join(str(d) for d in row.shape)
        lines.append(
            f"{row.name:<12}{row.description:<36}{shape:>16}{row.parameters:>12,}"
            f"{row.forward_flops:>14,}{row.training_flops:>14,}"
        )
    total_fwd = sum(r.forward_flops for r in rows)
    total_train = sum(r.training_flops for r in rows)
    total_params = sum(r.parameters for r in rows)
    lines.append("-" * len(header))
    lines.append(f"{'total':<12}{'':<36}{'':>16}{total_params:>12,}{total_fwd:>14,}{total_train:>14,}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# The named recipes

_SEED_TORCH_LAYERS: tuple[Layer, ...] = (
    Conv(6, 5), Activation("relu"), Pool("max", 2, 2),
    Conv(16, 5), Activation("relu"), Pool("max", 2, 2),
    Flatten(),  # the blog post's x.view(-1, 16*4*4): 16 channels of 4x4 at 28x28 input
    Dense(120), Activation("relu"),
    Dense(84), Activation("relu"),
    Dense(10),
)  # fmt: skip

_SEED_MXNET_LAYERS: tuple[Layer, ...] = (
    Conv(6, 5), Activation("sigmoid"), Pool("max", 2, 2),
    Conv(16, 5), Activation("sigmoid"), Pool("max", 2, 2),
    Flatten(),  # Gluon's Dense flattens its input implicitly; the spec makes it a layer of its own
    Dense(120), Activation("sigmoid"),
    Dense(84), Activation("sigmoid"),
    Dense(10),
)  # fmt: skip

_D2L_LAYERS: tuple[Layer, ...] = (
    Conv(6, 5, padding=2), Activation("sigmoid"), Pool("avg", 2, 2),
    Conv(16, 5), Activation("sigmoid"), Pool("avg", 2, 2),
    Flatten(),
    Dense(120), Activation("sigmoid"),
    Dense(84), Activation("sigmoid"),
    Dense(10),
)  # fmt: skip

SEED_TORCH = Recipe(
    name="seed-torch",
    origin="the blog post's PyTorch script as written (MNIST in the seed)",
    layers=_SEED_TORCH_LAYERS,
    output="softmax",  # the seed returns torch.softmax(x) from forward, then applies CrossEntropyLoss
    preprocess=Preprocess(resize=None, mean=0.5, std=0.5),  # ToTensor + Normalize
    init="torch-default",
    loss=Loss("mean"),  # nn.CrossEntropyLoss() averages over the batch
    optimizer=Optimizer(lr=0.001, momentum=0.9),
    batch_size=64,
    epochs=10,
    dataset="mnist",
    script_backend="torch",
)

SEED_MXNET = Recipe(
    name="seed-mxnet",
    origin="the blog post's MXNet Gluon / d2lzh script as written (Fashion-MNIST in the seed)",
    layers=_SEED_MXNET_LAYERS,
    preprocess=Preprocess(resize=96),  # load_data_fashion_mnist(256, resize=96): Resize then ToTensor
    init="gluon-xavier",  # init.Xavier(): uniform, factor 'avg', magnitude 3; Gluon biases start at 0
    loss=Loss("sum-over-batch-size"),  # loss(...).sum(); trainer.step(batch_size)
    optimizer=Optimizer(lr=0.9),
    batch_size=256,
    epochs=10,
    dataset="fashion-mnist",
    script_backend="mxnet",
)

RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        SEED_TORCH,
        dataclasses.replace(
            SEED_TORCH,
            name="seed-torch-fixed",
            origin="seed-torch without the softmax inside forward (CrossEntropyLoss gets logits)",
            output="logits",
            script_backend=None,
        ),
        SEED_MXNET,
        dataclasses.replace(
            SEED_MXNET,
            name="seed-mxnet-28",
            origin="seed-mxnet at 28x28, as the d2l-zh book behind d2lzh ran it (the book ran 5 epochs)",
            preprocess=Preprocess(resize=None),
            script_backend=None,
        ),
        Recipe(
            name="d2l",
            origin="d2l-en 0.17 LeNet: padding 2, sigmoid, average pooling, Xavier, lr 0.9",
            layers=_D2L_LAYERS,
            preprocess=Preprocess(resize=None),
            init="d2l-xavier",  # nn.init.xavier_uniform_ on weights, PyTorch's default uniform biases
            loss=Loss("mean"),  # PyTorch CrossEntropyLoss mean; MXNet trainer.step(X.shape[0])
            optimizer=Optimizer(lr=0.9),
            batch_size=256,
            epochs=10,
            dataset="fashion-mnist",
        ),
    )
}


def get_recipe(name: str, overrides: dict[str, Any] | None = None) -> Recipe:
    """A named recipe, optionally with dotted-path field overrides such as {'optimizer.lr': 0.1}."""
    if name not in RECIPES:
        raise unknown_name("recipe", name, RECIPES)
    recipe = RECIPES[name]
    for path, value in (overrides or {}).items():
        recipe = _replace_path(recipe, path.split("."), value)
    return recipe


def _replace_path(obj: Any, path: list[str], value: Any) -> Any:
    """dataclasses.replace along a dotted path; an unknown field is an error listing the valid ones."""
    valid = [f.name for f in dataclasses.fields(obj)]
    head, rest = path[0], path[1:]
    if head not in valid:
        raise unknown_name(f"field of {type(obj).__name__}", head, valid)
    if rest:
        return dataclasses.replace(obj, **{head: _replace_path(getattr(obj, head), rest, value)})
    current = getattr(obj, head)
    if dataclasses.is_dataclass(current) and not isinstance(value, type(current)):
        fields = [f.name for f in dataclasses.fields(current)]
        raise UserError(f"field {head!r} is a group of fields; set one of {fields}")
    return dataclasses.replace(obj, **{head: value})


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The recipe as plain JSON data (layers tagged with their kind), equal to itself after a JSON round trip."""
    return json.loads(json.dumps(dataclasses.asdict(recipe)))


def main(argv: list[str] | None = None) -> int:
    """`python -m common.spec [RECIPE ...]`: print each recipe's layer table."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("recipes", nargs="*", help=f"recipe names (default: all): {', '.join(RECIPES)}")
    args = parser.parse_args(argv)
    for name in args.recipes or list(RECIPES):
        recipe = get_recipe(name)
        print(format_layer_table(layer_rows(recipe), f"{recipe.name}: {recipe.origin}"))
        print()
    return 0


if __name__ == "__main__":
    from common.errors import run_cli

    run_cli(main)
