"""The documentation speaks of the project as it is: no words about how it came to be."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Phrases that tell the story of the work instead of the project: who asked, when it was done, what it used to
# say. A text states what is and what was measured; the history is in git.
HISTORY = [
    r"\bthis (task|session)\b", r"\b(earlier|previous|later|next) sessions?\b", r"\bthe issue('s)?\b",
    r"\bhere today\b", r"\bwhile the suite was being written\b", r"\bfirst publication\b", r"\bhas since\b",
    r"\b(days|weeks) (earlier|later|ago)\b", r"\blanded so far\b", r"\b(was|were) (not )?lent\b",
    r"\btarget \d+(\.\d+)?x\b", r"\bnow (replays|pins|runs|uses)\b", r"\bat the time\b", r"\bso far\b",
]


def history_words(text: str) -> list[str]:
    """The phrases of HISTORY in `text`, as found."""
    return [m.group(0) for pattern in HISTORY for m in re.finditer(pattern, text, flags=re.IGNORECASE)]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_words_about_how_the_project_was_made(document):
    found = [f"{document.relative_to(ROOT)}:{n}: {word!r}" for n, line in
             enumerate(document.read_text().splitlines(), 1) for word in history_words(line)]  # fmt: skip
    assert not found, "words about how the project was made, not about the project:\n" + "\n".join(found)


def test_the_history_check_catches_what_it_names():
    assert sorted(history_words("Four days earlier the same bench, while the suite was being written")) == [
        "days earlier", "while the suite was being written"]
    assert sorted(history_words("The first publication reported 76%; this task was not lent a GPU machine")) == [
        "first publication", "this task", "was not lent"]
    assert history_words("Each record names the kernels; the blog post's text explains 16*5*5.") == []


# ---- the pages rendered from their templates (docs/src/, experiments/docs.py) ----

TEMPLATES = sorted((ROOT / "docs" / "src").glob("*.md.j2"))


def test_every_page_has_a_template():
    """README.md and every docs/*.md page are rendered from docs/src/: none is written by hand."""
    from experiments.docs import page_of

    assert {page_of(t) for t in TEMPLATES} == set(DOCUMENTS)


@pytest.fixture(scope="module")
def values():
    from experiments.docs import context

    return context()


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_each_committed_page_is_its_templates_render(template, values):
    from experiments.docs import page_of, render

    page = page_of(template)
    assert page.read_text() == render(template, values), (
        f"{page.relative_to(ROOT)} differs from what {template.relative_to(ROOT)} renders from the committed "
        "records: `make docs` writes it (edit the template, not the page)")


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_no_template_holds_a_figure_typed_by_hand(template):
    from experiments.docs import typed_figures

    found = typed_figures(template.read_text())
    assert not found, f"{template.name} types figures by hand (make each a placeholder): {found}"


def test_the_typed_figure_check_catches_what_it_names():
    from experiments.docs import typed_figures

    text = ("PyTorch ends at 83.00% ± 5.42 (n=10), +0.09 [-0.25, +0.43], 2.9x faster, in 57 s, over 10 seeds; "
            "a run of 24 minutes")
    assert typed_figures(text) == ["83.00%", "± 5", "n=1", "[-0.25,", "2.9x", "57 s", "10 seeds", "24 minutes"]
    assert typed_figures("28x28 images, lr 0.9, batch 256, `make test` in {{ timings['test'] }}") == []
    assert typed_figures("```\nbench: 1.96x\n```\nthe block above") == []


def test_a_template_without_its_figures_is_one_line_at_render(tmp_path, monkeypatch):
    """A timing the timings file lacks is a one-line error naming the command that measures it."""
    from common.errors import UserError
    from experiments import docs

    monkeypatch.setattr(docs, "TIMINGS", tmp_path / "timings.json")
    with pytest.raises(UserError, match="lenet-repro timings --measure demo"):
        docs.Timings.load(tmp_path / "none.json")["demo"]


def test_docs_check_says_which_pages_differ(tmp_path, monkeypatch, capsys):
    from experiments import docs

    monkeypatch.setattr(docs, "SOURCES", tmp_path)
    (tmp_path / "verify.md.j2").write_text("not the page\n")
    assert docs.run(docs.Config(check=True)) == 1
    assert "docs/verify.md differs from its template's render" in capsys.readouterr().out


def test_the_handout_page_is_self_contained_and_has_its_tables(tmp_path):
    from experiments import handout

    page = handout.write_page(page=tmp_path / "handout.html").read_text()
    assert page.count("<table>") == 2 and "@page" in page
    assert "src=" not in page and "<link" not in page, "the page loads nothing: it prints offline"


def test_the_handouts_habits_table_has_a_column_per_framework():
    import backends

    text = (ROOT / "docs" / "handout.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| |"))
    built_in = [name for name in backends.frameworks() if not backends.info(name).plugin]  # a plug-in is not in it
    assert all(backends.label(name) in header for name in built_in), header


SPEED = ROOT / "docs" / "speed.md"
MEASURED = re.compile(r"<!-- measured: (\S+) -->\n(.*?)<!-- end -->", re.DOTALL)


def _measured_blocks(text: str) -> list[tuple[str, str]]:
    """(file, the text docs/speed.md shows of it) for each block it embeds, code fences removed."""
    return [(path, re.sub(r"^```\w*\n|```\n?$", "", body.strip() + "\n", flags=re.MULTILINE))
            for path, body in MEASURED.findall(text)]  # fmt: skip


def test_speed_shows_the_measured_outputs_verbatim():
    """Each output docs/speed.md shows is the file the command wrote (`make profile`, bench, bench-grid), whole."""
    blocks = _measured_blocks(SPEED.read_text())
    assert {path for path, _ in blocks} >= {"docs/speed/profile.md", "docs/speed/bench-backends.txt",
                                            "docs/speed/bench.txt", "docs/speed/bench-grid.txt"}  # fmt: skip
    for path, shown in blocks:
        assert shown.strip() == (ROOT / path).read_text().strip(), f"docs/speed.md shows another {path} than the file"


def test_every_ratio_in_the_speed_prose_is_measured():
    """A ratio the prose of docs/speed.md quotes ("1.3x") is one the outputs it shows print."""
    text = SPEED.read_text()
    measured = "\n".join(shown for _, shown in _measured_blocks(text))
    prose = MEASURED.sub("", text)
    quoted = set(re.findall(r"\b\d+\.\d+x\b", prose))
    missing = sorted(ratio for ratio in quoted if ratio not in measured)
    assert not missing, f"docs/speed.md quotes ratios no measured output prints: {missing}"
