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


def _table(lines: list[str], header: str) -> list[str]:
    """The Markdown table that starts with `header` (the header row included)."""
    start = next((i for i, line in enumerate(lines) if line.startswith(header)), None)
    assert start is not None, f"no table starting with {header!r}"
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return lines[start:end]


def test_readme_results_table_is_the_committed_report_table():
    report = PUBLISHED / "report.md"
    if not report.exists():
        pytest.skip(f"no published report under {PUBLISHED} yet")
    header = "| recipe | dataset | PyTorch test acc |"
    readme = (PUBLISHED.parent.parent / "README.md").read_text().splitlines()
    assert _table(readme, header) == _table(report.read_text().splitlines(), header), (
        "README.md's results table differs from the first table of docs/results/report.md: copy it over"
    )


def test_docs_fidelity_table_is_the_committed_report_table():
    report = PUBLISHED / "report.md"
    header = "| recipe | dataset | run by |"
    if not report.exists() or header not in report.read_text():
        pytest.skip(f"no published fidelity table under {PUBLISHED} yet")
    fidelity = (PUBLISHED.parent / "fidelity.md").read_text().splitlines()
    assert _table(fidelity, header) == _table(report.read_text().splitlines(), header), (
        "docs/fidelity.md's fidelity table differs from the one in docs/results/report.md: copy it over"
    )
