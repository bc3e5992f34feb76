"""The crossed initialisation study: arms differ only in their initial weights, and the study resumes."""

from __future__ import annotations

import json

import pytest

from experiments.studies import init_study
from tests.test_seed_scripts import require_real


@pytest.mark.slow
def test_study_runs_both_arms_seed_by_seed_and_resumes(tmp_path, capsys):
    require_real("mnist")
    path = tmp_path / "init.json"
    first = init_study.study(path, "seed-torch", "mnist", 1, limit=128)
    assert [(r["seed"], r["arm"]) for r in first["runs"]] == [(0, "numpy"), (0, "torch")]
    numpy_run, torch_run = first["runs"]
    assert numpy_run["test_accuracy"] != torch_run["test_accuracy"] or numpy_run["test_loss"] != torch_run["test_loss"]
    saved = json.loads(path.read_text())
    assert saved["runs"] == first["runs"] and saved["limit"] == 128
    second = init_study.study(path, "seed-torch", "mnist", 2, limit=128)  # only seed 1 is new
    assert [(r["seed"], r["arm"]) for r in second["runs"]][:2] == [(0, "numpy"), (0, "torch")]
    assert second["runs"][:2] == first["runs"] and len(second["runs"]) == 4
    text = init_study.summary(second)
    assert "numpy" in text and "torch − numpy" in text and "Welch p" in text


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
        (0, init_study.weight_seed("numpy", 0, True)), (0, init_study.weight_seed("torch", 0, True))]
