"""Shared fixtures: small subsets of the real datasets, preprocessed per recipe."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from common import data
from common.preprocess import prepare_images
from common.spec import Recipe


@functools.cache
def _raw(dataset: str) -> data.Dataset:
    return data.load_dataset(dataset)  # the real, verified files (`make test` provisions them first)


def subset(dataset: str, recipe: Recipe, train: int, test: int = 0) -> tuple[np.ndarray, ...]:
    """(train_x, train_y, test_x, test_y): the first examples of the real data, preprocessed for the recipe."""
    raw = _raw(dataset)
    return (
        prepare_images(raw.train_images[:train], recipe.preprocess),
        raw.train_labels[:train],
        prepare_images(raw.test_images[:test], recipe.preprocess),
        raw.test_labels[:test],
    )


@pytest.fixture(scope="session")
def torch_backend():
    from backends import load_backend

    backend = load_backend("torch")
    backend.configure_threads()
    return backend


@pytest.fixture(scope="session")
def mxnet_backend():
    from backends import load_backend

    return load_backend("mxnet")
