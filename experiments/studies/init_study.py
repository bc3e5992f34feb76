"""Is a NumPy draw of PyTorch's init distribution a faithful stand-in for PyTorch's own? A crossed study.

The PyTorch backend trains `seed-torch` for each seed twice, with the *same* batches (the shared NumPy order)
and two sources of initial weights: NumPy's default generator drawing PyTorch's distribution (`common.init`
with source "numpy-pcg64", what shared mode loaded before it replayed PyTorch's own generator) and PyTorch's
own initialisers (`native_init`, as the blog post's script and native mode draw them). Only the initial weights
differ, so a difference between the arms is the initialisation's; none means a gap is the seeds'.
A third source, `--arms mxnet`, takes MXNet's native initial weights for the seed (MXNet's initialisers set to
the recipe's distributions, as MXNet's native mode draws them), still trained by PyTorch on the shared batches:
it separates MXNet's weights from MXNet's batch order. The study's `torch` arm is, weights and batches, what a
shared-mode PyTorch run of the recipe trains.
Results go to <out>/init-<recipe>-<dataset>.json, written after every run (resumable), each run with its final
test accuracy and loss and the mean training loss of every epoch, and the comparison (Welch's t-test,
experiments.analysis.stats) is printed: PyTorch's own draws against each other arm and against all the others
pooled (the pattern in question is "another generator's draws land below PyTorch's"), on the final accuracy (and
by the Mann-Whitney rank test, which one run stuck on the plateau cannot sway) and on the first epoch's loss (how
fast a run leaves the softmax head's plateau) and on the epochs a run spends on that plateau (its training loss
within PLATEAU_GAP of a uniform guess's; a count, so by the Mann-Whitney rank test), with how closely the final
accuracy follows that count (Spearman's rank correlation over all runs).

`--independent` draws each arm's weights from its own seeds (seed + WEIGHT_SEED_STRIDE x (1 + the arm's place in
`arms()`)), so that no two arms share a seed: without it every arm draws from seeds 0..N-1, and a few unlucky
seeds of PyTorch's own generator would weigh on the comparison of every arm alike. The batches stay paired
(the shared order of seed 0..N-1 for every arm), so only the weights' source and seed differ. Those runs go to
init-<recipe>-<dataset>-independent.json.

    lenet-repro init-study [--seeds 20] [--dataset mnist] [--arms numpy-pcg64,torch] [--out docs/studies] [--limit N]
                           [--independent] [--threads T]

Each run records the threads it trained with (`--threads`, else OMP_NUM_THREADS, else every core): two jobs that
share the machine should take one each.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backends import baseline, frameworks
from common.arguments import name_list
from common.init import initial_weights
from experiments.analysis import stats
from experiments.studies.arms import (
    ArmsConfig,
    add_arms_arguments,
    arm_line,
    by_arm,
    difference_text,
    run_arms,
    train_and_test,
)

PCG64 = "numpy-pcg64"  # the arm whose weights are NumPy's PCG64 draw of the spec's distribution (not the NumPy backend)
WEIGHT_SEED_STRIDE = 1_000_000
PLATEAU_GAP = 0.05  # an epoch whose mean training loss is within this of ln(classes) is still on the plateau


def arms() -> tuple[str, ...]:
    """Where the initial weights can come from: NumPy's PCG64 draw, or any registered framework's initialisers."""
    return (PCG64, *frameworks())


def weight_seed(arm: str, seed: int, independent: bool) -> int:
    """The seed an arm's initial weights are drawn from: the run's seed, or (independent) the arm's own."""
    return seed + WEIGHT_SEED_STRIDE * (1 + arms().index(arm)) if independent else seed


def train_arm(recipe_name: str, dataset: str, seed: int, arm: str, limit: int | None = None,
              independent: bool = False) -> dict:
    """Train one (seed, arm) with the shared batch order of `seed` in the baseline framework (the registry's; its
    own initialisers are its arm); returns the final test accuracy and loss."""
    from backends import load_backend
    from common import spec
    from common.batches import epoch_order
    from experiments.running.runs import prepare_data

    trainer = baseline()
    backend = load_backend(trainer)
    recipe = spec.get_recipe(recipe_name)
    drawn = weight_seed(arm, seed, independent)
    model = backend.build_model(recipe, "cpu", seed=drawn)  # the trainer's own initialisers, seeded
    if arm == PCG64:
        backend.set_weights(model, initial_weights(recipe, drawn, source="numpy-pcg64"))
    elif arm != trainer:  # another framework's own initialisers for the seed, as its native mode draws them
        other = load_backend(arm)
        backend.set_weights(model, other.get_weights(other.build_model(recipe, "cpu", seed=drawn)))
    data = prepare_data(dataset, recipe, limit)
    order = lambda epoch: epoch_order(seed, epoch, len(data.train_labels), recipe.shuffle)  # noqa: E731
    return {"weight_seed": drawn, **train_and_test(backend, model, data, recipe.epochs, order)}


def default_arms() -> tuple[str, ...]:
    return (PCG64, baseline())


def study(path: Path, recipe: str, dataset: str, seeds: int, limit: int | None,
          arms: tuple[str, ...] | None = None, independent: bool = False) -> dict:
    """Run the missing (seed, arm) pairs, seed by seed so the arms stay balanced; save after each."""
    header = {"recipe": recipe, "dataset": dataset, "limit": limit, "independent": independent}
    return run_arms(path, header, seeds, arms or default_arms(),
                    lambda seed, arm: train_arm(recipe, dataset, seed, arm, limit, independent))  # fmt: skip


def plateau_epochs(run: dict, classes: int = 10) -> int | None:
    """How many epochs a run spent on the plateau before it left it: the leading epochs whose mean training loss
    stays within PLATEAU_GAP of ln(classes), the loss of a uniform guess (all of them if it never left). None for
    a run recorded before the epochs' losses were."""
    losses = run.get("epoch_losses")
    if not losses:
        return None
    return next((k for k, loss in enumerate(losses) if loss < math.log(classes) - PLATEAU_GAP), len(losses))


def _plateau_lines(results: dict) -> list[str]:
    """Epochs on the plateau per arm (median, range, mean), torch against each other arm and against the others
    pooled by the rank test, and how closely the final accuracy follows the count over all runs (Spearman)."""
    on_plateau = by_arm(results, plateau_epochs)
    base = baseline()
    if base not in on_plateau or len(on_plateau) < 2:
        return []
    lines = [f"epochs on the plateau (training loss within {PLATEAU_GAP} of ln 10, a uniform guess's):"]
    width = max(len(arm) for arm in on_plateau)
    for arm, counts in on_plateau.items():
        lines.append(f"  {arm:<{width}} median {np.median(counts):g}, range {min(counts):g}-{max(counts):g}, "
                     f"mean {np.mean(counts):.2f} (n={len(counts)})")  # fmt: skip
    others = [arm for arm in on_plateau if arm != base]
    groups = [(arm, on_plateau[arm]) for arm in others]
    if len(others) > 1:
        groups.append(("the others pooled", [v for arm in others for v in on_plateau[arm]]))
    for name, counts in groups:
        lines.append(f"  {base} v {name}: Mann-Whitney p = {stats.rank_test(counts, on_plateau[base]):.2g}")
    recorded = [(n, r["test_accuracy"]) for r in results["runs"] if (n := plateau_epochs(r)) is not None]
    rho, p = stats.rank_correlation([n for n, _ in recorded], [accuracy for _, accuracy in recorded])
    lines.append(f"  epochs on the plateau v final test accuracy, all {len(recorded)} runs: Spearman rho = {rho:.2f}, "
                 f"p = {p:.2g}")  # fmt: skip
    return lines


def _versus_baseline(name: str, other: list[float], base: list[float], percent: bool) -> str:
    """One Welch comparison, baseline − other: in percentage points with the verdict (accuracy), or as is (loss). The
    accuracy also gets the rank test: a run that never leaves the plateau ends near 10%, and one such run can widen
    an arm's standard deviation threefold and decide Welch's test alone; the ranks see it as one low run."""
    c = stats.welch(other, base)
    text = f"  {baseline()} − {name}: {difference_text(c, percent)}, Welch p = {c.p:.2g}"
    if not percent:
        return text
    return (text + f", {c.verdict}; detectable at 80% power: {stats.detectable_difference(other, base) * 100:.2f} pp"
            f"; Mann-Whitney p = {stats.rank_test(other, base):.2g}")  # fmt: skip


def summary(results: dict) -> str:
    """Each arm as mean ± std (n) with its 95% interval; the baseline against each other arm and against all the other
    generators pooled, on the final test accuracy and (where recorded) the first epoch's mean training loss and the
    epochs spent on the plateau."""
    finals = by_arm(results, lambda r: r["test_accuracy"])
    first_epoch = by_arm(results, lambda r: r["epoch_losses"][0] if r.get("epoch_losses") else None)
    lines = [f"{results['recipe']} on {results['dataset']}, same batches, initial weights from:"]
    for arm, values in finals.items():
        line = arm_line(arm, values, 6)
        if arm in first_epoch:
            e = stats.summarize(first_epoch[arm])
            line += f"; first-epoch loss {e.mean:.4f} ± {e.std:.4f}"
        lines.append(line)
    base = baseline()
    others = [arm for arm in finals if arm != base]
    if base not in finals or not others:
        return "\n".join(lines)
    for measure, grouped, percent in (("final test accuracy", finals, True), ("first-epoch loss", first_epoch, False)):
        if base not in grouped:
            continue
        lines.append(f"{measure}:")
        present = [arm for arm in others if arm in grouped]
        for other in present:
            lines.append(_versus_baseline(other, grouped[other], grouped[base], percent))
        if len(present) > 1:
            pooled = [v for arm in present for v in grouped[arm]]
            lines.append(_versus_baseline("the others pooled", pooled, grouped[base], percent))
            if percent:  # the verdicts above are each at 5%; several arms against one are several tests
                lines.append(f"  ({len(present)} arms against {base}: one of them differs after Bonferroni only "
                             f"at p < {stats.ALPHA / len(present):.3g}; the pooled test is one test)")  # fmt: skip
    return "\n".join(lines + _plateau_lines(results))


NAME = "init-study"
HELP = "the crossed initialisation study (same batches, weights from several generators)"


@dataclass(frozen=True)
class Config(ArmsConfig):
    seeds: int = 20
    recipe: str = "seed-torch"
    independent: bool = False  # each arm's weights from its own seeds (batches stay paired)
    arms: tuple[str, ...] | None = None  # None: default_arms()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_arms_arguments(parser, Config())
    parser.add_argument("--independent", action="store_true",
                        help="draw each arm's weights from its own seeds (batches stay paired)")
    parser.add_argument("--arms", type=name_list("arm", arms),
                        help="comma-separated: numpy-pcg64 (NumPy's PCG64 draw of the spec's distribution) or a "
                        "registered framework (its own initialisers); default: numpy-pcg64 and the baseline "
                        "framework")  # fmt: skip


def run(config: Config) -> int:
    """`lenet-repro init-study`: run the missing (seed, arm) pairs, then print the comparison."""
    suffix = (f"-limit{config.limit}" if config.limit else "") + ("-independent" if config.independent else "")
    path = Path(config.out) / f"init-{config.recipe}-{config.dataset}{suffix}.json"
    print(summary(study(path, config.recipe, config.dataset, config.seeds, config.limit, config.arms,
                        config.independent)))  # fmt: skip
    return 0

