"""Do the generators draw PyTorch's initial distribution alike beyond its marginals? The weights half of the
crossed initialisation study (issue: "MXNet native seed-torch: the one 'no'").

For many seeds, each source draws the recipe's initial weights: NumPy's PCG64 draw of the spec's distribution
(`common.init`, source "numpy-pcg64"), and each registered framework's own initialisers (`build_model(seed=s)`,
as its native mode draws them). Per layer and seed it measures what a trained outcome could depend on beyond the
per-entry marginals the conformance suite checks: the spread of the weights, the largest singular value and the
stable rank of the weight matrix (out x fan-in), how unequal the rows' norms are, and how the bias goes with the
row (the correlation of b_i with the sum of row i). Each statistic of each source is then compared with
PyTorch's own draws by Welch's t-test over the seeds, Bonferroni-corrected for the number of comparisons.

    lenet-repro init-weights [--seeds 200] [--recipe seed-torch] [--sources numpy-pcg64,torch,mxnet,jax,tensorflow]
                             [--out docs/studies]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backends import baseline, frameworks
from common import seal, spec
from common.arguments import choice, name_list, positive_int
from common.init import initial_weights
from experiments.analysis import stats

PCG64 = "numpy-pcg64"  # NumPy's PCG64 draw of the spec's distribution (not the NumPy backend)
STATISTICS = ("std", "sigma_max", "stable_rank", "row_norm_cv", "bias_row_corr")


def sources() -> tuple[str, ...]:
    return (PCG64, *frameworks())


def draw(source: str, recipe_name: str, seed: int) -> dict[str, np.ndarray]:
    """The recipe's initial weights for `seed` from one source."""
    from backends import load_backend
    from common import spec

    recipe = spec.get_recipe(recipe_name)
    if source == PCG64:
        return initial_weights(recipe, seed, source="numpy-pcg64")
    backend = load_backend(source)
    return backend.get_weights(backend.build_model(recipe, "cpu", seed=seed))


def layer_statistics(weights: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per weight layer: the statistics named in STATISTICS."""
    out = {}
    for name in sorted(n for n in weights if n.endswith(".weight")):
        layer = name.removesuffix(".weight")
        w = weights[name].astype(np.float64).reshape(weights[name].shape[0], -1)  # out x fan-in
        singular = np.linalg.svd(w, compute_uv=False)
        rows = np.linalg.norm(w, axis=1)
        bias = weights.get(f"{layer}.bias")
        corr = float(np.corrcoef(bias.astype(np.float64), w.sum(axis=1))[0, 1]) if bias is not None and bias.std() > 0 \
            else 0.0  # fmt: skip
        out[layer] = {"std": float(w.std()), "sigma_max": float(singular[0]),
                      "stable_rank": float((singular**2).sum() / singular[0] ** 2),
                      "row_norm_cv": float(rows.std() / rows.mean()), "bias_row_corr": corr}  # fmt: skip
    return out


def measure(path: Path, recipe: str, seeds: int, chosen: tuple[str, ...]) -> dict:
    """Statistics for seeds 0..N-1 of every source (resumable: sources already measured are kept)."""
    results = seal.read_json(path, "study file") if path.exists() else {"recipe": recipe, "sources": {}}
    for source in chosen:
        have = results["sources"].get(source, [])
        for seed in range(len(have), seeds):
            have.append(layer_statistics(draw(source, recipe, seed)))
        results["sources"][source] = have
        seal.write_json(path, results, indent=None)
    return results


def comparison(results: dict, reference: str) -> list[dict]:
    """Each source's per-seed statistics against the reference's: Welch's t-test, Bonferroni over all tests."""
    rows = []
    base = results["sources"][reference]
    layers = list(base[0])
    others = [s for s in results["sources"] if s != reference]
    tests = len(others) * len(layers) * len(STATISTICS)
    for source in others:
        for layer in layers:
            for statistic in STATISTICS:
                a = [seed[layer][statistic] for seed in base]
                b = [seed[layer][statistic] for seed in results["sources"][source]]
                c = stats.welch(a, b)
                rows.append({"source": source, "layer": layer, "statistic": statistic, "reference": float(np.mean(a)),
                             "mean": float(np.mean(b)), "relative": (np.mean(b) - np.mean(a)) / abs(np.mean(a) or 1),
                             "p": c.p, "p_bonferroni": min(1.0, c.p * tests)})  # fmt: skip
    return rows


def summary(results: dict, reference: str | None = None) -> str:
    """Each source against the reference's own draws (default: the registry's baseline)."""
    reference = reference or baseline()
    rows = comparison(results, reference)
    n = len(results["sources"][reference])
    lines = [f"{results['recipe']}: initial weights of {n} seeds per source against {reference}'s own draws "
             f"(Welch's t-test per statistic, Bonferroni over {len(rows)} tests)"]  # fmt: skip
    for source in dict.fromkeys(r["source"] for r in rows):
        mine = [r for r in rows if r["source"] == source]
        worst = min(mine, key=lambda r: r["p"])
        below = [r for r in mine if r["p_bonferroni"] < 0.05]
        lines.append(f"  {source:<11} smallest p {worst['p']:.2g} ({worst['layer']} {worst['statistic']}: "
                     f"{worst['mean']:.4g} vs {worst['reference']:.4g}); {len(below)} of {len(mine)} differ after "
                     "Bonferroni" + "".join(f"\n      {r['layer']} {r['statistic']}: {r['mean']:.4g} vs "
                                             f"{r['reference']:.4g} (p {r['p']:.2g})" for r in below))  # fmt: skip
    return "\n".join(lines)


NAME = "init-weights"
HELP = "the initial weights each generator draws: spectra, row norms, bias/row relation, against PyTorch's own draws"


@dataclass(frozen=True)
class Config:
    seeds: int = 200
    recipe: str = "seed-torch"
    sources: tuple[str, ...] = ()  # empty: every source (sources())
    out: str = "docs/studies"  # the folder of the study's JSON file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=positive_int, default=Config.seeds)
    parser.add_argument("--recipe", default=Config.recipe, type=choice("recipe", lambda: spec.RECIPES))
    parser.add_argument("--sources", default=Config.sources, type=name_list("source", sources),
                        help="comma-separated: numpy-pcg64 (NumPy's PCG64 draw of the spec) and/or registered "
                        "frameworks "
                        "(default: all of them)")  # fmt: skip
    parser.add_argument("--out", default=Config.out, help="folder of the study's JSON file")


def run(config: Config) -> int:
    chosen = config.sources or sources()
    if baseline() not in chosen:
        chosen = (baseline(), *chosen)
    path = Path(config.out) / f"init-weights-{config.recipe}.json"
    print(summary(measure(path, config.recipe, config.seeds, chosen)))
    return 0
