"""The statistics behind every "agree" and "reproduces" in the report: intervals over seeds and two-sample tests.

One rule decides every verdict, stated once here and printed with the tables:
- "no": the two means differ at the 5% level (two-sided t-test; the 95% interval of the difference excludes 0);
- "yes": they do not, and the 95% interval of the difference lies within ±MARGIN (equivalence at that margin);
- "undecided": neither, the interval is too wide for the seeds there are: more seeds are needed.
Runs of two backends that share weights and batches (shared mode) are paired by seed (paired t-test); anything
else is two independent samples (Welch's t-test, which does not assume equal variances).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
MARGIN = 0.02  # two percentage points of test accuracy: closer than this counts as the same result
RULE = (f"a two-sided t-test at the {ALPHA:.0%} level, read through the {CONFIDENCE:.0%} confidence interval "
        f"of the difference of means: **no** when the interval excludes 0; **yes** when it lies within "
        f"±{MARGIN * 100:.0f} pp (equivalent at that margin); **undecided** otherwise (more seeds needed)")



def _scipy():
    """scipy.stats, imported when a statistic is computed: every command line (built with the studies, which import
    this module) must start in every environment, and MXNet's has no SciPy."""
    from scipy import stats

    return stats


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation, n and the 95% t-interval of the mean."""

    mean: float
    std: float
    n: int
    low: float
    high: float


@dataclass(frozen=True)
class Comparison:
    """second − first: the difference of means, its 95% interval, the test's p-value and the verdict."""

    difference: float
    low: float
    high: float
    p: float
    test: str  # "Welch" or "paired"
    verdict: str  # "yes", "no" or "undecided"
    pairs: int = 0  # seeds paired (paired test only)


def pm(mean: float, std: float, n: int, digits: int = 4, percent: bool = False) -> str:
    """"mean ± std (n=k)" as the report and its synced tables write it ("—" for none, no ± for one value)."""
    if n == 0 or math.isnan(mean):
        return "—"
    scale, suffix = (100, "%") if percent else (1, "")
    text = f"{mean * scale:.{digits}f}{suffix}"
    return text + (f" ± {std * scale:.{digits}f}" if n > 1 else "") + f" (n={n})"


def summarize(values: list[float]) -> Summary:
    """Mean ± std (n) with the t-interval of the mean (NaN bounds below two values)."""
    array = np.asarray(values, dtype=float)
    n = len(array)
    if n == 0:
        return Summary(math.nan, math.nan, 0, math.nan, math.nan)
    mean = float(array.mean())
    if n == 1:
        return Summary(mean, 0.0, 1, math.nan, math.nan)
    std = float(array.std(ddof=1))
    half = float(_scipy().t.ppf(1 - ALPHA / 2, n - 1)) * std / math.sqrt(n)
    return Summary(mean, std, n, mean - half, mean + half)


def pooled_std(groups: list[list[float]]) -> tuple[float, float, float]:
    """The standard deviation within groups, pooled over them (N - G degrees of freedom; one group: the sample
    standard deviation), with its 95% interval (chi-square, normal samples): (std, low, high); NaN where no group
    has two values."""
    df = sum(len(g) - 1 for g in groups if g)
    if df < 1:
        return math.nan, math.nan, math.nan
    squares = sum(float(((np.asarray(g) - np.mean(g)) ** 2).sum()) for g in groups if g)
    chi2 = _scipy().chi2
    return (math.sqrt(squares / df), math.sqrt(squares / chi2.ppf(1 - ALPHA / 2, df)),
            math.sqrt(squares / chi2.ppf(ALPHA / 2, df)))  # fmt: skip


def verdict(low: float, high: float) -> str:
    """The rule above, from the interval of the difference."""
    if math.isnan(low):
        return "undecided"
    if low > 0 or high < 0:
        return "no"
    return "yes" if -MARGIN <= low and high <= MARGIN else "undecided"


def _interval(difference: float, se: float, df: float) -> tuple[float, float, float]:
    """(low, high, p) of a t-statistic with standard error `se` and `df` degrees of freedom."""
    if se == 0:  # identical values on both sides, or identical differences
        return difference, difference, (1.0 if difference == 0 else 0.0)
    half = float(_scipy().t.ppf(1 - ALPHA / 2, df)) * se
    p = float(2 * _scipy().t.sf(abs(difference) / se, df))
    return difference - half, difference + half, p


def welch(first: list[float], second: list[float]) -> Comparison:
    """Two independent samples: Welch's t-test and the Welch-Satterthwaite interval of mean(second) − mean(first)."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if len(a) < 2 or len(b) < 2:
        difference = float(b.mean() - a.mean()) if len(a) and len(b) else math.nan
        return Comparison(difference, math.nan, math.nan, math.nan, "Welch", "undecided")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    difference, se = float(b.mean() - a.mean()), math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se else 1.0
    low, high, p = _interval(difference, se, df)
    return Comparison(difference, low, high, p, "Welch", verdict(low, high))


def paired(first: list[float], second: list[float]) -> Comparison:
    """Two samples paired element by element: the t-interval of the mean of second − first."""
    differences = np.asarray(second, dtype=float) - np.asarray(first, dtype=float)
    n = len(differences)
    if n < 2:
        difference = float(differences.mean()) if n else math.nan
        return Comparison(difference, math.nan, math.nan, math.nan, "paired", "undecided", n)
    difference, se = float(differences.mean()), float(differences.std(ddof=1)) / math.sqrt(n)
    low, high, p = _interval(difference, se, n - 1)
    return Comparison(difference, low, high, p, "paired", verdict(low, high), n)


def seeds_to_decide(first: list[float], second: list[float], is_paired: bool = False, most: int = 1000) -> int | None:
    """The number of seeds (a side; pairs when paired) at which the rule above would give "yes" or "no", if the
    means and standard deviations stayed as measured; None if not within `most` (a difference at the margin)."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return None
    if is_paired:
        d = b[: len(a)] - a[: len(b)]
        difference, spread = float(d.mean()), float(d.var(ddof=1))
    else:
        difference, spread = float(b.mean() - a.mean()), float(a.var(ddof=1) + b.var(ddof=1))
    va, vb = float(a.var(ddof=1)), float(b.var(ddof=1))
    for n in range(2, most + 1):
        if is_paired:
            df = n - 1
        else:
            df = (va + vb) ** 2 / ((va**2 + vb**2) / (n - 1)) if va + vb else n - 1
        half = float(_scipy().t.ppf(1 - ALPHA / 2, df)) * math.sqrt(spread / n)
        if verdict(difference - half, difference + half) != "undecided":
            return n
    return None


def decide_phrase(n: int | None, unit: str = "seeds a side") -> str:
    """How `seeds_to_decide`'s answer reads in the report and the studies: "about N <unit> would decide it"."""
    if n is None:
        return "no number of seeds up to 1,000 would decide it (the difference sits at the margin)"
    return f"about {n} {unit} would decide it"


def detectable_difference(first: list[float], second: list[float], power: float = 0.8) -> float:
    """The smallest true difference of means that Welch's test at the 5% level, with these sample sizes and the
    measured spreads, detects with probability `power` (two-sided, normal-shift approximation with the
    Welch-Satterthwaite degrees of freedom): what a "no difference found" rules out. NaN below two values a side."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se else 1.0
    return float((_scipy().t.ppf(1 - ALPHA / 2, df) + _scipy().t.ppf(power, df)) * se)


def rank_test(first: list[float], second: list[float]) -> float:
    """Two independent samples of a count or a skewed measure (e.g. epochs on a plateau): the two-sided
    Mann-Whitney U test's p-value, which compares the samples' ranks and assumes no distribution. NaN below two
    values a side."""
    if len(first) < 2 or len(second) < 2:
        return math.nan
    return float(_scipy().mannwhitneyu(first, second, alternative="two-sided").pvalue)


def rank_correlation(first: list[float], second: list[float]) -> tuple[float, float]:
    """Spearman's rank correlation of two measures of the same runs and its two-sided p-value (NaN below three
    values, or when either measure is the same for every run)."""
    if len(first) < 3 or len(set(first)) < 2 or len(set(second)) < 2:
        return math.nan, math.nan
    result = _scipy().spearmanr(first, second)
    return float(result.statistic), float(result.pvalue)


@dataclass(frozen=True)
class SpreadComparison:
    """Two paired samples' standard deviations, their ratio second/first and the Pitman-Morgan test's p-value."""

    first: float
    second: float
    ratio: float
    p: float


def paired_spread(first: list[float], second: list[float]) -> SpreadComparison:
    """Whether two samples paired element by element spread alike: the Pitman-Morgan test, which reads
    var(first) = var(second) as "first + second and first − second are uncorrelated" and tests that correlation
    (t with n − 2 degrees of freedom). Paired seeds share their weights, so an F-test would not do. p is NaN below
    three pairs."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    sa, sb = (float(x.std(ddof=1)) if len(x) > 1 else math.nan for x in (a, b))
    ratio = sb / sa if sa else math.nan
    if len(a) < 3 or not (sa and sb):
        return SpreadComparison(sa, sb, ratio, math.nan)
    r = float(np.corrcoef(a + b, a - b)[0, 1])
    n = len(a)
    t = r * math.sqrt((n - 2) / max(1 - r * r, 1e-300))
    return SpreadComparison(sa, sb, ratio, float(2 * _scipy().t.sf(abs(t), n - 2)))
