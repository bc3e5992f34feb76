"""The seed blog post's two LeNet scripts, as written, changed only to run offline, for a chosen length, timed.

`seed_torch` (PyTorch, MNIST) and `seed_mxnet` (MXNet Gluon + d2lzh, Fashion-MNIST at 96x96). Each has
`run(...) -> dict` and a `python -m` entry point printing JSON (the speed benchmark's baseline), and a
`ReferenceRun`: the script trained epoch by epoch through the harness's run store (backend 'script'), on
either dataset, with the test set evaluated after each epoch by code outside the script's loop.
"""

from __future__ import annotations

import importlib

from common.errors import UserError
from common.results import RunKey

# The recipe each script is the reference for, and the module that holds it.
SCRIPTS = {"seed-torch": f"{__name__}.seed_torch", "seed-mxnet": f"{__name__}.seed_mxnet"}


def open_reference_run(key: RunKey, device: str):
    """The seed script for `key.recipe`, set up for `key.dataset` and `key.seed` (a runs.Session)."""
    if key.recipe not in SCRIPTS:
        raise UserError(f"the blog post has scripts for {' and '.join(SCRIPTS)} only, not {key.recipe!r}")
    module = importlib.import_module(SCRIPTS[key.recipe])
    return module.ReferenceRun(key.dataset, key.seed, key.limit, device)
