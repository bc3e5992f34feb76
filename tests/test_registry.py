"""The registry's entries beyond the contract's implementations: the blog post's scripts as an entry of their own,
and what a plug-in declares as data (its stock initialisers, generator, kernel note, speed goal)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import backends
from common import init, spec
from common.errors import UserError


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """Register a module written to tmp_path (its source given by the test) as the plug-in `mine`."""

    def register(source: str) -> None:
        (tmp_path / "mine_lenet.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.setenv(backends.CHECK_ENV, "mine=mine_lenet")
        backends.registry.cache_clear()

    yield register
    monkeypatch.delenv(backends.CHECK_ENV, raising=False)
    backends.registry.cache_clear()
    init.SCHEMES.pop("mine-default", None)
    sys.modules.pop("mine_lenet", None)


def test_a_plugin_declares_its_own_stock_initialisers_as_data_and_takes_part_in_stock_mode(plugin):
    plugin('LABEL = "Mine"\nSTOCK_INIT = {"weights": "uniform", "bound": 0.05, "bias": "fan-in"}\n'
           'GENERATOR = "mine-philox"\nSPEED_GOAL = 4\nKERNEL_NOTE = "backends.kernel_notes:onednn"\n')  # fmt: skip
    entry = backends.info("mine")
    assert (entry.stock_init, entry.generator, entry.speed_goal) == ("mine-default", "mine-philox", 4.0)
    assert entry.kernel_note == "backends.kernel_notes:onednn"
    assert "mine" in backends.with_defaults()
    recipe = spec.get_recipe("d2l", {"init": "stock"})
    assert backends.init_scheme("mine", recipe) == "mine-default"
    shapes = spec.parameter_shapes(recipe)
    assert init.law("mine-default", shapes, "conv1.weight").bound == 0.05
    assert init.law("mine-default", shapes, "conv1.bias").bound == pytest.approx(1 / 5)  # fan_in 1 * 5 * 5


def test_a_plugin_may_name_a_scheme_the_project_knows(plugin):
    plugin('STOCK_INIT = "keras-default"\n')
    assert backends.info("mine").stock_init == "keras-default"


@pytest.mark.parametrize("declared", ['{"weights": "gaussian"}', '{"bound": "huge"}', '{"colour": "red"}', '"mine"'])
def test_a_stock_init_the_project_cannot_read_is_one_line(plugin, declared):
    plugin(f"STOCK_INIT = {declared}\n")
    with pytest.raises(UserError, match=r"^mine_lenet\.STOCK_INIT") as error:
        backends.registry()
    assert "\n" not in str(error.value)


def test_a_plugin_without_stock_initialisers_stays_out_of_stock_mode(plugin):
    plugin('LABEL = "Mine"\n')
    assert backends.info("mine").stock_init is None and "mine" not in backends.with_defaults()


def test_the_blog_posts_scripts_are_an_entry_that_trains_itself_in_native_mode():
    (script,) = backends.scripts()
    assert script in backends.run_names() and script not in backends.names()
    assert backends.default_mode(script) == "native"
    with pytest.raises(UserError, match="native mode only"):
        backends.check_mode(script, "shared")
    written = backends.recipes_for(script, spec.RECIPES)
    assert written and all(spec.get_recipe(r).script_backend for r in written)
    assert {backends.trained_by(script, spec.get_recipe(r)) for r in written} <= set(backends.frameworks())
    with pytest.raises(UserError, match="reproduces none of the blog post's scripts"):
        backends.trained_by(script, spec.get_recipe(next(r for r in spec.RECIPES if r not in written)))
    with pytest.raises(UserError, match="unknown backend"):
        backends.load_backend(script)


def test_tables_and_legends_list_frameworks_then_scripts_then_the_reference_then_strangers():
    present = {*backends.names(), *backends.scripts(), "somebody-elses"}
    ordered = backends.display_order(present)
    roles = [backends.registry()[n].role if n in backends.registry() else "?" for n in ordered]
    assert roles == sorted(roles, key=["framework", "script", "reference", "?"].index)
    assert ordered[-1] == "somebody-elses"


@pytest.mark.integration  # trains a run to its end
def test_a_plugin_with_stock_initialisers_trains_in_stock_mode(plugin, tmp_path):
    """A copy of the NumPy reference made a framework with defaults of its own (a truncated normal, as Flax's),
    drawn with them in stock mode, trained through the harness, its record a stock-mode run."""
    import importlib.util
    import pathlib

    from common.results import RunKey, RunStore
    from experiments.running.runs import train_run

    source = pathlib.Path(importlib.util.find_spec(backends.info(backends.REFERENCE).module).origin).read_text()
    native = '''    init_scheme(NAME, model.recipe)
    set_weights(model, initial_weights(model.recipe, seed))'''
    assert native in source
    own = '''    scheme = init_scheme(NAME, model.recipe)
    set_weights(model, initial_weights(model.recipe, seed, init=scheme))'''
    mine = source.replace('NAME = "numpy"', 'NAME = "mine"').replace(native, own)
    defaults = '{"weights": "truncated-normal", "bound": "lecun", "bias": "zero"}'
    plugin(f'{mine}\nROLE = "framework"\nSTOCK_INIT = {defaults}\n')
    record = train_run(RunKey("mine", "mnist", "d2l", 0, "stock", 256, 1), RunStore(tmp_path / "R"), "cpu")
    assert record["status"] == "complete" and record["mode"] == "stock" and record["backend"] == "mine"
    recipe = spec.get_recipe("d2l", {"init": "stock"})
    drawn = backends.load_backend("mine").build_model(recipe, "cpu", seed=0).params["conv1.weight"]
    assert np.abs(drawn).max() <= init.weight_bound("mine-default", drawn.shape) and drawn.std() > 0
    assert not (backends.load_backend("mine").build_model(recipe, "cpu", seed=0).params["conv1.bias"]).any()
