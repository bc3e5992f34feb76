"""The explorer's data (experiments/analysis/explorer_data.py) on tiny synthetic series: how a run's per-step losses
are thinned, and how the registry's line styles become Plotly's."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.analysis.explorer_data import STEP_POINTS, dash, thin


def test_thinning_keeps_at_most_the_points_each_the_mean_of_its_window():
    values = list(np.arange(1000, dtype=float))
    window, points = thin(values)
    assert window == 5 and len(points) == STEP_POINTS
    assert points[0] == np.mean(values[:5]) and points[-1] == np.mean(values[-5:])


def test_a_short_run_is_not_thinned_and_a_missing_step_stays_missing():
    assert thin([1.0, 2.0, 3.0]) == (1, [1.0, 2.0, 3.0])
    window, points = thin([1.0] * 7 + [None] + [1.0] * 2, points=5)
    assert window == 2 and points == [1.0, 1.0, 1.0, None, 1.0]
    assert thin([]) == (1, [])


@pytest.mark.parametrize(("style", "plotly"), [("-", "solid"), ("--", "dash"), ("-.", "dashdot"), (":", "dot"),
                                               ((0, (5, 1)), "10px,2px")])  # fmt: skip
def test_line_styles_become_plotly_dashes(style, plotly):
    assert dash(style) == plotly
