"""experiments.analysis.stats against SciPy's reference tests, and the verdict rule on cases that must go each way."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from experiments.analysis import stats


def test_summary_interval_is_the_t_interval_of_the_mean():
    values = [0.75, 0.78, 0.757, 0.77, 0.815, 0.82]
    summary = stats.summarize(values)
    low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=scipy_stats.sem(values))
    assert (summary.mean, summary.n) == (pytest.approx(np.mean(values)), 6)
    assert summary.std == pytest.approx(np.std(values, ddof=1))
    assert (summary.low, summary.high) == (pytest.approx(low), pytest.approx(high))
    assert math.isnan(stats.summarize([0.5]).low) and stats.summarize([]).n == 0


def test_welch_matches_scipy():
    first, second = [0.753, 0.779, 0.757, 0.769, 0.815, 0.820], [0.840, 0.858, 0.840, 0.851, 0.830]
    result = stats.welch(first, second)
    reference = scipy_stats.ttest_ind(second, first, equal_var=False)
    assert result.p == pytest.approx(reference.pvalue)
    assert result.difference == pytest.approx(np.mean(second) - np.mean(first))
    half = scipy_stats.t.ppf(0.975, reference.df) * result.difference / reference.statistic
    assert result.low == pytest.approx(result.difference - half)
    assert result.high == pytest.approx(result.difference + half)
    assert result.verdict == "no"


def test_paired_matches_scipy():
    first, second = [0.70, 0.80, 0.90, 0.85], [0.7002, 0.7999, 0.9003, 0.8501]
    result = stats.paired(first, second)
    assert result.p == pytest.approx(scipy_stats.ttest_rel(second, first).pvalue)
    assert result.verdict == "yes"


@pytest.mark.parametrize(
    "low, high, expected",
    [(0.001, 0.01, "no"), (-0.05, -0.03, "no"), (-0.015, 0.019, "yes"), (-0.03, 0.01, "undecided"),
     (math.nan, math.nan, "undecided")],
)
def test_verdict_rule(low, high, expected):
    assert stats.verdict(low, high) == expected


def test_too_few_seeds_are_undecided_and_identical_values_agree():
    assert stats.welch([0.8], [0.8, 0.81]).verdict == "undecided"
    assert stats.paired([0.8], [0.8]).verdict == "undecided"
    same = stats.welch([0.5, 0.5], [0.5, 0.5])
    assert (same.p, same.verdict) == (1.0, "yes")


def _sample(mean: float, std: float, n: int) -> list[float]:
    """n values with exactly this mean and sample standard deviation."""
    z = np.linspace(-1, 1, n)
    return list(mean + std * (z - z.mean()) / z.std(ddof=1))


def test_seeds_to_decide_is_where_the_rule_first_decides():
    # a 1-point difference with spreads 2.2 and 0.6 points (the seed-mxnet Fashion-MNIST line at 4 seeds)
    n = stats.seeds_to_decide(_sample(0.8538, 0.022, 4), _sample(0.8634, 0.006, 4))
    assert n is not None and 15 <= n <= 30
    assert stats.welch(_sample(0.8538, 0.022, n), _sample(0.8634, 0.006, n)).verdict != "undecided"
    assert stats.welch(_sample(0.8538, 0.022, n - 1), _sample(0.8634, 0.006, n - 1)).verdict == "undecided"
    assert stats.seeds_to_decide([0.9, 0.91, 0.92], [0.9, 0.91, 0.92]) == 4  # same means, 1-point spreads
    assert stats.seeds_to_decide([0.9], [0.9, 0.91]) is None  # one value: no spread to go by


def test_the_detectable_difference_is_what_the_test_finds_four_times_in_five():
    rng = np.random.default_rng(0)
    first, second = list(rng.normal(0, 5, 40)), list(rng.normal(0, 5, 40))
    shift = stats.detectable_difference(first, second)
    assert 2.5 < shift < 3.6  # about 2.8 standard errors of a difference of two means of 40 at sd 5
    found = sum(stats.welch(list(rng.normal(0, 5, 40)), list(rng.normal(shift, 5, 40))).p < 0.05 for _ in range(400))
    assert 0.7 < found / 400 < 0.9
    assert math.isnan(stats.detectable_difference([1.0], [1.0, 2.0]))


def test_paired_spread_is_the_pitman_morgan_test():
    rng = np.random.default_rng(1)
    shared = rng.normal(0, 1, 12)  # paired seeds share a part of their outcome
    first, second = list(shared + rng.normal(0, 1, 12)), list(0.2 * shared + rng.normal(0, 0.2, 12))
    result = stats.paired_spread(first, second)
    # the textbook form: t = (F − 1) √(n − 2) / (2 √(F (1 − r²))), F the variance ratio, r the pairs' correlation
    f = np.var(first, ddof=1) / np.var(second, ddof=1)
    r, n = np.corrcoef(first, second)[0, 1], 12
    t = (f - 1) * math.sqrt(n - 2) / (2 * math.sqrt(f * (1 - r * r)))
    assert result.p == pytest.approx(2 * scipy_stats.t.sf(abs(t), n - 2))
    assert result.ratio == pytest.approx(np.std(second, ddof=1) / np.std(first, ddof=1)) and result.p < 0.01
    alike = stats.paired_spread(first, list(np.array(first)[::-1]))  # the same values, other pairs
    assert alike.ratio == pytest.approx(1) and alike.p == pytest.approx(1)
    assert math.isnan(stats.paired_spread([0.1, 0.2], [0.3, 0.1]).p)  # two pairs: no test


def test_rank_test_and_rank_correlation_need_enough_values_and_read_ranks_only():
    assert math.isnan(stats.rank_test([1.0], [2.0, 3.0]))
    assert math.isnan(stats.rank_correlation([1.0, 2.0], [3.0, 4.0])[0])  # too few
    assert math.isnan(stats.rank_correlation([0, 0, 0], [0.5, 0.6, 0.7])[0])  # one measure constant
    assert stats.rank_test([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) < 0.05
    assert stats.rank_test([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == stats.rank_test([1, 2, 3, 4, 5], [6, 7, 8, 9, 1000])
    rho, p = stats.rank_correlation([1, 2, 3, 4, 5], [1, 8, 27, 64, 1000])  # monotone, not linear
    assert rho == pytest.approx(1.0) and p < 0.05


def test_the_pooled_std_is_the_spread_within_groups_not_between_them():
    std, low, high = stats.pooled_std([[1.0, 3.0], [10.0, 12.0], [5.0]])
    assert std == pytest.approx(math.sqrt(2.0))  # (2 + 2) / 2 degrees of freedom; the groups' means do not enter
    assert low < std < high
    assert math.isnan(stats.pooled_std([[1.0], [2.0]])[0])
