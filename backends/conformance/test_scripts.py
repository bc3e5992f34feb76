"""What applies to the blog post's scripts of the contract's items: they are registry entries that train themselves
(role "script"), so they have no contract functions to check, but they import as a backend does. `script imports`:
in a fresh interpreter of the environment that trains a recipe's script (the framework its recipe names), importing
the script loads no framework package of any other registered backend. (A script run's record is checked by
tests/test_reference_runs.py, which trains the scripts.)"""

from __future__ import annotations

import json

import pytest

from backends import info, names, recipes_for, trained_by
from backends.conformance import contract_item, loaded_in_fresh_interpreter, selected_scripts
from common import spec

CASES = [(name, recipe) for name in selected_scripts() for recipe in recipes_for(name, spec.RECIPES)]

# Run in the interpreter checked: import the entry's package, then the script of the recipe; print the forbidden
# packages that were loaded.
_IMPORTS = """
import importlib, json, sys
forbidden, package, recipe = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
importlib.import_module(importlib.import_module(package).SCRIPTS[recipe])
print(json.dumps(sorted(p for p in forbidden if p in sys.modules)))
"""


@pytest.mark.slow  # a fresh interpreter importing the framework: seconds each
@pytest.mark.parametrize(("name", "recipe"), CASES)
def test_script_imports(name, recipe):
    framework = trained_by(name, spec.get_recipe(recipe))
    own = set(info(framework).packages)
    forbidden = sorted({p for other in names() for p in info(other).packages} - own)
    with contract_item("script imports", name, recipe):
        loaded = loaded_in_fresh_interpreter(framework, _IMPORTS, json.dumps(forbidden), info(name).module, recipe)
        assert not loaded, f"importing the {recipe} script loaded {', '.join(loaded)}: it imports only its framework"
