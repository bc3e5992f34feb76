"""The committed report must be exactly what `make compare` builds from the committed runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from common.results import RunStore
from experiments.analysis.report import write_report

PUBLISHED = Path(__file__).resolve().parent.parent / "docs" / "results"


@pytest.mark.slow
def test_committed_report_matches_committed_runs(tmp_path):
    store = RunStore(PUBLISHED)
    records = store.records()
    if not records:
        pytest.skip(f"no published runs under {PUBLISHED} yet")
    copy = tmp_path / "results"
    shutil.copytree(PUBLISHED, copy, ignore=shutil.ignore_patterns("report.*", "plots", ".checkpoints", "*.log"))
    write_report(RunStore(copy))
    for name in ("report.md", "report.csv"):
        committed = PUBLISHED / name
        assert committed.exists(), f"{committed} is missing: run `make publish` (or `make compare RESULTS={PUBLISHED}`)"
        assert committed.read_text() == (copy / name).read_text(), (
            f"{committed} no longer matches the runs it was built from: rebuild it with "
            f"`make compare RESULTS=docs/results` and commit it"
        )
    assert sorted(p.name for p in (PUBLISHED / "plots").glob("*.png")) == sorted(
        p.name for p in (copy / "plots").glob("*.png")
    )
