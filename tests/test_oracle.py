"""The NumPy reference backend as the oracle, checked against calculus (central finite differences, float64), and
what its hand-written layers and SGD do where no recipe reaches (tied max-pooling windows, weight decay, float32).

Every registered backend is checked against this oracle (outputs, loss, every gradient, 50 SGD steps, on the real
data, every recipe) by the conformance suite, backends/conformance (contract items 'oracle' and '50 SGD steps'),
which also prints the measured figures at the end of the run; `make oracle` writes them to the report.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from conftest import subset

from backends import REFERENCE, info, oracle
from common import spec
from common.init import initial_weights

RECIPES = list(spec.RECIPES)
# The reference's module itself, not only its contract: these tests reach its layers, loss and SGD by hand.
nl = importlib.import_module(info(REFERENCE).module)


def _objective(model, x: np.ndarray, y: np.ndarray) -> float:
    """The function SGD descends: summed per-example loss over the recipe's normaliser (float64 throughout)."""
    losses, _ = nl.cross_entropy(nl.forward(model, x), y)
    return float(losses.sum()) / nl.loss_normaliser(model, len(y))


@pytest.mark.parametrize("recipe_name", [pytest.param(name, marks=[pytest.mark.slow] if name == "seed-mxnet" else [])
                                         for name in RECIPES])  # fmt: skip  (96x96 in float64: seconds a difference)
def test_numpy_gradients_equal_central_finite_differences(recipe_name):
    """Calculus, not a framework, checks the oracle: (f(w+h) - f(w-h)) / 2h for entries of every parameter."""
    recipe = spec.get_recipe(recipe_name)
    x, y, _, _ = subset(recipe.dataset, recipe, 3)
    model = nl.build_model(recipe, "cpu", seed=2)
    assert model.params["conv1.weight"].dtype == np.float64
    _, grads = nl.loss_and_gradients(model, x, y)
    rng = np.random.default_rng(0)
    h = 1e-6
    for name, value in model.params.items():
        grad = grads[name]
        assert np.abs(grad).max() > 0, f"{name}: a zero gradient would make this check vacuous"
        flat = value.reshape(-1)
        picks = {int(np.abs(grad).argmax()), *rng.choice(flat.size, size=min(6, flat.size), replace=False).tolist()}
        for index in sorted(picks):
            saved = flat[index]
            flat[index] = saved + h
            up = _objective(model, x, y)
            flat[index] = saved - h
            down = _objective(model, x, y)
            flat[index] = saved
            numeric = (up - down) / (2 * h)
            analytic = grad.reshape(-1)[index]
            assert abs(numeric - analytic) <= 1e-6 * np.abs(grad).max() + 1e-9, (name, index, numeric, analytic)


def test_max_pooling_routes_a_tied_gradient_as_pytorch_does(torch_backend):
    """Synthetic windows with two or four equal maxima: the gradient goes to the first in row-major order."""
    import torch

    x = np.array([[1, 3, 3, 0], [3, 2, 0, 0], [5, 5, 2, 2], [5, 5, 2, 2]], np.float64).reshape(1, 1, 4, 4)
    dy = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    pool = nl.MaxPool(spec.Pool("max", 2, 2))
    y = pool.forward(x.transpose(0, 2, 3, 1), {})
    dx = pool.backward(dy.transpose(0, 2, 3, 1), {}, {}).transpose(0, 3, 1, 2)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.max_pool2d(xt, 2, 2)
    yt.backward(torch.tensor(dy))
    assert np.array_equal(y.transpose(0, 3, 1, 2), yt.detach().numpy())
    assert np.array_equal(dx, xt.grad.numpy())
    assert dx[0, 0, 0, 1] == 1.0 and dx[0, 0, 1, 0] == 0.0 and dx[0, 0, 2, 0] == 3.0  # first of the ties


def test_sgd_with_momentum_and_weight_decay_in_the_spec_form(framework_backends):
    """No recipe uses weight decay, so this checks it on its own: the NumPy update by hand, and every framework
    the registry lists (each writes the spec's update out in its own terms: Keras's SGD, for one, decouples it)."""
    overrides = {"optimizer.lr": 0.05, "optimizer.weight_decay": 0.01}
    recipe = spec.get_recipe("seed-torch-fixed", overrides)
    x, y, _, _ = subset("mnist", recipe, 128)
    weights = initial_weights(recipe, 0)
    backends = {"numpy": nl, **framework_backends}
    models = {}
    for name, backend in backends.items():
        models[name] = backend.build_model(recipe, "cpu")
        backend.set_weights(models[name], weights)
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    v = {k: np.zeros_like(value) for k, value in w.items()}
    opt = recipe.optimizer
    for batch in (slice(0, 64), slice(64, 128), slice(0, 64)):
        probe = nl.build_model(recipe, "cpu")
        nl.set_weights(probe, w)
        grads = nl.loss_and_gradients(probe, x[batch], y[batch])[1]
        for k in w:  # g = grad + wd*w;  v = m*v + g;  w = w - lr*v
            v[k] = opt.momentum * v[k] + grads[k] + opt.weight_decay * w[k]
            w[k] = w[k] - opt.lr * v[k]
        for name, backend in backends.items():
            backend.train_step(models[name], x[batch], y[batch])
    for name in w:
        np.testing.assert_allclose(nl.get_weights(models["numpy"])[name], w[name], rtol=1e-12, atol=1e-14)
        for framework in framework_backends:
            got = backends[framework].get_weights(models[framework])[name]
            assert oracle.relative_error(got, w[name]) < 1e-5, (framework, name)


def test_float32_is_selectable_and_stays_float32():
    recipe = spec.get_recipe("d2l")
    model = nl.build_model(recipe, "cpu", dtype=np.float32)
    x, y, _, _ = subset("mnist", recipe, 8)
    assert nl.forward(model, x).dtype == np.float32
    nl.train_step(model, x, y)
    assert {value.dtype for value in nl.get_state(model).values()} == {np.dtype(np.float32)}
