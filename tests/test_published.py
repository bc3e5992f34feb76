"""The committed report must be exactly what `make compare` builds from the committed runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from common.results import RunStore
from experiments.analysis.report import DOCUMENTED_TABLES, table_span, write_report

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
    span = table_span(lines, header)
    assert span is not None, f"no table starting with {header!r}"
    return lines[span[0] : span[1]]


def test_readme_results_table_is_the_committed_report_table():
    report = PUBLISHED / "report.md"
    if not report.exists():
        pytest.skip(f"no published report under {PUBLISHED} yet")
    header = DOCUMENTED_TABLES[0]
    readme = (PUBLISHED.parent.parent / "README.md").read_text().splitlines()
    assert _table(readme, header) == _table(report.read_text().splitlines(), header), (
        "README.md's results table differs from the first table of docs/results/report.md: "
        "`lenet-repro compare --results docs/results --sync README.md` copies it over"
    )


def test_docs_fidelity_table_is_the_committed_report_table():
    report = PUBLISHED / "report.md"
    header = DOCUMENTED_TABLES[1]
    if not report.exists() or header not in report.read_text():
        pytest.skip(f"no published fidelity table under {PUBLISHED} yet")
    fidelity = (PUBLISHED.parent / "fidelity.md").read_text().splitlines()
    assert _table(fidelity, header) == _table(report.read_text().splitlines(), header), (
        "docs/fidelity.md's fidelity table differs from the one in docs/results/report.md: "
        "`lenet-repro compare --results docs/results --sync docs/fidelity.md` copies it over"
    )


def test_sync_replaces_only_the_documented_tables(tmp_path):
    from experiments.analysis.report import sync_tables

    report = tmp_path / "report.md"
    report.write_text("# Report\n\n| recipe | dataset | PyTorch test acc |\n|---|---|---|\n| d2l | mnist | 98% |\n"
                      "| seed-torch | mnist | 80% |\n\ntext\n\n"
                      "| recipe | dataset | run by |\n|---|---|---|\n| a | b | c |\n")
    document = tmp_path / "README.md"
    document.write_text("intro\n\n| recipe | dataset | PyTorch test acc |\n|---|---|---|\n| d2l | mnist | 97% |\n\n"
                        "| other | table |\n|---|---|\n\nend\n")
    assert sync_tables(report, document) == [DOCUMENTED_TABLES[0]]
    assert document.read_text() == ("intro\n\n| recipe | dataset | PyTorch test acc |\n|---|---|---|\n"
                                    "| d2l | mnist | 98% |\n| seed-torch | mnist | 80% |\n\n"
                                    "| other | table |\n|---|---|\n\nend\n")
    before = document.stat().st_mtime_ns
    assert sync_tables(report, document) == [DOCUMENTED_TABLES[0]] and document.stat().st_mtime_ns == before
    plain = tmp_path / "plain.md"
    plain.write_text("no tables\n")
    assert sync_tables(report, plain) == [] and plain.read_text() == "no tables\n"


def test_teaching_text_quotes_every_study_it_names_as_committed():
    """Each study file docs/teaching.md names (`docs/studies/<name>.json`, globs allowed) is quoted as it stands:
    every arm's final test accuracy, mean ± std in percent, appears in the text."""
    import json
    import re

    from experiments.analysis import stats
    from experiments.studies.arms import by_arm

    docs = PUBLISHED.parent
    text = (docs / "teaching.md").read_text()
    names = sorted(set(re.findall(r"docs/studies/([\w*.-]+\.json)", text)))
    studies = [path for name in names for path in sorted((docs / "studies").glob(name))]
    assert studies, "docs/teaching.md names no study file"
    for path in studies:
        runs = json.loads(path.read_text()).get("runs")
        if runs is None:  # init-weights: statistics of weights, no trained arms
            continue
        for arm, values in by_arm({"runs": runs}, lambda run: run["test_accuracy"]).items():
            s = stats.summarize(values)
            quoted = f"{s.mean * 100:.2f}% ± {s.std * 100:.2f}"
            assert quoted in text, (
                f"docs/teaching.md does not quote {path.name}'s {arm} arm as it stands ({quoted}, n={s.n})"
            )
