"""Every framework difference the spec makes explicit, checked in every backend (one suite, parametrized):
PyTorch, MXNet, and the NumPy reference."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import subset

from common import spec
from common.errors import UserError
from common.init import bias_bound, initial_weights, weight_bound

BACKENDS = ["torch", "mxnet", "numpy"]


@pytest.fixture(params=BACKENDS)
def backend(request, torch_backend, mxnet_backend):
    from backends import load_backend

    return {"torch": torch_backend, "mxnet": mxnet_backend}.get(request.param) or load_backend(request.param)


def _model(backend, name, overrides=None, seed=0):
    recipe = spec.get_recipe(name, overrides)
    model = backend.build_model(recipe, "cpu", seed=seed)
    backend.set_weights(model, initial_weights(recipe, seed))
    return model


def test_last_partial_batch_is_still_divided_by_the_nominal_batch(backend):
    # the seed's d2lzh loop: loss(...).sum(); trainer.step(256), also for the last batch of 96 examples
    x, y, _, _ = subset("fashion-mnist", spec.get_recipe("seed-mxnet-28"), 96)
    nominal = backend.loss_and_gradients(_model(backend, "seed-mxnet-28"), x, y)[1]
    mean = backend.loss_and_gradients(_model(backend, "seed-mxnet-28", {"loss": spec.Loss("mean")}), x, y)[1]
    for name in nominal:
        np.testing.assert_allclose(nominal[name], mean[name] * 96 / 256, rtol=1e-5, atol=1e-8, err_msg=name)


def test_softmax_inside_forward_outputs_probabilities(backend):
    x = subset("mnist", spec.get_recipe("seed-torch"), 16)[0]
    probabilities = backend.forward(_model(backend, "seed-torch"), x)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    logits = backend.forward(_model(backend, "seed-torch-fixed"), x)
    assert not np.allclose(logits.sum(axis=1), 1.0)
    # same weights: the softmax head is exactly softmax of the logits head
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probabilities, expected / expected.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_double_softmax_loss_has_a_floor(backend):
    # CrossEntropy applied to probabilities p: loss = log(sum exp p) - p_y lies in [log(e+9) - 1, log(e+9)]:
    # even a perfect one-hot output costs 1.4612, and gradients through the second softmax are small
    floor, ceiling = np.log(np.e + 9) - 1, np.log(np.e + 9)
    model = _model(backend, "seed-torch")
    x, y, _, _ = subset("mnist", model.recipe, 64)
    loss, _ = backend.loss_and_gradients(model, x, y)
    assert floor < loss < ceiling
    perfect = np.eye(10, dtype=np.float32)[y]
    assert np.log(np.exp(perfect).sum(axis=1)).mean() - 1 == pytest.approx(floor)


@pytest.mark.parametrize("scheme", spec.INIT_SCHEMES)
def test_native_initialisers_draw_from_the_schemes_distribution(backend, scheme):
    recipe = spec.get_recipe("d2l", {"init": scheme})
    model = backend.build_model(recipe, "cpu", seed=5)  # build_model applies the framework's own initialisers
    weights = backend.get_weights(model)
    bound = weight_bound(scheme, weights["dense1.weight"].shape)
    assert 0.95 * bound < np.abs(weights["dense1.weight"]).max() <= bound * (1 + 1e-6)
    bias = bias_bound(scheme, weights["dense1.weight"].shape)
    if bias == 0:
        assert not weights["dense1.bias"].any(), "Gluon biases start at zero"
    else:
        assert 0.5 * bias < np.abs(weights["dense1.bias"]).max() <= bias * (1 + 1e-6)
    shared = initial_weights(recipe, 5)["dense1.weight"]
    if backend.NAME == "torch" and scheme == "torch-default":
        # shared mode replays PyTorch's own generator for this scheme: the very numbers native mode draws
        assert np.array_equal(weights["dense1.weight"], shared)
    elif backend.NAME == "numpy":  # NumPy has no initialisers of its own: its native weights are the spec's draw
        assert np.array_equal(weights["dense1.weight"], shared)
    else:  # otherwise native mode is a different random start from the same distribution
        assert not np.allclose(weights["dense1.weight"], shared)


def test_momentum_update_matches_heavy_ball_by_hand(backend):
    model = _model(backend, "seed-torch-fixed", {"optimizer.lr": 0.05})
    lr, momentum = model.recipe.optimizer.lr, model.recipe.optimizer.momentum
    x, y, _, _ = subset("mnist", model.recipe, 128)
    batches = [(x[:64], y[:64]), (x[64:], y[64:])]
    w = backend.get_weights(model)
    velocity = {k: np.zeros_like(v) for k, v in w.items()}
    for bx, by in batches:  # v = m*v + g; w -= lr*v, with g from the backend at the current weights
        probe = _model(backend, "seed-torch-fixed", {"optimizer.lr": 0.05})
        backend.set_weights(probe, w)
        grads = backend.loss_and_gradients(probe, bx, by)[1]
        velocity = {k: momentum * velocity[k] + grads[k] for k in w}
        w = {k: w[k] - lr * velocity[k] for k in w}
        backend.train_step(model, bx, by)
    for name, value in backend.get_weights(model).items():
        np.testing.assert_allclose(value, w[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_train_step_returns_loss_sum_and_correct_count(backend):
    model = _model(backend, "seed-torch-fixed")
    x, y, _, _ = subset("mnist", model.recipe, 64)
    loss_before, _ = backend.loss_and_gradients(model, x, y)
    predicted = backend.forward(model, x).argmax(axis=1)
    loss_sum, correct = backend.train_step(model, x, y)
    assert loss_sum == pytest.approx(loss_before * 64, rel=1e-5)
    assert correct == int((predicted == y).sum())


def test_state_round_trip_restores_momentum(backend):
    recipe_overrides = {"optimizer.lr": 0.05}
    x, y, _, _ = subset("mnist", spec.get_recipe("seed-torch-fixed"), 192)
    a = _model(backend, "seed-torch-fixed", recipe_overrides)
    backend.train_step(a, x[:64], y[:64])
    state = backend.get_state(a)
    b = _model(backend, "seed-torch-fixed", recipe_overrides, seed=9)
    backend.set_state(b, state)
    for model in (a, b):
        backend.train_step(model, x[64:128], y[64:128])
    for name, value in backend.get_weights(a).items():
        np.testing.assert_array_equal(backend.get_weights(b)[name], value, err_msg=name)


def test_forcing_the_cpu_is_recorded(backend):
    model = _model(backend, "d2l")
    assert "cpu" in backend.device_name(model)
    with pytest.raises(UserError, match="unknown device 'tpu'"):
        backend.select_device("tpu")


def test_torch_train_and_eval_modes(torch_backend):
    model = _model(torch_backend, "seed-torch")
    x, y, _, _ = subset("mnist", model.recipe, 8)
    torch_backend.train_step(model, x, y)
    assert model.net.training
    torch_backend.forward(model, x)
    assert not model.net.training


def test_mxnet_dense_does_not_flatten_implicitly(mxnet_backend):
    model = _model(mxnet_backend, "seed-mxnet-28")
    dense = [block for block in model.net if type(block).__name__ == "Dense"]
    assert dense and all(not block._flatten for block in dense)


def test_native_orders_are_permutations_and_differ_between_frameworks(torch_backend, mxnet_backend):
    a, b = torch_backend.native_order(0, 0, 1000), mxnet_backend.native_order(0, 0, 1000)
    assert sorted(a) == sorted(b) == list(range(1000))
    assert not np.array_equal(a, b)
    assert np.array_equal(a, torch_backend.native_order(0, 0, 1000))


def test_unknown_backend_is_one_line():
    from backends import load_backend

    with pytest.raises(UserError, match="unknown backend 'jax'; valid: mxnet, numpy, torch"):
        load_backend("jax")


@pytest.mark.parametrize(("chosen", "other"), [("torch", "mxnet"), ("mxnet", "torch"), ("numpy", "torch"),
                                               ("numpy", "mxnet")])  # fmt: skip
def test_a_backend_never_imports_the_other_framework(chosen, other):
    code = (f"import sys; from backends import load_backend; from common import spec; b = load_backend('{chosen}'); "
            f"b.build_model(spec.get_recipe('d2l'), 'cpu'); assert '{other}' not in sys.modules, sorted(sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
