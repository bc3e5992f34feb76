"""check_backend: the conformance suite on a module no registry lists, its declared expected failures reported."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # it runs the conformance suite in a child process

REPO = Path(__file__).resolve().parent.parent


def test_check_backend_runs_every_item_on_an_unregistered_module(tmp_path, monkeypatch):
    """A copy of the NumPy reference, renamed, under development: its select_device broken on purpose and declared
    an expected failure. Every item runs on it; the broken one is "xfailed", the rest pass or skip."""
    import backends
    from backends.conformance.check import check_backend

    reference = backends.info(backends.REFERENCE).module  # the float64 reference's module, as the registry says
    source = (REPO / (reference.replace(".", "/") + ".py")).read_text()
    broken = source.replace('    if device not in ("auto", "cpu", "gpu"):', '    if False:', 1)
    assert broken != source
    broken += '\nEXPECTED_FAILURES = {"test_devices": "select_device accepts any name, on purpose"}\n'
    (tmp_path / "draft_lenet.py").write_text(broken)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{REPO}")
    results = check_backend("draft_lenet", name="draft", fast=True)
    assert results and all("draft" in item for item in results), list(results)[:3]
    assert {item for item, outcome in results.items() if outcome == "xfailed"} == {
        item for item in results if item.startswith("test_devices")}
    assert set(results.values()) <= {"passed", "skipped", "xfailed"}, {k: v for k, v in results.items()
                                                                      if v == "failed"}  # fmt: skip


def test_a_checked_name_that_a_backend_has_is_one_line(monkeypatch):
    import backends
    from common.errors import UserError

    monkeypatch.setenv(backends.CHECK_ENV, f"{backends.baseline()}={backends.info(backends.REFERENCE).module}")
    backends.registry.cache_clear()
    try:
        with pytest.raises(UserError, match="NAME=MODULE with a name no registered backend has"):
            backends.registry()
    finally:
        monkeypatch.delenv(backends.CHECK_ENV)
        backends.registry.cache_clear()
