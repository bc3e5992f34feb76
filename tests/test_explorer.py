"""The results explorer (experiments/explorer.py) on the committed runs, opened in headless Chromium (Debian's, driven
by Playwright) with the network cut: no request leaves the page and nothing is written to the browser's console as an
error, and what a selection made through the page draws and tables is what the records it names hold."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

from common.results import RunStore, read_record
from experiments import explorer
from experiments.analysis import stats as st
from experiments.analysis.report import PUBLISHED

pytestmark = pytest.mark.integration

LIMIT_MIB = 10


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    return explorer.write_page(RunStore(PUBLISHED), tmp_path_factory.mktemp("explorer") / "explorer.html")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=explorer.chromium(), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def tab(browser, page):
    """The page in a fresh tab: every request but the page's own file refused and recorded, every console error
    and uncaught exception recorded; the test fails on either."""
    context = browser.new_context(viewport=explorer.SCREEN)
    tab = context.new_page()
    own = page.resolve().as_uri()
    requests, errors = [], []

    def refuse(route):
        if route.request.url.split("#")[0] == own:
            return route.continue_()
        requests.append(route.request.url)
        return route.abort()

    context.route("**/*", refuse)
    tab.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto(own)
    tab.wait_for_selector("body[data-ready=true]")
    yield tab
    context.close()
    assert requests == [], f"the page asked for {requests}"
    assert errors == [], f"the browser's console: {errors}"


def _records(variant: str, dataset: str, recipe: str, backend: str) -> list[dict]:
    paths = sorted((PUBLISHED / variant / dataset / recipe).glob(f"{backend}-seed*.json"))
    return sorted((read_record(p) for p in paths), key=lambda r: r["seed"])


def test_the_page_for_every_committed_run_is_one_file_under_the_limit(page):
    text = page.read_text()
    assert page.stat().st_size < LIMIT_MIB * 2**20
    assert "<script src" not in text and "<link" not in text  # nothing to fetch: the scripts are inside
    data = json.loads(text.split('<script type="application/json" id="data">')[1].split("</script>")[0])
    assert data["runs"] == len(RunStore(PUBLISHED).record_paths())


def test_a_selection_made_through_the_page_shows_the_numbers_of_the_records_it_names(tab, page):
    tab.click("#variants button[data-value=stock]")
    tab.click("#datasets button[data-value=fashion-mnist]")
    tab.select_option("#recipe", "d2l")
    for name in ("mxnet", "jax"):
        tab.uncheck(f"#frameworks input[data-backend={name}]")
    rows = tab.eval_on_selector_all("#table tbody tr", "rows => rows.map(r => r.dataset.backend)")
    assert rows == ["torch", "tensorflow"]
    finals = {}
    for name in rows:
        records = _records("stock", "fashion-mnist", "d2l", name)
        finals[name] = [r["epochs"][-1]["test_accuracy"] for r in records]
        values = np.asarray(finals[name])
        shown = tab.inner_text(f"#table tr[data-backend={name}] td[data-field=test_accuracy]")
        assert shown == f"{values.mean() * 100:.2f}% ± {values.std(ddof=1) * 100:.2f} (n={len(values)})"
        # each seed's curve of test accuracy is its record's, epoch by epoch
        traces = tab.evaluate(f"""() => document.getElementById('test').data
            .filter(t => t.meta && t.meta[0] === '{name}').map(t => [t.meta[1], t.y])""")
        assert [seed for seed, _ in traces] == [r["seed"] for r in records]
        for (_, y), record in zip(traces, records, strict=True):
            np.testing.assert_allclose(y, [100 * row["test_accuracy"] for row in record["epochs"]], rtol=1e-6)
        # every seed's link opens its record
        for href in tab.eval_on_selector_all(f"#table tr[data-backend={name}] td.seeds a", "a => a.map(x => x.href)"):
            linked = read_record(Path(unquote(urlparse(href).path)))
            assert (linked["backend"], linked["mode"], linked["recipe"]) == (name, "stock", "d2l")
    welch = st.welch(finals["torch"], finals["tensorflow"])
    assert tab.inner_text("#table tr[data-backend=tensorflow] td[data-field=difference]") == (
        f"{welch.difference * 100:+.2f} pp [{welch.low * 100:+.2f}, {welch.high * 100:+.2f}]")
    assert tab.inner_text("#table tr[data-backend=tensorflow] td[data-field=verdict]") == welch.verdict


def test_a_link_to_a_view_opens_that_view(tab, page):
    """A teacher can send a view: its selection rides in the address's fragment."""
    tab.goto(page.resolve().as_uri() + "#variant=shared&dataset=mnist&recipe=seed-torch-fixed&metric=loss"
             "&steps=step&seeds=median&frameworks=torch,numpy")  # fmt: skip
    tab.reload()
    tab.wait_for_selector("body[data-ready=true]")
    assert tab.inner_text("#title").startswith("The blog post's PyTorch script, its extra softmax removed, on MNIST")
    medians = tab.evaluate("() => document.getElementById('train').data.map(t => t.meta)")
    assert medians == [["torch", "median"], ["numpy", "median"]]  # shared mode: medians, no bands
    steps = len(_records("shared", "mnist", "seed-torch-fixed", "torch")[0]["step_losses"])
    x = tab.evaluate("() => document.getElementById('train').data[0].x")
    assert len(x) <= explorer_points() and x[-1] == steps


def explorer_points() -> int:
    from experiments.analysis.explorer_data import STEP_POINTS

    return STEP_POINTS


def test_the_variance_study_is_tabled_for_its_recipe(tab):
    tab.click("#variants button[data-value=shared]")
    tab.click("#datasets button[data-value=fashion-mnist]")
    tab.select_option("#recipe", "seed-torch-fixed")
    arms = tab.eval_on_selector_all("#variance-table tr[data-arm]", "rows => rows.map(r => r.dataset.arm)")
    study = json.loads((PUBLISHED / "variance" / "variance-seed-torch-fixed-fashion-mnist.json").read_text())
    assert set(arms) <= {run["arm"] for run in study["runs"]} and "one-bit" in arms and "seed" in arms
    (href,) = tab.eval_on_selector_all("#variance a", "a => a.map(x => x.href)")
    assert json.loads(Path(unquote(urlparse(href).path)).read_text())["runs"] == study["runs"]


def test_compare_writes_the_explorer_beside_the_report(tmp_path):
    """`compare --explorer`: the report and the page from one model of the records, side by side."""
    import shutil

    from experiments import cli

    shutil.copytree(PUBLISHED / "stock" / "mnist" / "d2l", tmp_path / "stock" / "mnist" / "d2l")
    assert cli.main(["compare", "--results", str(tmp_path), "--explorer"]) == 0
    page = (tmp_path / "explorer.html").read_text()
    data = json.loads(page.split('<script type="application/json" id="data">')[1].split("</script>")[0])
    assert (tmp_path / "report.md").exists() and data["runs"] == len(list(tmp_path.glob("stock/mnist/d2l/*.json")))
    assert {r["file"] for g in data["groups"] for b in g["backends"].values() for r in b["runs"]} == {
        p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("stock/mnist/d2l/*.json")}
