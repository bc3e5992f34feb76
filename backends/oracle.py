"""The oracle's measurement: a backend against the float64 reference (backends/numpy_lenet.py).

For a recipe, on a batch of the real data and from the same initial weights, it measures how far an
implementation lands from the exact math: the network's output, the loss, every parameter's gradient (one batch),
then the per-step losses and every parameter after 50 SGD steps. The figure is the largest relative error,
max |backend - reference| / max |reference| over the tensor's entries. The conformance suite asserts every
registered backend's figures against tolerances taken from the reference's own float32 figures; `lenet-repro
oracle --results DIR` writes them to DIR/oracle.json, which the report shows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backends import REFERENCE, frameworks, label, load_backend
from common import data, spec
from common.batches import batch_slices, epoch_order
from common.init import initial_weights
from common.preprocess import prepare_images

# The reference backend itself in float32: how far float32 arithmetic alone lands from the float64 math, the
# yardstick for the frameworks' figures.
FLOAT32 = f"{REFERENCE}-float32"
STEPS = 50
BATCH_EXAMPLES = 64  # the one-batch comparison (the recipe's batch size for the SGD steps, capped below)
STEP_BATCH_CAP = 32  # 96x96 in float64 NumPy costs ~2 s a step at batch 256; 32 keeps 50 steps to seconds


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


def start(backend, recipe: spec.Recipe, weights, **options):
    model = backend.build_model(recipe, "cpu", **options)
    backend.set_weights(model, weights)
    return model


@dataclass(frozen=True, eq=False)
class Setup:
    """What every implementation is given for one recipe: the same initial weights, the same real examples and
    the same batches for the SGD steps."""

    recipe_name: str
    recipe: spec.Recipe
    dataset: str
    seed: int
    weights: dict[str, np.ndarray]
    x: np.ndarray
    y: np.ndarray
    step_batch: int
    batches: list[np.ndarray]  # index arrays into x, y, one per SGD step (cycled)

    @property
    def examples(self) -> int:
        """How many examples the one-batch comparison uses."""
        return min(BATCH_EXAMPLES, len(self.y))

    @property
    def parameters(self) -> list[str]:
        """The recipe's parameter names in the spec's order (conv1 first)."""
        return list(spec.parameter_shapes(self.recipe))


def prepare(recipe_name: str, seed: int = 1) -> Setup:
    """The oracle's inputs for a recipe: the spec's initial weights for `seed` and the first real examples."""
    recipe = spec.get_recipe(recipe_name)
    dataset = recipe.dataset
    step_batch = min(recipe.batch_size, STEP_BATCH_CAP)
    x, y = load_batch(recipe, dataset, max(BATCH_EXAMPLES, step_batch * 4))
    order = epoch_order(seed, 0, len(y))
    batches = [order[s] for s in batch_slices(len(y), step_batch, "drop")]
    return Setup(recipe_name, recipe, dataset, seed, initial_weights(recipe, seed), x, y, step_batch, batches)


def first_batch(backend, model, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float, dict[str, np.ndarray]]:
    """One batch (the first BATCH_EXAMPLES examples) forward and backward: (output, loss, gradients)."""
    one_x, one_y = x[:BATCH_EXAMPLES], y[:BATCH_EXAMPLES]
    output = backend.forward(model, one_x)
    loss, gradients = backend.loss_and_gradients(model, one_x, one_y)
    return output, loss, gradients


def sgd_steps(backend, model, x: np.ndarray, y: np.ndarray, batches: list[np.ndarray],
              steps: int) -> tuple[list[float], dict[str, np.ndarray]]:  # fmt: skip
    """`steps` SGD steps cycling over `batches` (index arrays into x, y): (mean loss of each step, weights after)."""
    step_losses = []
    for step in range(steps):
        index = batches[step % len(batches)]
        step_losses.append(backend.train_step(model, x[index], y[index])[0] / len(index))
    return step_losses, backend.get_weights(model)



def candidate_backend(candidate: str):
    """(backend module, build options) of a candidate: a registered backend's name, or FLOAT32."""
    if candidate == FLOAT32:
        return load_backend(REFERENCE), {"dtype": np.float32}
    return load_backend(candidate), {}


Batch = tuple[np.ndarray, float, dict[str, np.ndarray]]  # first_batch's (output, loss, gradients)
Steps = tuple[list[float], dict[str, np.ndarray]]  # sgd_steps' (step losses, weights after)


def batch_errors(setup: Setup, got: Batch, exact: Batch) -> dict[str, object]:
    """One batch's figures: {"output": error, "loss": error, "gradients": {parameter: error}}."""
    gradients = {name: relative_error(got[2][name], exact[2][name]) for name in setup.parameters}
    output, loss = relative_error(got[0], exact[0]), relative_error(got[1], exact[1])
    return {"output": output, "loss": loss, "gradients": gradients}


def step_errors(setup: Setup, got: Steps, exact: Steps) -> dict[str, object]:
    """The SGD steps' figures: {"step_losses": error, "weights_after": {parameter: error}}."""
    weights_after = {name: relative_error(got[1][name], exact[1][name]) for name in setup.parameters}
    return {"step_losses": relative_error(got[0], exact[0]), "weights_after": weights_after}


def figures(setup: Setup, candidate: str, batch: dict[str, object] | None, steps: int,
            step: dict[str, object] | None) -> OracleFigures:  # fmt: skip
    """One candidate's OracleFigures from batch_errors and step_errors (None: not measured, figures NaN)."""
    batch = batch or {"output": float("nan"), "loss": float("nan"), "gradients": {}}
    step = step or {"step_losses": float("nan"), "weights_after": {}}
    return OracleFigures(setup.recipe_name, setup.dataset, candidate, setup.examples, batch["output"],
                         batch["loss"], batch["gradients"], steps, setup.step_batch, step["step_losses"],
                         step["weights_after"])  # fmt: skip


def candidates() -> tuple[str, ...]:
    """What the oracle measures: every registered framework, then the reference in float32 (the yardstick)."""
    return (*frameworks(), FLOAT32)


def measure(recipe_name: str, names: tuple[str, ...] | None = None, steps: int = STEPS,
            seed: int = 1) -> list[OracleFigures]:  # fmt: skip
    """Every oracle figure of each candidate on one recipe, from the spec's initial weights for `seed`: the
    float64 NumPy reference runs once, each candidate runs the same sequence and is compared with it."""
    setup = prepare(recipe_name, seed)
    reference = load_backend(REFERENCE)
    model = start(reference, setup.recipe, setup.weights)
    exact = first_batch(reference, model, setup.x, setup.y), sgd_steps(reference, model, setup.x, setup.y,
                                                                       setup.batches, steps)  # fmt: skip
    measured = []
    for candidate in names or candidates():
        backend, options = candidate_backend(candidate)
        model = start(backend, setup.recipe, setup.weights, **options)
        got = first_batch(backend, model, setup.x, setup.y), sgd_steps(backend, model, setup.x, setup.y,
                                                                       setup.batches, steps)  # fmt: skip
        measured.append(figures(setup, candidate, batch_errors(setup, got[0], exact[0]), steps,
                                step_errors(setup, got[1], exact[1]) if steps else None))  # fmt: skip
    return measured


def figure_label(name: str) -> str:
    """'PyTorch', or 'NumPy float32' for the reference in float32."""
    return f"{label(name.removesuffix('-float32'))} float32" if name == FLOAT32 else label(name)


def _cell(error: float | None) -> str:
    return "-" if error is None or np.isnan(error) else f"{error:.1e}"


def oracle_markdown(measured: list[OracleFigures]) -> str:
    """One row per recipe and framework (and float32 NumPy): output, loss, each layer's largest gradient error,
    the per-step losses and the weights after the steps ("-" for a figure not measured, e.g. steps=0)."""
    if not measured:
        return ""
    layers = list(dict.fromkeys(name.rsplit(".", 1)[0] for f in measured for name in f.gradients))
    header = ["recipe", "framework", "output", "loss", *[f"grad {layer}" for layer in layers],
              "step losses", "weights after"]  # fmt: skip
    body = []
    for f in measured:
        per_layer = [max((e for n, e in f.gradients.items() if n.rsplit(".", 1)[0] == layer), default=None)
                     for layer in layers]  # fmt: skip
        body.append([f"`{f.recipe}`", figure_label(f.framework), _cell(f.output), _cell(f.loss),
                     *[_cell(e) for e in per_layer], _cell(f.step_losses),
                     _cell(max(f.weights_after.values(), default=None))])  # fmt: skip
    lines = ["| " + " | ".join(cells) + " |" for cells in [header, *body]]
    return "\n".join([lines[0], "|" + "---|" * len(header), *lines[1:]])
