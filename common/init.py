"""Initial weights generated once, in NumPy, from a seed, so that every backend can start identically.

Each scheme reproduces the distribution that a framework's own initialiser draws from:
- "torch-default": PyTorch's Conv2d/Linear reset_parameters: kaiming_uniform_(a=sqrt(5)) weights,
  i.e. U(-sqrt(1/fan_in), +sqrt(1/fan_in)), and biases U(-1/sqrt(fan_in), +1/sqrt(fan_in)). Not only the
  distribution: the very numbers. `TorchStream` replays PyTorch's CPU generator after `torch.manual_seed(seed)`
  (MT19937, 24-bit uniforms), so seed k gives, bit for bit, the weights the blog post's PyTorch script starts from
  with `torch.manual_seed(k)`, and a shared-mode run of `seed-torch` pairs with the script's run of that seed.
- "gluon-xavier": MXNet `init.Xavier()` (rnd_type 'uniform', factor_type 'avg', magnitude 3):
  U(-sqrt(3 / ((fan_in + fan_out) / 2)), ...) weights; Gluon biases start at zero.
- "d2l-xavier": d2l-en's PyTorch `nn.init.xavier_uniform_` weights, U(-sqrt(6 / (fan_in + fan_out)), ...)
  (the same bound as gluon-xavier), with PyTorch's default uniform biases left in place.
fan_in = in_channels * k * k and fan_out = out_channels * k * k for a convolution, as every framework computes.

Stock mode ("stock" in a recipe) gives each framework its own defaults, as a student's port would have them; the
registry names each framework's (`BackendInfo.stock_init`), and they are laws of their own here, so the
conformance suite can check each backend's draws:
- "torch-default" (PyTorch's Conv2d/Linear, above);
- "keras-default": Keras's Conv2D/Dense, glorot_uniform weights, U(-sqrt(6 / (fan_in + fan_out)), ...), zero
  biases;
- "flax-default": Flax linen's Conv/Dense, lecun_normal weights, a normal truncated at two of its standard
  deviations and rescaled to variance 1 / fan_in, zero biases;
- "gluon-default": Gluon's `net.initialize()`, Uniform(0.07) weights whatever the layer's size, zero biases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from common.spec import Recipe, parameter_shapes

# Where a scheme's shared draw comes from (recorded with each shared-mode run, so that a run made with other
# numbers is never taken for one made with these).
SOURCES = {"torch-default": "torch-cpu-mt19937", "gluon-xavier": "numpy-pcg64", "d2l-xavier": "numpy-pcg64"}


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel)."""
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


GLUON_UNIFORM_SCALE = 0.07  # mxnet.init.Uniform()'s default scale
TRUNCATION = 2.0  # jax.nn.initializers.truncated_normal: at two standard deviations of the underlying normal


@dataclass(frozen=True)
class Scheme:
    """An initialiser, as data: how the weights are drawn, their bound from a layer's fans, and the biases.

    weights: "uniform" on ±bound, or "truncated-normal", a normal cut at ±bound (TRUNCATION of its standard
    deviations). bound: a rule of BOUNDS by name, or a number (that bound whatever the layer's size). bias: "zero",
    or "fan-in", U(±1/sqrt(fan_in)) (PyTorch's Conv2d/Linear).
    """

    weights: str = "uniform"
    bound: str | float = "xavier"
    bias: str = "zero"

    def __post_init__(self) -> None:
        if self.weights not in ("uniform", "truncated-normal"):
            raise ValueError(f"weights {self.weights!r}: 'uniform' or 'truncated-normal'")
        if not isinstance(self.bound, int | float) and self.bound not in BOUNDS:
            raise ValueError(f"bound {self.bound!r}: a number or one of {', '.join(BOUNDS)}")
        if self.bias not in ("zero", "fan-in"):
            raise ValueError(f"bias {self.bias!r}: 'zero' or 'fan-in'")


def _kaiming_a_sqrt5(fan_in: int, fan_out: int) -> float:
    """kaiming_uniform_(a=sqrt(5)): gain^2 * 3 / fan_in = 1 / fan_in, computed in PyTorch's order of operations so
    that the float32 bound, and with it every drawn number, is PyTorch's to the last bit."""
    gain = math.sqrt(2.0 / (1 + math.sqrt(5) ** 2))
    return math.sqrt(3.0) * (gain / math.sqrt(fan_in))


# A weight's bound from its layer's (fan_in, fan_out), by name
BOUNDS = {
    "xavier": lambda fan_in, fan_out: math.sqrt(6.0 / (fan_in + fan_out)),  # magnitude 3 over the average fan
    "kaiming-a-sqrt5": _kaiming_a_sqrt5,
    # lecun_normal: variance 1 / fan_in after the cut, so the underlying normal's std is sqrt(1/fan_in) / std(cut)
    "lecun": lambda fan_in, fan_out: TRUNCATION * math.sqrt(1.0 / fan_in) / _truncated_std(TRUNCATION),
}

# Every scheme a recipe or a framework's defaults name (the registry's `stock_init`); a plug-in's stock initialisers
# are added as "<name>-default" (backends.registry reads its STOCK_INIT).
SCHEMES: dict[str, Scheme] = {
    "torch-default": Scheme("uniform", "kaiming-a-sqrt5", "fan-in"),
    "gluon-xavier": Scheme("uniform", "xavier", "zero"),  # Gluon's biases start at zero
    "d2l-xavier": Scheme("uniform", "xavier", "fan-in"),  # PyTorch's default biases left in place
    "keras-default": Scheme("uniform", "xavier", "zero"),
    "flax-default": Scheme("truncated-normal", "lecun", "zero"),
    "gluon-default": Scheme("uniform", GLUON_UNIFORM_SCALE, "zero"),
}


def scheme(name: str) -> Scheme:
    """A scheme by name (a ValueError naming the known ones for another)."""
    if name not in SCHEMES:
        raise ValueError(f"unknown initialiser scheme {name!r}; known: {', '.join(SCHEMES)}")
    return SCHEMES[name]


def weight_bound(name: str, shape: tuple[int, ...]) -> float:
    """Half-width of the uniform distribution a weight is drawn from (a truncated normal's: where it is cut)."""
    bound = scheme(name).bound
    return float(bound) if isinstance(bound, int | float) else BOUNDS[bound](*fans(shape))


def bias_bound(name: str, weight_shape: tuple[int, ...]) -> float:
    """Half-width of the bias distribution (0: biases start at zero)."""
    return 0.0 if scheme(name).bias == "zero" else 1.0 / math.sqrt(fans(weight_shape)[0])


@dataclass(frozen=True)
class Law:
    """The distribution an initialiser draws a parameter's values from, by its moments: within ±bound, mean 0."""

    bound: float
    variance: float  # E[x^2]
    fourth: float  # E[x^4] (the spread of a sample's mean square)


def law(name: str, shapes: dict[str, tuple[int, ...]], parameter: str) -> Law:
    """The law of one named parameter under a scheme: uniform on ±bound, or (truncated-normal weights) a normal
    truncated at ±bound; zeros where the bound is 0."""
    layer, kind = parameter.rsplit(".", 1)
    if kind == "bias":
        b = bias_bound(name, shapes[f"{layer}.weight"])
        return Law(b, b * b / 3, b**4 / 5)
    b = weight_bound(name, shapes[parameter])
    if scheme(name).weights == "uniform":
        return Law(b, b * b / 3, b**4 / 5)
    sigma = b / TRUNCATION  # of the underlying normal, before the cut
    z2, z4 = _truncated_moments(TRUNCATION)
    return Law(b, sigma**2 * z2, sigma**4 * z4)


def _truncated_moments(a: float) -> tuple[float, float]:
    """E[z^2] and E[z^4] of a standard normal cut to [-a, a]."""
    density = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(a / math.sqrt(2))
    z2 = 1 - 2 * a * density / mass
    return z2, 3 * z2 - 2 * a**3 * density / mass


def _truncated_std(a: float) -> float:
    """The standard deviation of a standard normal cut to [-a, a] (0.8796 for a = 2, as jax's initialisers use)."""
    return math.sqrt(_truncated_moments(a)[0])


class TorchStream:
    """PyTorch's CPU random numbers after `torch.manual_seed(seed)`, in NumPy.

    torch.manual_seed seeds a 32-bit Mersenne Twister as std::mt19937(seed) does, which is NumPy's legacy
    MT19937 seeding. `Tensor.uniform_(low, high)` on a float32 CPU tensor casts low and high to float32, takes
    one 32-bit output per element in memory order, keeps its low 24 bits as x in [0, 1) and returns
    float32(x * (high - low) + low) computed in double (tests/test_spec.py checks this against torch).
    """

    def __init__(self, seed: int) -> None:
        state = np.random.RandomState(seed).get_state(legacy=False)  # MT19937 with std::mt19937's seeding
        self.bits = np.random.MT19937()
        self.bits.state = state

    def uniform(self, low: float, high: float, shape: tuple[int, ...]) -> np.ndarray:
        """The next `prod(shape)` numbers of `torch.empty(shape).uniform_(low, high)` on a contiguous tensor."""
        raw = self.bits.random_raw(math.prod(shape))
        x = (raw & np.uint64((1 << 24) - 1)).astype(np.float64) * 2.0**-24
        low64, high64 = float(np.float32(low)), float(np.float32(high))
        return (x * (high64 - low64) + low64).astype(np.float32).reshape(shape)


def initial_weights(recipe: Recipe, seed: int, source: str | None = None,
                    init: str | None = None) -> dict[str, np.ndarray]:
    """Named float32 weights for the recipe's init scheme, drawn in parameter order from one seeded RNG.

    "torch-default" draws PyTorch's own numbers for `torch.manual_seed(seed)` (TorchStream); the other schemes
    draw from NumPy's default generator with the frameworks' distributions (a truncated normal's weights too).
    `source` overrides SOURCES ("numpy-pcg64" draws the same distribution from NumPy's generator: other numbers,
    same law); `init` draws another scheme of SCHEMES than the recipe's (a backend's stock initialisers, from
    NumPy's generator unless `source` says otherwise).
    """
    init = init or recipe.init
    source = source or SOURCES.get(init, "numpy-pcg64")
    if source not in set(SOURCES.values()):
        raise ValueError(f"unknown initial-weight source {source!r}")
    stream = TorchStream(seed) if source == "torch-cpu-mt19937" else None
    rng = np.random.default_rng(seed)
    shapes = parameter_shapes(recipe)
    weights: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        layer = name.rsplit(".", 1)[0]
        if name.endswith(".weight"):
            bound = weight_bound(init, shape)
        else:
            bound = bias_bound(init, shapes[f"{layer}.weight"])
        if stream is not None:
            weights[name] = stream.uniform(-bound, bound, shape)
        elif name.endswith(".weight") and scheme(init).weights == "truncated-normal":
            weights[name] = (bound / TRUNCATION * _truncated_normal(rng, shape)).astype(np.float32)
        else:
            weights[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    return weights


def _truncated_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal numbers cut to ±TRUNCATION: each drawn again until it lies within."""
    values = rng.standard_normal(size=shape)
    outside = np.abs(values) > TRUNCATION
    while outside.any():
        values[outside] = rng.standard_normal(size=int(outside.sum()))
        outside = np.abs(values) > TRUNCATION
    return values
