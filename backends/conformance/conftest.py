"""The conformance suite's pytest settings: the `slow` marker (the suite also runs outside this project's
configuration, with `--pyargs`), the choice of backends (LENET_REPRO_BACKENDS) checked up front, and the oracle's
figures printed at the end of the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends import conformance
from common.errors import UserError


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: longer integration tests on real data subsets (`-m 'not slow'` leaves them out)"
    )
    try:
        conformance.selected()
    except UserError as error:
        raise pytest.UsageError(str(error)) from None


def pytest_collection_modifyitems(config, items):
    """A backend's declared expected failures (its module's EXPECTED_FAILURES: test name -> why) become strict
    xfails of its items: they run, and one that passes after all is reported."""
    from backends import info, module_constants, registry

    here = Path(__file__).resolve().parent
    for item in items:
        name = getattr(getattr(item, "callspec", None), "params", {}).get("name")
        if here not in Path(item.path).resolve().parents or not isinstance(name, str) or name not in registry():
            continue
        expected = module_constants(info(name).module).get("EXPECTED_FAILURES") or {}
        if item.originalname in expected:
            item.add_marker(pytest.mark.xfail(strict=True, reason=str(expected[item.originalname])))


def pytest_terminal_summary(terminalreporter):
    from backends.oracle import oracle_markdown

    figures = conformance.measured_figures()
    if figures:
        terminalreporter.section("oracle: largest relative error against the float64 NumPy reference")
        for line in oracle_markdown(figures).splitlines():
            terminalreporter.write_line(line)
