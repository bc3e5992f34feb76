"""Pick a backend by name, importing only that framework (PyTorch never loads MXNet, and vice versa).

The three modules (PyTorch, MXNet Gluon, and NumPy by hand: the reference) expose the same functions with
the same signatures: configure_threads, select_device, device_name, build_model, native_init, set_weights, get_weights,
get_state, set_state, forward, loss_and_gradients, train_step, evaluate, layer_shapes, versions,
native_order.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from common.errors import unknown_name

BACKENDS = {"torch": "backends.torch_lenet", "mxnet": "backends.mxnet_lenet", "numpy": "backends.numpy_lenet"}


def load_backend(name: str) -> ModuleType:
    """The backend module for 'torch', 'mxnet' or 'numpy'."""
    if name not in BACKENDS:
        raise unknown_name("backend", name, BACKENDS)
    return importlib.import_module(BACKENDS[name])
