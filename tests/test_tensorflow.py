"""What the TensorFlow/Keras backend makes visible: channels-last flattening and Keras's loss looking at its input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from backends import load_backend
from common import spec
from common.init import initial_weights

pytestmark = pytest.mark.integration  # its tests start processes or train to the end

tfl = load_backend("tensorflow")
tf = tfl.tf
keras = tfl.keras


def test_flatten_order_maps_nhwc_features_to_the_spec_chw_order():
    order = tfl.flatten_order(spec.RECIPES["seed-torch"])  # 16 maps of 4x4 before Flatten
    assert sorted(order) == list(range(256))
    # Keras's feature 0 is (h0, w0, c0) = spec 0; feature 1 is (h0, w0, c1) = spec 1*16; feature 16 is (h0, w1, c0)
    assert order[0] == 0 and order[1] == 16 and order[15] == 15 * 16 and order[16] == 1
    maps = np.arange(256).reshape(16, 4, 4)  # a batch of one, spec (C, H, W), numbered by its C-order index
    assert np.array_equal(maps.transpose(1, 2, 0).reshape(-1), order)  # what Keras's Flatten gives on NHWC


def test_weights_copied_without_the_row_permutation_give_another_network():
    """The layout trap: transposing kernels is not enough; the first Dense's rows must follow Flatten's order."""
    recipe = spec.RECIPES["seed-torch-fixed"]
    model = tfl.build_model(recipe, "cpu")
    weights = initial_weights(recipe, 0)
    x = np.random.default_rng(0).normal(size=(8, 1, 28, 28)).astype(np.float32)
    tfl.set_weights(model, weights)
    right = tfl.forward(model, x)
    reference = load_backend("numpy")
    ref_model = reference.build_model(recipe, "cpu")
    reference.set_weights(ref_model, weights)
    np.testing.assert_allclose(right, reference.forward(ref_model, x), rtol=1e-4, atol=1e-5)
    naive = model.params["dense1.weight"]  # the spec's (out, in) transposed, rows left in the spec's (c, h, w) order
    naive.assign(weights["dense1.weight"].T)
    wrong = tfl.forward(model, x)
    assert np.abs(wrong - right).max() > 1e-2, "a naive copy should compute another function"
    assert np.array_equal(tfl.get_weights(model)["dense1.weight"][:, tfl.flatten_order(recipe)],
                          weights["dense1.weight"])  # fmt: skip


def test_keras_loss_takes_a_softmax_ops_input_as_logits_inside_a_trace_only():
    """d2l-en's TensorFlow LeNet uses SparseCategoricalCrossentropy(from_logits=True). Fed the blog post's softmax
    output, Keras's loss computes a single softmax inside tf.function and a double one eagerly."""
    logits = tf.constant([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]])
    y = tf.constant([0, 1])
    once = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
    twice = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=tf.nn.softmax(logits))

    def keras_loss(z):
        return keras.losses.sparse_categorical_crossentropy(y, tf.nn.softmax(z), from_logits=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Keras warns "Was this intended?"
        traced = tf.function(keras_loss)(logits)
    eager = keras_loss(logits)
    np.testing.assert_allclose(traced, once, rtol=1e-6)
    np.testing.assert_allclose(eager, twice, rtol=1e-6)
    assert np.abs(np.asarray(once) - np.asarray(twice)).max() > 0.1


@pytest.mark.parametrize("recipe", ["seed-torch", "d2l"])
def test_the_backend_loss_applies_softmax_to_whatever_the_network_gives(recipe):
    """The backend's step loss equals the spec's: softmax cross-entropy of the output, the blog post's head included."""
    r = spec.RECIPES[recipe]
    model = tfl.build_model(r, "cpu")
    tfl.set_weights(model, initial_weights(r, 0))
    x = np.random.default_rng(1).normal(size=(4, r.in_channels, r.input_size, r.input_size)).astype(np.float32)
    y = np.array([0, 3, 7, 9])
    output = tfl.forward(model, x).astype(np.float64)
    shifted = output - output.max(axis=1, keepdims=True)
    expected = np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(4), y])
    loss, _ = tfl.loss_and_gradients(model, x, y)
    assert loss == pytest.approx(expected, rel=1e-5)


def test_onednn_kernels_run_on_every_x86_processor_and_the_record_says_so():
    # In this process the backend pinned TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow started, unless the caller set it:
    # TensorFlow's own Linux default leaves oneDNN off on processors without AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX.
    import os
    import platform

    from tensorflow.python.util import _pywrap_util_port

    kernels = tfl.kernels()
    assert kernels["onednn"] is bool(_pywrap_util_port.IsMklEnabled())
    if tfl._PIN_ONEDNN:  # the pin was the backend's: recorded with the kernels, gone from the environment again
        assert kernels["onednn_opts"] == "1" and "TF_ENABLE_ONEDNN_OPTS" not in os.environ
        if platform.machine() == "x86_64":
            assert kernels["onednn"], "the pin is on, yet TensorFlow says oneDNN is off"
    else:
        assert kernels["onednn_opts"] == os.environ["TF_ENABLE_ONEDNN_OPTS"]


@pytest.mark.slow
def test_turning_onednn_off_is_still_the_callers_choice_and_recorded():
    import os
    import subprocess
    import sys

    code = ("from backends import load_backend; k = load_backend('tensorflow').kernels(); "
            "print(k['onednn'], k['onednn_opts'])")
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.split()[-2:] == ["False", "0"]
