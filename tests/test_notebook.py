"""The teaching notebook executes headless on a small subset: no error, and every cell that should show a table or
a plot shows one. The HTML page it becomes is self-contained."""

from __future__ import annotations

import pytest

from experiments import notebook

pytestmark = pytest.mark.integration  # its tests start processes or train to the end


@pytest.mark.slow
def test_the_notebook_runs_names_every_framework_shows_every_table_and_plot_and_becomes_one_page(tmp_path):
    """One execution (it trains every framework live) checked for everything: no error and no stderr box, every
    tagged cell shows a table or plot, the first cell names every registered backend, the page is self-contained.
    One test rather than several on a shared fixture: the test run spreads tests over processes, and each process
    that ran one of them would execute the notebook again."""
    import backends

    executed = notebook.execute(notebook.SMALL)
    tagged = [c for c in executed.cells if notebook.EXPECT in c.metadata.get("tags", [])]
    assert len(tagged) >= 8
    assert notebook.empty_cells(executed) == []
    kinds = {kind for c in tagged for o in c.outputs for kind in o.get("data", {})}
    assert {"image/png", "text/markdown"} <= kinds
    stderr = [o["text"] for c in executed.cells for o in c.get("outputs", []) if o.get("name") == "stderr"]
    assert not stderr, f"the page would show these as error boxes: {stderr}"

    first = "".join(o.get("data", {}).get("text/markdown", "") for o in executed.cells[1].outputs)
    assert all(f"**{backends.label(name)}" in first for name in backends.names()), first

    page = notebook.write_html(executed, tmp_path / "page.html").read_text()
    assert page.count("data:image/png;base64,") >= 4, "plots are embedded, not linked"
    assert page.count("<table") >= 5
    assert "16*4*4" in page and "committed runs" in page
    assert 'src="http' not in page, "no image or script fetched from a server: the page opens offline"


def test_an_empty_output_is_caught_and_only_that():
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_output

    def cell(*outputs, tagged=True):
        made = new_code_cell("x = 1", metadata={"tags": [notebook.EXPECT]} if tagged else {})
        made.outputs = list(outputs)
        return made

    cells = [
        cell(),  # 0: tagged, no output at all
        cell(new_output("display_data", data={"image/png": "iVBORw0KGgo="})),  # a plot
        cell(tagged=False),  # untagged cells may stay silent
        cell(new_output("stream", name="stdout", text="  \n")),  # 3: only whitespace printed
        cell(new_output("stream", name="stdout", text="done\n")),
        cell(new_output("execute_result", data={"text/markdown": ""}, execution_count=1)),  # 5: an empty table
        cell(new_output("execute_result", data={"text/markdown": "| a |"}, execution_count=1)),
        new_markdown_cell("prose", metadata={"tags": [notebook.EXPECT]}),  # not code: nothing to run
    ]
    assert notebook.empty_cells(nbformat.v4.new_notebook(cells=cells)) == [0, 3, 5]
