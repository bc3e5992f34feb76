"""Parity: every registered framework computes the same function from the same spec as PyTorch (tinygrad style:
same seeded inputs into each, outputs and gradients compared with stated tolerances), on real data subsets.
Each backend against the spec and the float64 reference (layer tables, oracle) is the conformance suite's part
(backends/conformance); here the frameworks are compared with each other.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import subset

from common import spec
from common.batches import batch_slices, epoch_order
from common.init import initial_weights

RECIPES = list(spec.RECIPES)


FAST_RECIPE = "seed-torch-fixed"  # the one recipe of the 50 steps framework against framework (see below)


@pytest.fixture(scope="module")
def backends(framework_backends):
    """Every registered framework, the first (PyTorch) being the one the others are compared with."""
    return framework_backends


def _others(backends) -> list[str]:
    return list(backends)[1:]


def _models(backends, recipe, seed=0):
    """Both backends' models for the recipe, loaded with the same NumPy initial weights."""
    weights = initial_weights(recipe, seed)
    models = {}
    for name, backend in backends.items():
        models[name] = backend.build_model(recipe, "cpu", seed=seed)
        backend.set_weights(models[name], weights)
    return models


@pytest.mark.parametrize("recipe_name", RECIPES)
def test_same_weights_same_batch_same_outputs_loss_and_gradients(recipe_name, backends):
    recipe = spec.get_recipe(recipe_name)
    x, y, _, _ = subset(recipe.dataset, recipe, 64)
    models = _models(backends, recipe, seed=1)
    first = next(iter(backends))
    outputs = {n: b.forward(models[n], x) for n, b in backends.items()}
    computed = {n: b.loss_and_gradients(models[n], x, y) for n, b in backends.items()}
    loss_t, grads_t = computed[first]
    for name in grads_t:
        assert np.abs(grads_t[name]).max() > 0, f"{name}: a zero gradient would make this comparison vacuous"
    for other in _others(backends):
        np.testing.assert_allclose(outputs[other], outputs[first], rtol=1e-5, atol=1e-5, err_msg=other)
        loss_m, grads_m = computed[other]
        assert loss_m == pytest.approx(loss_t, rel=1e-5, abs=1e-5), other
        assert set(grads_t) == set(grads_m) == set(spec.parameter_shapes(recipe)), other
        for name in grads_t:
            np.testing.assert_allclose(grads_m[name], grads_t[name], rtol=1e-4, atol=1e-4, err_msg=f"{other} {name}")


def _step_losses(backend, model, x, y, steps, seed=0):
    """Per-step mean losses over `steps` optimiser steps, batches from the shared seeded order."""
    recipe, losses, epoch = model.recipe, [], 0
    while len(losses) < steps:
        order = epoch_order(seed, epoch, len(y))
        for batch in batch_slices(len(y), recipe.batch_size, recipe.last_batch):
            loss_sum, _ = backend.train_step(model, x[order[batch]], y[order[batch]])
            losses.append(loss_sum / len(order[batch]))
        epoch += 1
    return np.asarray(losses[:steps])


# One recipe: the conformance suite already takes every backend through 50 SGD steps of every recipe against the
# float64 math (test_fifty_sgd_steps), which bounds any two frameworks' gap; this test adds the recipe's own batch
# size (64) with a last partial batch, framework against framework.
@pytest.mark.parametrize("recipe_name", [FAST_RECIPE])
def test_fifty_steps_agree(recipe_name, backends):
    """Every framework's per-step losses agree with PyTorch's to 1e-3 relative over 50 steps (expect ~1e-6)."""
    recipe = spec.get_recipe(recipe_name)
    # a subset whose size is not a multiple of the batch, so last partial batches are exercised too
    x, y, _, _ = subset(recipe.dataset, recipe, 3 * recipe.batch_size + 40)
    models = _models(backends, recipe, seed=2)
    losses = {n: _step_losses(b, models[n], x, y, 50) for n, b in backends.items()}
    first = next(iter(backends))
    for other in _others(backends):
        np.testing.assert_allclose(losses[other], losses[first], rtol=1e-3, err_msg=other)
    assert np.ptp(losses[first]) > 1e-3, "identical losses at every step would make this comparison vacuous"


# after 30 steps the seed recipes still predict one class (sigmoid plateau, lr 0.001): a ReLU net with lr 0.05
# learns enough in 30 steps for the predictions to be worth comparing
def predict(backend, model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Predicted class of each example, from the backend's forward pass in batches."""
    return np.concatenate([backend.forward(model, images[s : s + batch_size]).argmax(axis=1)
                           for s in range(0, len(images), batch_size)])  # fmt: skip


@pytest.mark.parametrize(("source", "target", "dataset"), [("torch", "mxnet", "mnist"),
                                                           ("mxnet", "torch", "fashion-mnist")])  # fmt: skip
def test_weights_trained_in_one_backend_predict_the_same_in_the_other(source, target, dataset, backends):
    recipe = spec.get_recipe("seed-torch-fixed", {"optimizer.lr": 0.05})
    x, y, test_x, _ = subset(dataset, recipe, 2048, 1000)
    model = backends[source].build_model(recipe, "cpu", seed=3)
    _step_losses(backends[source], model, x, y, 30)
    other = backends[target].build_model(recipe, "cpu", seed=4)
    backends[target].set_weights(other, backends[source].get_weights(model))
    predictions = predict(backends[source], model, test_x, 500)
    assert len(set(predictions.tolist())) > 1, "a constant prediction would make this comparison vacuous"
    np.testing.assert_array_equal(predict(backends[target], other, test_x, 500), predictions)
