"""Preprocessing once in NumPy: the resize is Gluon's bit for bit; scaling is ToTensor + Normalize's."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import _raw

from common import spec
from common.preprocess import prepare_images, resize_images


@pytest.fixture(scope="module")
def images():
    return np.concatenate([_raw("fashion-mnist").train_images[:300], _raw("mnist").test_images[:300]])


@pytest.mark.environment("mxnet")
def test_resize_is_bit_identical_to_gluon_resize(images):
    import mxnet as mx
    from mxnet.gluon.data.vision import transforms

    gluon = transforms.Resize(96)  # what d2lzh.load_data_fashion_mnist(resize=96) applies to each image
    expected = np.stack([gluon(mx.nd.array(im[:, :, None], dtype="uint8")).asnumpy()[:, :, 0] for im in images])
    np.testing.assert_array_equal(resize_images(images, 96), expected)


def test_torchvision_resize_differs_by_at_most_one_grey_level(images):
    from PIL import Image
    from torchvision import transforms

    resize = transforms.Resize(96)  # PIL's bilinear filter, its own fixed point
    theirs = np.stack([np.asarray(resize(Image.fromarray(im))) for im in images]).astype(int)
    difference = theirs - resize_images(images, 96).astype(int)
    assert np.abs(difference).max() == 1
    assert (difference != 0).mean() < 0.25  # measured: about 14% of pixels on these images


def test_to_tensor_and_normalize_match_torchvision_exactly(images):
    import torch
    from PIL import Image
    from torchvision import transforms

    pipeline = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    expected = torch.stack([pipeline(Image.fromarray(im)) for im in images[:50]]).numpy()
    ours = prepare_images(images[:50], spec.get_recipe("seed-torch").preprocess)
    assert ours.dtype == np.float32 and ours.shape == (50, 1, 28, 28)
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.environment("mxnet")
def test_to_tensor_matches_gluon_to_tensor(images):
    import mxnet as mx
    from mxnet.gluon.data.vision import transforms

    expected = transforms.ToTensor()(mx.nd.array(images[:50, :, :, None], dtype="uint8")).asnumpy()
    ours = prepare_images(images[:50], spec.get_recipe("seed-mxnet-28").preprocess)
    np.testing.assert_array_equal(ours, expected)
