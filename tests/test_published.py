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


# Which of the report's tables each document carries, copied by `compare --sync` (the Makefile's SYNCED list).
CARRIED = {"README.md": DOCUMENTED_TABLES[0:1] + DOCUMENTED_TABLES[2:4], "docs/fidelity.md": DOCUMENTED_TABLES[1:2],
           "docs/handout.md": DOCUMENTED_TABLES[2:3], "docs/teaching.md": DOCUMENTED_TABLES[4:5]}  # fmt: skip


@pytest.mark.parametrize("document", sorted(CARRIED))
def test_each_documented_table_is_the_committed_reports(document):
    report = PUBLISHED / "report.md"
    if not report.exists():
        pytest.skip(f"no published report under {PUBLISHED} yet")
    source = report.read_text().splitlines()
    lines = (PUBLISHED.parent.parent / document).read_text().splitlines()
    for header in CARRIED[document]:
        assert _table(lines, header) == _table(source, header), (
            f"{document}'s table {header!r} differs from docs/results/report.md's: "
            f"`lenet-repro compare --results docs/results --sync {document}` copies it over"
        )


def test_every_document_carrying_a_report_table_is_synced_by_make():
    """make publish's --sync list names every document a table of the report is copied into, and only those."""
    import re

    makefile = (PUBLISHED.parent.parent / "Makefile").read_text()
    synced = set(re.search(r"^SYNCED \?= (.+)$", makefile, flags=re.MULTILINE).group(1).split(","))
    assert synced == set(CARRIED)


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


# "mean% ± std"; its number of seeds is the first "(n=k)" after it in the same table cell or sentence
# ("83.00% ± 5.42 / 83.00% ± 5.41 (n=10)"), 3 where there is none (as docs/teaching.md says).
QUOTED_ACCURACY = r"(\d+\.\d+)% ± (\d+\.\d+)"
SEEDS_AFTER = r"^[^|;]*?\(n=(\d+)\)"


def _committed_groups() -> set[tuple[str, str, int]]:
    """Every (mean, std, n) a text may quote, formatted as the report formats them: the final test accuracy of
    each group of complete committed runs (mode, dataset, recipe, backend) or study arm, over any run of
    consecutive seeds (all of them, "seeds 0-2", "seeds 20-39")."""
    import json

    from experiments.analysis import stats
    from experiments.studies.arms import by_arm

    groups: dict[tuple, list[tuple[int, float]]] = {}
    for record in RunStore(PUBLISHED).records():
        if record["epochs"] and len(record["epochs"]) == record.get("epochs_planned", len(record["epochs"])):
            key = (record.get("mode"), record["dataset"], record["recipe"], record["backend"])
            groups.setdefault(key, []).append((record["seed"], record["epochs"][-1]["test_accuracy"]))
    series = [[acc for _, acc in sorted(runs)] for runs in groups.values()]
    for path in sorted((PUBLISHED.parent / "studies").glob("*.json")):
        runs = json.loads(path.read_text()).get("runs")
        if runs is not None:
            series += list(by_arm({"runs": runs}, lambda run: run["test_accuracy"]).values())
    known = set()
    for values in series:
        for first in range(len(values) - 1):
            for last in range(first + 2, len(values) + 1):
                s = stats.summarize(values[first:last])
                known.add((f"{s.mean * 100:.2f}", f"{s.std * 100:.2f}", s.n))
    return known


def test_every_quoted_accuracy_is_a_group_of_committed_runs():
    """Each "mean% ± std (n=k)" in README.md and docs/*.md is the final test accuracy of a group of committed runs
    or of a study's arm (n=3 where a text gives no n, as docs/teaching.md says)."""
    import re

    known = _committed_groups()
    if not known:
        pytest.skip(f"no published runs under {PUBLISHED} yet")
    root = PUBLISHED.parent.parent
    stale = []
    for document in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        # paragraph by paragraph (prose wraps a figure and its "(n=k)" onto two lines), table rows one by one
        lines = document.read_text().splitlines()
        blocks, start = [], 0
        for i, text in enumerate(lines + [""]):
            if not text.strip() or text.startswith("|"):
                if start < i:
                    blocks.append((start + 1, " ".join(lines[start:i])))
                if text.startswith("|"):
                    blocks.append((i + 1, text))
                start = i + 1
        for number, line in blocks:
            for match in re.finditer(QUOTED_ACCURACY, line):
                seeds = re.match(SEEDS_AFTER, line[match.end() :].replace(". ", "; "))
                mean, std, n = match.group(1), match.group(2), int(seeds.group(1)) if seeds else 3
                if (mean, std, n) not in known:
                    stale.append(f"{document.relative_to(root)}:{number}: {match.group(0)}")
    assert not stale, "figures that no group of committed runs gives:\n" + "\n".join(stale)


def test_teaching_text_quotes_the_oracle_as_measured():
    """Each error figure ("1.2e-03") of the oracle paragraph in docs/teaching.md is a cell of the report's oracle
    table, which the test suite ties to docs/results/oracle.json."""
    import re

    report = (PUBLISHED / "report.md").read_text()
    if "## The oracle" not in report:
        pytest.skip("no oracle figures published yet")
    table = report[report.index("## The oracle") :].split("\n## ")[0]
    cells = set(re.findall(r"\d\.\de-\d\d", table))
    text = (PUBLISHED.parent / "teaching.md").read_text()
    paragraph = text[text.index("**One batch, same weights** [oracle]") :].split("\n\n")[0]
    quoted = re.findall(r"\d\.\de-\d\d", paragraph)
    assert quoted, "the oracle paragraph quotes no figure"
    assert not sorted(set(quoted) - cells), f"not in the report's oracle table: {sorted(set(quoted) - cells)}"
