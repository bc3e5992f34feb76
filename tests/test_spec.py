"""The spec's arithmetic: shapes, parameter counts and FLOPs written out by hand, per recipe."""

import dataclasses

import numpy as np
import pytest

from common import spec
from common.batches import batch_slices, epoch_order, steps_per_epoch
from common.errors import UserError
from common.init import bias_bound, initial_weights, weight_bound

# Per-layer parameters as arithmetic (DeepOBS style): weights + biases.
CONV1 = 1 * 6 * 5 * 5 + 6
CONV2 = 6 * 16 * 5 * 5 + 16
HEAD = (120 * 84 + 84) + (84 * 10 + 10)
EXPECTED_PARAMETERS = {
    "seed-torch": CONV1 + CONV2 + (16 * 4 * 4 * 120 + 120) + HEAD,  # the code's 16*4*4, not the text's 16*5*5
    "seed-torch-fixed": CONV1 + CONV2 + (16 * 4 * 4 * 120 + 120) + HEAD,
    "seed-mxnet": CONV1 + CONV2 + (16 * 21 * 21 * 120 + 120) + HEAD,  # resize=96: 96-4=92, /2=46, -4=42, /2=21
    "seed-mxnet-28": CONV1 + CONV2 + (16 * 4 * 4 * 120 + 120) + HEAD,
    "d2l": CONV1 + CONV2 + (16 * 5 * 5 * 120 + 120) + HEAD,  # padding 2 keeps 28, so 16*5*5 here
}


@pytest.mark.parametrize("name", sorted(spec.RECIPES))
def test_parameter_counts(name):
    assert name in EXPECTED_PARAMETERS, f"recipe {name} has no parameter count worked out by hand above"
    assert spec.parameter_count(spec.get_recipe(name)) == EXPECTED_PARAMETERS[name]


def test_seed_torch_has_44426_parameters():
    assert spec.parameter_count(spec.get_recipe("seed-torch")) == 44_426


def test_seed_torch_flattens_16x4x4_not_16x5x5():
    rows = {row.name: row for row in spec.layer_rows(spec.get_recipe("seed-torch"))}
    assert rows["pool2"].shape == (16, 4, 4)
    assert rows["flatten1"].shape == (16 * 4 * 4,)


def test_resize_96_makes_dense1_7056_by_120():
    rows = {row.name: row for row in spec.layer_rows(spec.get_recipe("seed-mxnet"))}
    assert rows["conv1"].shape == (6, 92, 92)
    assert rows["pool2"].shape == (16, 21, 21)
    assert rows["dense1"].parameters == 16 * 21 * 21 * 120 + 120


def test_d2l_shapes():
    shapes = [row.shape for row in spec.layer_rows(spec.get_recipe("d2l"))]
    assert shapes[:4] == [(1, 28, 28), (6, 28, 28), (6, 28, 28), (6, 14, 14)]
    assert (16, 5, 5) in shapes and shapes[-1] == (10,)


def test_flops_by_hand_for_seed_torch():
    rows = {row.name: row for row in spec.layer_rows(spec.get_recipe("seed-torch"))}
    assert rows["conv1"].forward_flops == 2 * (1 * 5 * 5) * 6 * 24 * 24
    assert rows["conv2"].forward_flops == 2 * (6 * 5 * 5) * 16 * 8 * 8
    assert rows["dense1"].forward_flops == 2 * 256 * 120
    # first weight layer: no input gradient, so backward = 1x forward; later ones 2x
    assert rows["conv1"].training_flops == 2 * rows["conv1"].forward_flops
    assert rows["conv2"].training_flops == 3 * rows["conv2"].forward_flops
    forward, training = spec.flops_per_example(spec.get_recipe("seed-torch"))
    assert forward == sum(r.forward_flops for r in rows.values()) and 2 * forward < training < 3 * forward


def _torch_script_layers(net) -> tuple[spec.Layer, ...]:
    """The layers a PyTorch module applies in its forward (traced with torch.fx), written as spec layers."""
    import torch
    import torch.fx

    modules, layers = dict(net.named_modules()), []
    for node in torch.fx.symbolic_trace(net).graph.nodes:
        module = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(module, torch.nn.Conv2d):
            layers.append(spec.Conv(module.out_channels, module.kernel_size[0], module.stride[0], module.padding[0]))
        elif isinstance(module, torch.nn.MaxPool2d):
            layers.append(spec.Pool("max", module.kernel_size, module.stride))
        elif isinstance(module, torch.nn.Linear):
            layers.append(spec.Dense(module.out_features))
        elif node.op == "call_function" and node.target in (torch.relu, torch.sigmoid):
            layers.append(spec.Activation(node.target.__name__))
        elif node.op == "call_function" and node.target is torch.softmax:
            layers.append(spec.Softmax())
        elif node.op == "call_method" and node.target == "view":
            layers.append(spec.Flatten())
        else:
            assert node.op in ("placeholder", "output"), f"the spec has no layer for {node.op} {node.target}"
    return tuple(layers)


def _gluon_script_layers(net) -> tuple[spec.Layer, ...]:
    """The layers of a Gluon Sequential, written as spec layers (a Dense on an image flattens it first)."""
    from mxnet.gluon import nn

    layers: list[spec.Layer] = []
    for block in net:
        if isinstance(block, nn.Conv2D):
            kwargs = block._kwargs
            layers.append(spec.Conv(block._channels, kwargs["kernel"][0], kwargs["stride"][0], kwargs["pad"][0]))
        elif isinstance(block, nn.MaxPool2D):
            layers.append(spec.Pool(block._kwargs["pool_type"], block._kwargs["kernel"][0], block._kwargs["stride"][0]))
        elif isinstance(block, nn.Dense):
            if block._flatten and not any(isinstance(layer, spec.Dense) for layer in layers):
                layers.append(spec.Flatten())
            layers.append(spec.Dense(block._units))
        else:
            raise AssertionError(f"the spec has no layer for {block}")
        if getattr(block, "act", None) is not None:
            layers.append(spec.Activation(block.act._act_type))
    return tuple(layers)


def test_seed_torch_recipes_have_the_layers_the_pytorch_script_builds():
    """The recipes' networks, layer for layer, against the blog post's own models (ReLU, the softmax in the PyTorch
    seed's forward, max pooling, the 5x5 kernels without padding)."""
    from experiments.running.seed_scripts import seed_torch

    assert _torch_script_layers(seed_torch.LeNet()) == spec.get_recipe("seed-torch").network
    assert _torch_script_layers(seed_torch.LeNet())[:-1] == spec.get_recipe("seed-torch-fixed").network


@pytest.mark.environment("mxnet")
def test_seed_mxnet_recipes_have_the_layers_the_mxnet_script_builds():
    """Likewise the Gluon script's (sigmoid, max pooling, Dense flattening the image)."""
    from experiments.running.seed_scripts import seed_mxnet

    for name in ("seed-mxnet", "seed-mxnet-28"):
        assert _gluon_script_layers(seed_mxnet.build_net()) == spec.get_recipe(name).network, name


def test_unknown_recipe_lists_valid_names():
    with pytest.raises(UserError, match="unknown recipe 'lenet5'.*d2l, seed-mxnet, seed-mxnet-28"):
        spec.get_recipe("lenet5")


def test_overrides_and_unknown_field():
    recipe = spec.get_recipe("seed-torch", {"epochs": 1, "optimizer.lr": 0.01})
    assert recipe.epochs == 1 and recipe.optimizer.lr == 0.01 and recipe.optimizer.momentum == 0.9
    with pytest.raises(UserError, match="unknown field of Recipe 'epoch'.*epochs"):
        spec.get_recipe("seed-torch", {"epoch": 1})
    with pytest.raises(UserError, match="unknown field of Optimizer 'learning_rate'.*lr"):
        spec.get_recipe("seed-torch", {"optimizer.learning_rate": 1})


def test_invalid_values_are_rejected():
    with pytest.raises(UserError, match="unknown init scheme"):
        spec.get_recipe("d2l", {"init": "he"})
    with pytest.raises(UserError, match="batch_size must be a positive integer"):
        spec.get_recipe("d2l", {"batch_size": 0})
    with pytest.raises(UserError, match="has no output"):
        dataclasses.replace(spec.get_recipe("seed-torch"), layers=(spec.Conv(6, 40), spec.Flatten(), spec.Dense(10)))


def test_layer_table_text_shows_totals():
    text = spec.format_layer_table(spec.layer_rows(spec.get_recipe("seed-torch")))
    assert "44,426" in text and "softmax" in text


@pytest.mark.parametrize(
    ("scheme", "bias_zero"), [("torch-default", False), ("gluon-xavier", True), ("d2l-xavier", False)]
)
def test_initial_weights_follow_scheme(scheme, bias_zero):
    recipe = spec.get_recipe("d2l", {"init": scheme})
    weights = initial_weights(recipe, seed=3)
    assert list(weights) == list(spec.parameter_shapes(recipe))
    for name, value in weights.items():
        assert value.dtype == np.float32 and value.shape == spec.parameter_shapes(recipe)[name]
    bound = weight_bound(scheme, weights["dense1.weight"].shape)
    assert np.abs(weights["dense1.weight"]).max() <= bound
    assert np.abs(weights["dense1.weight"]).max() > 0.95 * bound  # 48,000 draws fill the interval
    assert (np.abs(weights["conv1.bias"]).max() == 0) == bias_zero
    assert np.array_equal(initial_weights(recipe, 3)["conv1.weight"], weights["conv1.weight"])
    assert not np.array_equal(initial_weights(recipe, 4)["conv1.weight"], weights["conv1.weight"])


def test_xavier_bound_matches_both_frameworks_formula():
    # Gluon Xavier(avg, magnitude 3): sqrt(3 / ((fan_in + fan_out) / 2)); torch xavier_uniform_: sqrt(6/(in+out))
    shape = (16, 6, 5, 5)
    fan_in, fan_out = 6 * 25, 16 * 25
    assert weight_bound("gluon-xavier", shape) == pytest.approx(np.sqrt(3 / ((fan_in + fan_out) / 2)))
    assert weight_bound("torch-default", shape) == pytest.approx(np.sqrt(1 / fan_in))


def test_epoch_order_is_a_seeded_permutation():
    order = epoch_order(seed=1, epoch=2, n=100)
    assert sorted(order) == list(range(100))
    assert np.array_equal(order, epoch_order(1, 2, 100))
    assert not np.array_equal(order, epoch_order(1, 3, 100))
    assert np.array_equal(epoch_order(1, 2, 5, shuffle=False), np.arange(5))


def test_last_partial_batch_is_kept_like_both_seeds():
    # 60,000 = 234 * 256 + 96: d2lzh's DataLoader keeps the last 96 examples as a batch
    sizes = [s.stop - s.start for s in batch_slices(60_000, 256)]
    assert len(sizes) == 235 == steps_per_epoch(60_000, 256) and sizes[-1] == 96
    assert [s.stop - s.start for s in batch_slices(10, 4, "drop")] == [4, 4]


@pytest.mark.parametrize("seed", [0, 1, 9, 2**31 + 5])
def test_torch_default_weights_are_the_seed_scripts_own_bit_for_bit(seed):
    """Shared mode's seed-torch weights for seed k are those of `torch.manual_seed(k); LeNet()` in the blog post's
    script."""
    import torch

    from experiments.running.seed_scripts.seed_torch import LeNet

    torch.manual_seed(seed)
    script = {name.replace("fc", "dense"): p.detach().numpy() for name, p in LeNet().named_parameters()}
    ours = initial_weights(spec.get_recipe("seed-torch"), seed)
    assert list(script) == list(ours)  # the same parameters, drawn in the same order
    for name, values in ours.items():
        assert values.dtype == np.float32 and np.array_equal(values, script[name]), name


def test_torch_stream_continues_like_torch_and_rounds_like_it():
    import torch

    from common.init import TorchStream

    torch.manual_seed(42)
    stream = TorchStream(42)
    for low, high, shape in [(-0.2, 0.2, (6, 1, 5, 5)), (-1 / 3, 1 / 3, (1000,)), (0.0, 1.0, (7, 3))]:
        assert np.array_equal(stream.uniform(low, high, shape), torch.empty(shape).uniform_(low, high).numpy())


def test_numpy_source_draws_the_same_law_with_other_numbers():
    recipe = spec.get_recipe("seed-torch")
    torch_numbers, numpy_numbers = initial_weights(recipe, 3), initial_weights(recipe, 3, source="numpy-pcg64")
    for name in torch_numbers:
        assert not np.array_equal(torch_numbers[name], numpy_numbers[name])
        weight = torch_numbers[name.replace(".bias", ".weight")].shape
        bound = weight_bound(recipe.init, weight) if name.endswith(".weight") else bias_bound(recipe.init, weight)
        assert np.abs(numpy_numbers[name]).max() <= bound and np.abs(torch_numbers[name]).max() <= bound
    with pytest.raises(ValueError, match="unknown initial-weight source"):
        initial_weights(recipe, 3, source="nosuch")
