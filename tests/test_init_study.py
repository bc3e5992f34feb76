"""The crossed initialisation study: arms differ only in their initial weights, and the study resumes."""

from __future__ import annotations

import json
import math

import pytest

from experiments.studies import init_study
from tests.test_seed_scripts import require_real


@pytest.mark.slow
def test_study_runs_both_arms_seed_by_seed_and_resumes(tmp_path, capsys):
    require_real("mnist")
    path = tmp_path / "init.json"
    first = init_study.study(path, "seed-torch", "mnist", 1, limit=128)
    assert [(r["seed"], r["arm"]) for r in first["runs"]] == [(0, "numpy-pcg64"), (0, "torch")]
    numpy_run, torch_run = first["runs"]
    assert numpy_run["test_accuracy"] != torch_run["test_accuracy"] or numpy_run["test_loss"] != torch_run["test_loss"]
    saved = json.loads(path.read_text())
    assert saved["runs"] == first["runs"] and saved["limit"] == 128
    second = init_study.study(path, "seed-torch", "mnist", 2, limit=128)  # only seed 1 is new
    assert [(r["seed"], r["arm"]) for r in second["runs"]][:2] == [(0, "numpy-pcg64"), (0, "torch")]
    assert second["runs"][:2] == first["runs"] and len(second["runs"]) == 4
    assert all(len(r["epoch_losses"]) == 10 and all(v > 0 for v in r["epoch_losses"]) for r in second["runs"])
    text = init_study.summary(second)
    assert "numpy-pcg64" in text and "torch − numpy-pcg64" in text and "Welch p" in text and "first-epoch loss" in text


def test_the_summary_pools_every_other_generator_against_pytorchs_own():
    runs = [{"seed": s, "arm": arm, "test_accuracy": acc + 0.001 * s, "epoch_losses": [loss + 0.01 * s]}
            for s in range(5)
            for arm, acc, loss in (("numpy-pcg64", 0.70, 2.0), ("torch", 0.80, 1.5), ("mxnet", 0.70, 2.0))]
    text = init_study.summary({"recipe": "seed-torch", "dataset": "mnist", "runs": runs})
    assert "torch − the others pooled: +10.00 pp" in text and "first-epoch loss 1.5200" in text
    assert "torch − the others pooled: -0.5000" in text  # the loss comparison, torch 0.5 lower
    assert "2 arms against torch: one of them differs after Bonferroni only at p < 0.025" in text
    old = [{k: v for k, v in r.items() if k != "epoch_losses"} for r in runs]  # a study from before the losses
    assert "first-epoch loss" not in init_study.summary({"recipe": "seed-torch", "dataset": "mnist", "runs": old})


def test_numpy_arm_draws_numpy_numbers_and_torch_arm_pytorch_numbers():
    import numpy as np

    from backends import load_backend
    from common import spec
    from common.init import bias_bound, initial_weights, weight_bound

    backend, recipe = load_backend("torch"), spec.get_recipe("seed-torch")
    native = backend.get_weights(backend.build_model(recipe, "cpu", seed=4))
    shared = initial_weights(recipe, 4, source="numpy-pcg64")
    assert set(native) == set(shared)
    for name in shared:  # same shapes, same bounds, different numbers
        assert native[name].shape == shared[name].shape and not np.array_equal(native[name], shared[name])
        weight = shared[name.replace(".bias", ".weight")].shape
        bound = weight_bound(recipe.init, weight) if name.endswith(".weight") else bias_bound(recipe.init, weight)
        for values in (native[name], shared[name]):
            assert np.abs(values).max() <= bound * (1 + 1e-6)


def test_independent_arms_draw_from_disjoint_seeds_and_keep_the_batches_paired():
    seeds = {arm: [init_study.weight_seed(arm, s, True) for s in range(40)] for arm in init_study.arms()}
    flat = [s for values in seeds.values() for s in values]
    assert len(set(flat)) == len(flat), "no two arms share a weight seed"
    assert all(init_study.weight_seed(arm, 7, False) == 7 for arm in init_study.arms())


@pytest.mark.slow
def test_an_independent_study_records_each_runs_weight_seed(tmp_path):
    require_real("mnist")
    results = init_study.study(tmp_path / "i.json", "seed-torch", "mnist", 1, limit=128, independent=True)
    assert results["independent"] is True
    assert [(r["seed"], r["weight_seed"]) for r in results["runs"]] == [
        (0, init_study.weight_seed("numpy-pcg64", 0, True)), (0, init_study.weight_seed("torch", 0, True))]


def test_layer_statistics_measure_the_matrix_not_just_its_entries():
    import numpy as np

    from experiments.studies import init_weights

    w = np.diag([3.0, 1.0, 1.0]).astype(np.float32)  # rows of norm 3, 1, 1; singular values 3, 1, 1
    got = init_weights.layer_statistics({"dense1.weight": w, "dense1.bias": np.array([3.0, 1.0, 1.0])})["dense1"]
    assert got["sigma_max"] == pytest.approx(3.0) and got["stable_rank"] == pytest.approx(11 / 9)
    assert got["row_norm_cv"] == pytest.approx(np.std([3, 1, 1]) / np.mean([3, 1, 1]))
    assert got["bias_row_corr"] == pytest.approx(1.0)  # bias i equals row i's sum


def test_the_weights_study_compares_each_source_with_pytorchs_draws(tmp_path):
    from experiments.studies import init_weights

    results = init_weights.measure(tmp_path / "w.json", "seed-torch", 5, ("torch", "numpy-pcg64"))
    assert len(results["sources"]["torch"]) == len(results["sources"]["numpy-pcg64"]) == 5
    rows = init_weights.comparison(results, "torch")
    assert {r["source"] for r in rows} == {"numpy-pcg64"} and len(rows) == 5 * len(init_weights.STATISTICS)
    assert all(0 <= r["p"] <= 1 for r in rows)
    assert "numpy-pcg64" in init_weights.summary(results) and "after Bonferroni" in init_weights.summary(results)


def test_epochs_on_the_plateau_count_the_leading_epochs_at_a_uniform_guesss_loss():
    flat = math.log(10)
    assert init_study.plateau_epochs({"epoch_losses": [flat, flat - 0.01, 2.1, 1.6]}) == 2
    assert init_study.plateau_epochs({"epoch_losses": [flat] * 3}) == 3  # never left: every epoch
    assert init_study.plateau_epochs({"epoch_losses": [1.9, flat]}) == 0  # left at once; a later rise is not a stay
    assert init_study.plateau_epochs({"test_accuracy": 0.9}) is None  # recorded before the losses were


def test_the_summary_compares_the_epochs_on_the_plateau_by_rank_and_ties_them_to_the_accuracy():
    flat = math.log(10)

    def run(seed: int, arm: str, stay: int) -> dict:
        return {"seed": seed, "arm": arm, "test_accuracy": 0.95 - 0.05 * stay,
                "epoch_losses": [flat] * stay + [1.7] * (10 - stay)}  # fmt: skip

    runs = [run(s, "torch", 2 + s % 2) for s in range(8)] + [run(s, "numpy-pcg64", 6 + s % 2) for s in range(8)]
    text = " ".join(init_study.summary({"recipe": "seed-torch", "dataset": "mnist", "runs": runs}).split())
    assert "torch median 2.5, range 2-3, mean 2.50 (n=8)" in text and "numpy-pcg64 median 6.5, range 6-7" in text
    p = float(text.split("torch v numpy-pcg64: Mann-Whitney p = ")[1].split()[0])
    assert p < 0.001  # every torch run left before every numpy run
    assert "all 16 runs: Spearman rho = -1.00" in text  # here the accuracy is the count's, exactly


def test_the_final_accuracy_is_also_compared_by_rank_so_one_run_stuck_on_the_plateau_cannot_decide_it():
    def run(seed: int, arm: str, accuracy: float) -> dict:
        return {"seed": seed, "arm": arm, "test_accuracy": accuracy, "epoch_losses": [1.7] * 10}

    # numpy's runs all rank above torch's but one never left the plateau (10%): Welch's mean sees a lower arm
    numpy = [0.80 + 0.001 * s for s in range(11)] + [0.10]
    runs = [run(s, "torch", 0.75 + 0.001 * s) for s in range(12)]
    runs += [run(s, "numpy-pcg64", a) for s, a in enumerate(numpy)]
    line = next(line for line in init_study.summary({"recipe": "seed-torch", "dataset": "mnist", "runs": runs})
                .splitlines() if line.startswith("  torch − numpy-pcg64:") and "pp" in line)  # fmt: skip
    welch_p = float(line.split("Welch p = ")[1].split(",")[0])
    rank_p = float(line.split("Mann-Whitney p = ")[1])
    assert welch_p > 0.5 and rank_p < 0.001  # 11 of 12 numpy runs beat every torch run: the ranks say so
