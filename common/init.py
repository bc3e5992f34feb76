"""Initial weights generated once, in NumPy, from a seed, so that both backends can start identically.

Each scheme reproduces the distribution that a framework's own initialiser draws from:
- "torch-default": PyTorch's Conv2d/Linear reset_parameters: kaiming_uniform_(a=sqrt(5)) weights,
  i.e. U(-sqrt(1/fan_in), +sqrt(1/fan_in)), and biases U(-1/sqrt(fan_in), +1/sqrt(fan_in)).
- "gluon-xavier": MXNet `init.Xavier()` (rnd_type 'uniform', factor_type 'avg', magnitude 3):
  U(-sqrt(3 / ((fan_in + fan_out) / 2)), ...) weights; Gluon biases start at zero.
- "d2l-xavier": d2l-en's PyTorch `nn.init.xavier_uniform_` weights, U(-sqrt(6 / (fan_in + fan_out)), ...)
  (the same bound as gluon-xavier), with PyTorch's default uniform biases left in place.
fan_in = in_channels * k * k and fan_out = out_channels * k * k for a convolution, as both frameworks compute.
"""

from __future__ import annotations

import math

import numpy as np

from common.spec import Recipe, parameter_shapes


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of shape (out, in, *kernel)."""
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def weight_bound(scheme: str, shape: tuple[int, ...]) -> float:
    """Half-width of the uniform distribution a weight is drawn from."""
    fan_in, fan_out = fans(shape)
    if scheme == "torch-default":
        return math.sqrt(1.0 / fan_in)  # kaiming_uniform_ with a=sqrt(5): gain^2 * 3 / fan_in = 1 / fan_in
    return math.sqrt(6.0 / (fan_in + fan_out))  # Xavier uniform: magnitude 3 over the average fan


def bias_bound(scheme: str, weight_shape: tuple[int, ...]) -> float:
    """Half-width of the bias distribution (0: biases start at zero)."""
    if scheme == "gluon-xavier":
        return 0.0  # Gluon's default bias_initializer is 'zeros'
    return 1.0 / math.sqrt(fans(weight_shape)[0])


def initial_weights(recipe: Recipe, seed: int) -> dict[str, np.ndarray]:
    """Named float32 weights for the recipe's init scheme, drawn in parameter order from one seeded RNG."""
    rng = np.random.default_rng(seed)
    shapes = parameter_shapes(recipe)
    weights: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        layer = name.rsplit(".", 1)[0]
        if name.endswith(".weight"):
            bound = weight_bound(recipe.init, shape)
        else:
            bound = bias_bound(recipe.init, shapes[f"{layer}.weight"])
        weights[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    return weights
