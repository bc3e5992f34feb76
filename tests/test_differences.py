"""Every framework difference the spec makes explicit, checked in every built-in backend (one suite,
parametrized over `backends.BUILTIN`, the NumPy reference included). What every backend must do whatever its
framework (layer tables, the oracle, resuming, native initial weights and orders, imports, devices) is the
conformance suite's part: backends/conformance."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import subset

from backends import BUILTIN, names
from common import spec
from common.errors import UserError
from common.init import SOURCES, initial_weights

BACKENDS = [entry.name for entry in BUILTIN if entry.name in names()]  # the contract's (not the scripts')


@pytest.fixture(params=BACKENDS)
def backend_name(request) -> str:
    return request.param


@pytest.fixture
def backend(backend_name, torch_backend, mxnet_backend):
    from backends import load_backend

    return {"torch": torch_backend, "mxnet": mxnet_backend}.get(backend_name) or load_backend(backend_name)


def _model(backend, name, overrides=None, seed=0):
    recipe = spec.get_recipe(name, overrides)
    model = backend.build_model(recipe, "cpu", seed=seed)
    backend.set_weights(model, initial_weights(recipe, seed))
    return model


def test_last_partial_batch_is_still_divided_by_the_nominal_batch(backend):
    # the blog post's d2lzh loop: loss(...).sum(); trainer.step(256), also for the last batch of 96 examples
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


@pytest.mark.parametrize("scheme", list(SOURCES))  # the schemes shared mode draws
def test_native_weights_are_the_shared_draw_only_where_the_spec_replays_the_framework(backend_name, backend, scheme):
    """(That native weights follow the scheme's distribution is the conformance suite's item 'native init'.)"""
    recipe = spec.get_recipe("d2l", {"init": scheme})
    native = backend.get_weights(backend.build_model(recipe, "cpu", seed=5))["dense1.weight"]
    shared = initial_weights(recipe, 5)["dense1.weight"]
    if backend_name == "torch" and scheme == "torch-default":
        # shared mode replays PyTorch's own generator for this scheme: the very numbers native mode draws
        assert np.array_equal(native, shared)
    elif backend_name == "numpy":  # NumPy has no initialisers of its own: its native weights are the spec's draw
        assert np.array_equal(native, shared)
    else:  # otherwise native mode is a different random start from the same distribution
        assert not np.allclose(native, shared)


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


def test_torch_train_and_eval_modes(torch_backend):
    model = _model(torch_backend, "seed-torch")
    x, y, _, _ = subset("mnist", model.recipe, 8)
    torch_backend.train_step(model, x, y)
    assert model.net.training
    torch_backend.forward(model, x)
    assert not model.net.training


@pytest.mark.environment("mxnet")
def test_mxnet_dense_does_not_flatten_implicitly(mxnet_backend):
    model = _model(mxnet_backend, "seed-mxnet-28")
    dense = [block for block in model.net if type(block).__name__ == "Dense"]
    assert dense and all(not block._flatten for block in dense)


def test_native_orders_differ_between_frameworks(torch_backend, mxnet_backend):
    """(Each is a seeded permutation: the conformance suite's item 'native order'.)"""
    assert not np.array_equal(torch_backend.native_order(0, 0, 1000), mxnet_backend.native_order(0, 0, 1000))


def test_unknown_backend_is_one_line():
    from backends import load_backend, names

    valid = ", ".join(sorted(names()))
    with pytest.raises(UserError, match=f"^unknown backend 'pytorch'; valid: {re.escape(valid)}$"):
        load_backend("pytorch")
