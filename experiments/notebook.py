"""The teaching notebook (docs/side_by_side.py, a jupytext percent script): build, execute headless, export HTML.

    lenet-repro notebook ipynb     # docs/side_by_side.ipynb from the script (paired: JupyterLab keeps both)
    lenet-repro notebook html      # execute it and write build/side_by_side.html, self-contained
    lenet-repro notebook check     # execute it on a small subset; fail on an error or an empty output

Cells tagged `expect-output` must show something (a table, a plot, text) once executed: `check` and the test suite
fail on one that stays empty.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common.errors import UserError
from common.results import write_atomic

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "docs" / "side_by_side.py"
NOTEBOOK = SCRIPT.with_suffix(".ipynb")
PAGE = REPO / "build" / "side_by_side.html"
EXPECT = "expect-output"
SMALL = {"LENET_NOTEBOOK_EXAMPLES": "1024", "LENET_NOTEBOOK_EPOCHS": "2"}  # what the tests run


def read():
    import jupytext

    return jupytext.read(SCRIPT)


def write_ipynb() -> Path:
    """The .ipynb paired with the script (outputs empty); JupyterLab with jupytext saves both from then on."""
    import jupytext

    write_atomic(NOTEBOOK, jupytext.writes(read(), fmt="ipynb").encode())
    return NOTEBOOK


def execute(environment: dict[str, str] | None = None, timeout: int = 900):
    """Run every cell in a fresh kernel of this environment, in docs/; raise on the first error."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = read()
    saved = {name: os.environ.get(name) for name in environment or {}}
    os.environ.update(environment or {})  # the kernel inherits this process's environment
    try:
        NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(SCRIPT.parent)}}).execute()  # fmt: skip
    except CellExecutionError as error:
        lines = [line for line in str(error).splitlines() if line.strip()]
        raise UserError(f"the notebook failed: {lines[-1] if lines else error}") from None
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return notebook


def empty_cells(notebook) -> list[int]:
    """Indices of code cells tagged expect-output that produced no table, plot or text."""
    shown = ("image/png", "text/markdown", "text/html", "text/plain")

    def visible(output) -> bool:
        if output.get("output_type") == "stream":
            return bool(output.get("text", "").strip())
        return any(str(output.get("data", {}).get(kind, "")).strip() for kind in shown)

    return [index for index, cell in enumerate(notebook.cells)
            if cell.cell_type == "code" and EXPECT in cell.metadata.get("tags", [])
            and not any(visible(output) for output in cell.get("outputs", []))]  # fmt: skip


def write_html(notebook, path: Path = PAGE) -> Path:
    """A self-contained page: nbconvert embeds every plot as data, styles inline, no server needed."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter()
    exporter.exclude_input_prompt = exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(notebook)
    # The template loads require.js and MathJax from a CDN; the page uses neither (no widgets, no formulas), and
    # a page handed out must open without a network: drop both.
    body = re.sub(r'<script[^>]*src="https?://[^"]*"[^>]*>\s*</script>', "", body)
    write_atomic(path, body.encode())
    return path


NAME = "notebook"
HELP = "the teaching notebook: pair a .ipynb, or execute it headless"


@dataclass(frozen=True)
class Config:
    action: str  # ipynb, html or check


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("ipynb", "html", "check"),
                        help="ipynb: docs/side_by_side.ipynb from the script; html: execute it into "
                        "build/side_by_side.html; check: execute it on a small subset")  # fmt: skip


def run(config: Config) -> int:
    """`lenet-repro notebook ipynb|html|check`."""
    if config.action == "ipynb":
        print(f"wrote {write_ipynb()}")
        return 0
    start = time.perf_counter()
    notebook = execute(SMALL if config.action == "check" else None)
    empty = empty_cells(notebook)
    if empty:
        raise UserError(f"notebook cells {empty} produced no output where a table or plot was expected")
    print(f"executed {len(notebook.cells)} cells in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    if config.action == "html":
        print(f"wrote {write_html(notebook)} (open it in any browser)")
    return 0

