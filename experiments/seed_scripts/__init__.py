"""The seed blog post's two LeNet scripts, as written, changed only to run offline, for a chosen length, timed.

They are the baseline of the speed benchmark: `seed_torch` (PyTorch, MNIST) and `seed_mxnet` (MXNet Gluon +
d2lzh, Fashion-MNIST at 96x96). Each has `run(...) -> dict` and a `python -m` entry point printing JSON.
"""
