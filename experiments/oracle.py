"""The oracle: PyTorch and MXNet, each against the float64 NumPy reference (backends/numpy_lenet.py).

For every recipe, on a batch of the real data and from the same initial weights, it measures how far each
framework lands from the exact math: the network's output, the loss, every parameter's gradient (one batch),
then the per-step losses and every parameter after 50 SGD steps. The figure is the largest relative error,
max |framework - numpy| / max |numpy| over the tensor's entries. The test suite (tests/test_oracle.py) asserts
them against stated tolerances; `python -m experiments.oracle --results DIR` writes them to DIR/oracle.json,
which the report shows.

    python -m experiments.oracle [--results docs/results] [--recipes a,b] [--steps 50]
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from common import data, spec
from common.batches import batch_slices, epoch_order
from common.errors import run_cli
from common.init import initial_weights
from common.preprocess import prepare_images
from common.results import write_atomic

FRAMEWORKS = ("torch", "mxnet")
# The NumPy backend itself in float32: how far float32 arithmetic alone lands from the float64 math, the yardstick
# for the frameworks' figures.
FLOAT32 = "numpy-float32"
CANDIDATES = (*FRAMEWORKS, FLOAT32)
LABEL = {"torch": "PyTorch", "mxnet": "MXNet", FLOAT32: "NumPy float32"}
STEPS = 50
DATASET_FOR = {name: ("mnist" if "torch" in name else "fashion-mnist") for name in spec.RECIPES}
BATCH_EXAMPLES = 64  # the one-batch comparison (the recipe's batch size for the SGD steps, capped below)
STEP_BATCH_CAP = 32  # 96x96 in float64 NumPy costs ~2 s a step at batch 256; 32 keeps 50 steps to seconds
ORACLE_FILE = "oracle.json"


def relative_error(got: np.ndarray | float, want: np.ndarray | float) -> float:
    """max |got - want| / max |want|: the largest error, relative to the tensor's scale."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    scale = np.abs(want).max()
    return float(np.abs(got - want).max() / scale) if scale else float(np.abs(got).max())


@dataclass(frozen=True)
class OracleFigures:
    """One framework on one recipe against float64 NumPy."""

    recipe: str
    dataset: str
    framework: str
    examples: int
    output: float
    loss: float
    gradients: dict[str, float]  # parameter name -> largest relative error of its gradient
    steps: int
    step_batch: int
    step_losses: float  # largest relative error of the per-step losses over the steps
    weights_after: dict[str, float]  # parameter name -> largest relative error after the steps


def load_batch(recipe: spec.Recipe, dataset: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` training examples of the real dataset, preprocessed for the recipe."""
    raw = data.load_dataset(dataset)
    return prepare_images(raw.train_images[:count], recipe.preprocess), raw.train_labels[:count].astype(np.int64)


def _start(backend, recipe: spec.Recipe, weights, **options):
    model = backend.build_model(recipe, "cpu", **options)
    backend.set_weights(model, weights)
    return model


@dataclass
class Trace:
    """What one implementation computed: one batch's output, loss and gradients, then the SGD steps."""

    output: np.ndarray
    loss: float
    gradients: dict[str, np.ndarray]
    step_losses: list[float]
    weights_after: dict[str, np.ndarray]


def trace(backend, model, x: np.ndarray, y: np.ndarray, batches: list[np.ndarray], steps: int) -> Trace:
    """Run one implementation through the oracle's fixed sequence: one batch forward and backward, then `steps`
    SGD steps cycling over `batches` (index arrays into x, y)."""
    one_x, one_y = x[:BATCH_EXAMPLES], y[:BATCH_EXAMPLES]
    output = backend.forward(model, one_x)
    loss, gradients = backend.loss_and_gradients(model, one_x, one_y)
    step_losses = []
    for step in range(steps):
        index = batches[step % len(batches)]
        step_losses.append(backend.train_step(model, x[index], y[index])[0] / len(index))
    return Trace(output, loss, gradients, step_losses, backend.get_weights(model))


def measure(recipe_name: str, candidates: tuple[str, ...] = CANDIDATES, steps: int = STEPS,
            seed: int = 1) -> list[OracleFigures]:  # fmt: skip
    """Every oracle figure of each candidate on one recipe, from the spec's initial weights for `seed`: the
    float64 NumPy reference runs once, each candidate runs the same sequence and is compared with it."""
    from backends import load_backend

    reference = load_backend("numpy")
    recipe, dataset = spec.get_recipe(recipe_name), DATASET_FOR[recipe_name]
    weights = initial_weights(recipe, seed)
    step_batch = min(recipe.batch_size, STEP_BATCH_CAP)
    x, y = load_batch(recipe, dataset, max(BATCH_EXAMPLES, step_batch * 4))
    order = epoch_order(seed, 0, len(y))
    batches = [order[s] for s in batch_slices(len(y), step_batch, "drop")]
    exact = trace(reference, _start(reference, recipe, weights), x, y, batches, steps)
    names = list(spec.parameter_shapes(recipe))  # the spec's order: conv1 first
    figures = []
    for candidate in candidates:
        backend = reference if candidate == FLOAT32 else load_backend(candidate)
        options = {"dtype": np.float32} if candidate == FLOAT32 else {}
        got = trace(backend, _start(backend, recipe, weights, **options), x, y, batches, steps)
        figures.append(OracleFigures(
            recipe_name, dataset, candidate, min(BATCH_EXAMPLES, len(y)), relative_error(got.output, exact.output),
            relative_error(got.loss, exact.loss),
            {name: relative_error(got.gradients[name], exact.gradients[name]) for name in names},
            steps, step_batch, relative_error(got.step_losses, exact.step_losses),
            {name: relative_error(got.weights_after[name], exact.weights_after[name]) for name in names},
        ))  # fmt: skip
    return figures


def oracle_markdown(figures: list[OracleFigures]) -> str:
    """One row per recipe and framework (and float32 NumPy): output, loss, each layer's largest gradient error,
    the per-step losses and the weights after the steps."""
    if not figures:
        return ""
    layers = list(dict.fromkeys(name.rsplit(".", 1)[0] for f in figures for name in f.gradients))
    header = ["recipe", "framework", "output", "loss", *[f"grad {layer}" for layer in layers],
              "step losses", "weights after"]  # fmt: skip
    body = []
    for f in figures:
        per_layer = [max((e for n, e in f.gradients.items() if n.rsplit(".", 1)[0] == layer), default=None)
                     for layer in layers]  # fmt: skip
        body.append([f"`{f.recipe}`", LABEL[f.framework], f"{f.output:.1e}", f"{f.loss:.1e}",
                     *["" if e is None else f"{e:.1e}" for e in per_layer],
                     f"{f.step_losses:.1e}", f"{max(f.weights_after.values()):.1e}"])  # fmt: skip
    lines = ["| " + " | ".join(cells) + " |" for cells in [header, *body]]
    return "\n".join([lines[0], "|" + "---|" * len(header), *lines[1:]])


def write_oracle(results: Path, figures: list[OracleFigures]) -> Path:
    """DIR/oracle.json: the figures and where they were measured."""
    from backends import load_backend

    versions = {name: load_backend(name).versions() for name in FRAMEWORKS}
    document = {"measured": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.machine(),
                "versions": versions, "figures": [asdict(f) for f in figures]}  # fmt: skip
    path = Path(results) / ORACLE_FILE
    write_atomic(path, (json.dumps(document, indent=1) + "\n").encode())
    return path


def read_oracle(results: Path) -> list[OracleFigures]:
    """The figures stored in DIR/oracle.json, or none."""
    path = Path(results) / ORACLE_FILE
    if not path.exists():
        return []
    return [OracleFigures(**f) for f in json.loads(path.read_text())["figures"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.oracle", description=__doc__.split("\n")[0])
    parser.add_argument("--results", default="results", help="directory to write oracle.json into")
    parser.add_argument("--recipes", help=f"comma-separated, default all: {','.join(spec.RECIPES)}")
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args(argv)
    names = args.recipes.split(",") if args.recipes else list(spec.RECIPES)
    for name in names:
        spec.get_recipe(name)  # one line for an unknown recipe
    figures = [f for name in names for f in measure(name, steps=args.steps)]
    print(oracle_markdown(figures))
    print(f"wrote {write_oracle(Path(args.results), figures)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
