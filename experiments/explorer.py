"""The results explorer: every run of a results directory in one self-contained HTML page, offline.

    lenet-repro explorer                        # the committed runs (docs/results) -> build/explorer.html
    lenet-repro explorer --results results      # your runs -> results/explorer.html
    lenet-repro explorer --screenshot docs/explorer.png   # and the page's default view, as Chromium draws it

The page holds Plotly's JavaScript (from the plotly package, inlined) and the data as JSON
(experiments/analysis/explorer_data.py: the report's model of the records), so it opens from a file with no network;
its Content-Security-Policy refuses any request it might still make. A reader picks the mode, dataset, recipe and
frameworks, sees every seed's curves or their median and band, hovers for a run's numbers, clicks a curve to open
its record, and reads the side-by-side table and the variance study's table as the report computes them.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from common.errors import UserError

if TYPE_CHECKING:
    from experiments.analysis.report import Report
from common.results import RunStore, existing_store, write_atomic

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).with_name("explorer.html")
DEFAULT_PAGE = REPO / "build" / "explorer.html"
# The window a screenshot is taken in: a projector's 16:10
SCREEN = {"width": 1600, "height": 1000}


def _script_safe(text: str) -> str:
    """Text that cannot end the <script> element it is inlined in."""
    return text.replace("</", "<\\/")


def render(store: RunStore, page: Path, report: Report | None = None) -> str:
    """The page for the runs of `store` (their model `report` where the caller has built it already), its links to
    records relative to where `page` is written."""
    from plotly.offline import get_plotlyjs

    from experiments.analysis.explorer_data import explorer_data
    from experiments.analysis.report import Report

    data = explorer_data(report or Report.build(store), store.root.resolve(), page.parent.resolve())
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False)
    template = TEMPLATE.read_text()
    return template.replace("/*PLOTLY*/", _script_safe(get_plotlyjs()), 1).replace("/*DATA*/", _script_safe(payload), 1)


def write_page(store: RunStore, page: Path, report: Report | None = None) -> Path:
    write_atomic(page, render(store, page, report).encode())
    return page


def chromium() -> str:
    """The Chromium the browser checks drive (Debian's `chromium`, installed by `make browser`)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise UserError("no chromium on PATH: `make browser` installs Debian's chromium package")
    return found


def screenshot(page: Path, image: Path) -> float:
    """Save the page's default view in headless Chromium, network cut, as a PNG; return the seconds from navigation
    until the page had drawn it and answers input (the Performance API's clock, in the page)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        tab = browser.new_page(viewport=SCREEN)
        tab.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
        tab.goto(page.resolve().as_uri())
        tab.wait_for_selector("body[data-ready=true]")
        ready = int(tab.get_attribute("body", "data-ready-ms") or 0) / 1000
        write_atomic(image, tab.screenshot(full_page=False))
        browser.close()
    return ready


NAME = "explorer"
HELP = "every run in one self-contained HTML page, offline (build/explorer.html; explorer.html in --results)"


@dataclass(frozen=True)
class Config:
    results: str | None = None
    out: str | None = None
    screenshot: str | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", default=None,
                        help="a results directory (default: the committed runs, docs/results)")  # fmt: skip
    parser.add_argument("--out", default=None,
                        help="the page to write (default: build/explorer.html for the committed runs, else "
                             "explorer.html in the results directory)")  # fmt: skip
    parser.add_argument("--screenshot", default=None, metavar="PNG",
                        help="also save the page's default view, as headless Chromium draws it")  # fmt: skip


def run(config: Config) -> int:
    from experiments.analysis.report import PUBLISHED
    store = existing_store(config.results) if config.results else RunStore(PUBLISHED)
    page = Path(config.out) if config.out else (store.root / "explorer.html" if config.results else DEFAULT_PAGE)
    write_page(store, page)
    size = page.stat().st_size / 2**20
    print(f"wrote {page} ({size:.1f} MiB, {len(list(store.record_paths()))} runs)")
    if config.screenshot:
        ready = screenshot(page, Path(config.screenshot))
        print(f"wrote {config.screenshot} (the page drew its first view and took input {ready:.2f} s after it was "
              "opened)")
    return 0
