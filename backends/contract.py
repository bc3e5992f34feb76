"""The backend contract, where a backend's author imports it: `backends.contract.Backend`. It is defined in
common/contract.py, below the training loop (common/train.py), which types every backend against it."""

from common.contract import MEMBERS, Backend, Model, Weights

__all__ = ["MEMBERS", "Backend", "Model", "Weights"]
