"""The one-page handout (docs/handout.md) as a printable page: build/handout.html, one A4 sheet, self-contained.

    lenet-repro handout            # writes build/handout.html; print it from a browser (one page, A4 or Letter)
"""

from __future__ import annotations

import argparse
import html
from dataclasses import dataclass
from pathlib import Path

from common.results import write_atomic

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "docs" / "handout.md"
PAGE = REPO / "build" / "handout.html"

# Small type and tight tables so the handout prints on one sheet; the page loads nothing from a network.
STYLE = """
@page { size: A4; margin: 11mm 12mm; }
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; font-size: 8.3pt; line-height: 1.3;
       color: #111; max-width: 190mm; margin: 0 auto; }
h1 { font-size: 14pt; margin: 0 0 3pt; }
h2 { font-size: 10.5pt; margin: 8pt 0 3pt; border-bottom: 1px solid #999; }
p { margin: 3pt 0; }
table { border-collapse: collapse; width: 100%; margin: 3pt 0; table-layout: fixed; }
th, td { border: 1px solid #bbb; padding: 2pt 3pt; vertical-align: top; text-align: left; overflow-wrap: anywhere; }
table:first-of-type th:first-child { width: 42%; }
table:last-of-type th:first-child { width: 12%; }
th { background: #eee; }
code { font-family: "DejaVu Sans Mono", Menlo, monospace; font-size: 92%; }
"""


def render(markdown: str) -> str:
    """The whole page: the Markdown (CommonMark with tables) inside a styled HTML document."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    title = next((line[2:] for line in markdown.splitlines() if line.startswith("# ")), "lenet-repro handout")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>'
            f"\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n")


def write_page(source: Path = SOURCE, page: Path = PAGE) -> Path:
    write_atomic(page, render(source.read_text()).encode())
    return page


NAME = "handout"
HELP = "the one-page handout (docs/handout.md) as a printable page, build/handout.html"


@dataclass(frozen=True)
class Config:
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options: the page is written from docs/handout.md into build/handout.html."""


def run(config: Config) -> int:
    print(f"wrote {write_page()}")
    return 0
