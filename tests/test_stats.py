"""iolab.analysis.stats against numpy, the statistics module and scipy (test-only dependencies)."""

from __future__ import annotations

import json
import math
import random
import statistics

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from iolab.analysis import stats
from iolab.results import Summary

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=1e-3, max_value=1e4, allow_nan=False, allow_infinity=False)


# ------------------------------------------------------------------------------------- descriptive


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(finite, min_size=1, max_size=50), st.floats(min_value=0, max_value=100))
def test_percentile_matches_numpy_linear(values: list[float], q: float) -> None:
    assert stats.percentile(values, q) == pytest.approx(np.percentile(values, q), rel=1e-12, abs=1e-9)


def test_percentile_matches_statistics_quantiles_inclusive() -> None:
    # statistics.quantiles(method="inclusive") is also Hyndman & Fan type 7.
    rng = random.Random(3)
    xs = [rng.expovariate(1.0) for _ in range(37)]
    cuts = statistics.quantiles(xs, n=100, method="inclusive")
    for q in (1, 25, 50, 90, 99):
        assert stats.percentile(xs, q) == pytest.approx(cuts[q - 1], rel=1e-12)


def test_percentile_edges() -> None:
    assert stats.percentile([5.0], 99) == 5.0
    assert stats.percentile([1, 2, 3, 4], 0) == 1
    assert stats.percentile([1, 2, 3, 4], 100) == 4
    with pytest.raises(ValueError):
        stats.percentile([], 50)
    for q in (-1, 100.5, math.nan):
        with pytest.raises(ValueError):
            stats.percentile([1.0], q)
    with pytest.raises(ValueError):
        stats.percentile([1.0, math.nan], 50)


def test_summarize_seed_columns() -> None:
    xs = [248.51, 580.0, 700.0, 745.0, 813.5, 853.0, 577.95, 12.0]
    s = stats.summarize(xs)
    assert s.count == 8 and s.min == 12.0 and s.max == 853.0
    for field, q in (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99)):
        assert getattr(s, field) == pytest.approx(np.percentile(xs, q))
    assert s.mean == pytest.approx(np.mean(xs))
    assert stats.summarize([]) == Summary()


def test_mean_median_cv() -> None:
    xs = [2.0, 4.0, 4.0, 5.0, 9.0]
    assert stats.mean(xs) == statistics.mean(xs)
    assert stats.median(xs) == statistics.median(xs)
    assert stats.median([1.0, 2.0]) == 1.5
    assert stats.coefficient_of_variation(xs) == pytest.approx(statistics.stdev(xs) / statistics.mean(xs))
    with pytest.raises(ValueError):
        stats.mean([])
    with pytest.raises(ValueError):
        stats.median([])
    assert stats.coefficient_of_variation([1.0]) is None
    assert stats.coefficient_of_variation([-1.0, 1.0]) is None  # zero mean
    # Two-pass variance: no cancellation for near-constant large values.
    assert stats.coefficient_of_variation([1e9 + 1, 1e9 + 2, 1e9 + 3]) == pytest.approx(1.0 / (1e9 + 2))


# ---------------------------------------------------------------------------------- t distribution


@pytest.mark.parametrize("df", [1, 2, 2.5, 3, 4.7, 10, 29.3, 100, 1e4])
def test_t_quantile_matches_scipy(df: float) -> None:
    for p in (1e-10, 1e-4, 0.001, 0.01, 0.025, 0.05, 0.2, 0.5, 0.8, 0.95, 0.975, 0.995, 0.9999):
        assert stats.t_quantile(p, df) == pytest.approx(sps.t.ppf(p, df), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("df", [1, 2, 3.5, 8, 50, 1e5])
def test_t_sf_matches_scipy(df: float) -> None:
    for t in (-100.0, -8.0, -2.0, -0.5, 0.0, 0.3, 1.0, 2.5, 12.0, 1e3):
        assert stats.t_sf(-t, df) == pytest.approx(sps.t.cdf(t, df), rel=1e-10, abs=1e-14)
        assert stats.t_sf(t, df) == pytest.approx(sps.t.sf(t, df), rel=1e-10, abs=1e-14)


def test_t_sf_closed_forms() -> None:
    # df = 1 is the Cauchy distribution, df = 2 has F(t) = 1/2 + t / (2·sqrt(2 + t²)).
    for t in (1e-8, 0.1, 1.0, 7.0, 1e6):
        assert stats.t_sf(-t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, rel=1e-13)
        assert stats.t_sf(-t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), rel=1e-13)
    assert stats.t_quantile(0.975, math.inf) == pytest.approx(1.959963984540054)
    with pytest.raises(ValueError):
        stats.t_quantile(1.0, 3)
    with pytest.raises(ValueError):
        stats.t_quantile(0.5, 0)


# ---------------------------------------------------------------------------------------- Welch


def _welch(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """(t, df, p) of Welch's test of mean(a) − mean(b), as scipy.stats.ttest_ind(equal_var=False)."""
    c = stats.welch_contrast([a, b], [1.0, -1.0])
    t = c.estimate / c.se if c.se else (0.0 if c.estimate == 0 else math.copysign(math.inf, c.estimate))
    return t, c.df, c.p_value


@settings(max_examples=150, deadline=None, database=None)
@given(st.lists(finite, min_size=2, max_size=30), st.lists(finite, min_size=2, max_size=30))
def test_welch_matches_scipy(a: list[float], b: list[float]) -> None:
    if statistics.stdev(a) == 0 and statistics.stdev(b) == 0:
        return  # scipy returns NaN there; our convention is tested separately
    if statistics.stdev(a) < 1e-6 * (1 + max(map(abs, a))) or statistics.stdev(b) < 1e-6 * (
        1 + max(map(abs, b))
    ):
        return  # near-zero variance: both implementations are dominated by rounding
    t, df, p = _welch(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert t == pytest.approx(ref.statistic, rel=1e-7, abs=1e-9)
    assert df == pytest.approx(ref.df, rel=1e-7)
    assert p == pytest.approx(ref.pvalue, rel=1e-6, abs=1e-12)


def test_welch_seeded_lognormal_and_interval() -> None:
    rng = np.random.default_rng(7)
    for _ in range(100):
        a = rng.lognormal(3, 0.3, rng.integers(2, 12)).tolist()
        b = rng.lognormal(3.2, 0.6, rng.integers(2, 12)).tolist()
        t, df, p = _welch(a, b)
        ref = sps.ttest_ind(a, b, equal_var=False)
        assert (t, df, p) == pytest.approx((ref.statistic, ref.df, ref.pvalue), rel=1e-9)
        c = stats.welch_contrast([a, b], [-1, 1])
        ci = sps.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
        assert (c.low, c.high) == pytest.approx((ci.low, ci.high), rel=1e-9, abs=1e-12)


def test_welch_constant_groups() -> None:
    assert _welch([2.0, 2.0], [2.0, 2.0, 2.0]) == (0.0, 3.0, 1.0)
    t, _, p = _welch([1.0, 1.0], [2.0, 2.0])
    assert t == -math.inf and p == 0.0
    with pytest.raises(ValueError):
        _welch([1.0], [1.0, 2.0])


def test_welch_contrast_of_four_groups_is_additive() -> None:
    # The attribution identity: X − Y = (cX − cY) + [(X − cX) − (Y − cY)], on round means.
    rng = random.Random(1)
    x, cx, y, cy = ([rng.gauss(mu, 1) for _ in range(5)] for mu in (10, 9, 6, 5.5))
    total = stats.welch_contrast([x, y], [1, -1])
    part1 = stats.welch_contrast([cx, cy], [1, -1])
    part2 = stats.welch_contrast([x, cx, y, cy], [1, -1, -1, 1])
    assert total.estimate == pytest.approx(part1.estimate + part2.estimate)
    assert part2.low < part2.estimate < part2.high and 0 < part2.p_value <= 1
    # Four groups of 5 with equal variances: Satterthwaite df are at most the pooled 16.
    assert 4 <= part2.df <= 16


# ------------------------------------------------------------------------------- compare_samples


def test_compare_samples_clear_difference() -> None:
    rng = random.Random(5)
    a = [rng.lognormvariate(math.log(92), 0.03) for _ in range(3)]
    b = [rng.lognormvariate(math.log(73), 0.03) for _ in range(3)]
    e = stats.compare_samples(a, b)
    assert e.method == stats.METHOD_WELCH_LOG and (e.n_a, e.n_b) == (3, 3)
    assert e.p_value < 0.05 and e.ci95_high < 1
    assert e.ci95_low < e.ratio < e.ci95_high
    assert e.ratio == pytest.approx(statistics.median(b) / statistics.median(a))
    up = stats.compare_samples(b, a)
    assert up.ci95_low > 1 and up.p_value == pytest.approx(e.p_value)


def test_compare_samples_interval_is_ratio_of_geometric_means() -> None:
    a, b = [10.0, 12.0, 11.0, 13.0], [20.0, 25.0, 22.0]
    e = stats.compare_samples(a, b)
    la, lb = np.log(a), np.log(b)
    ci = sps.ttest_ind(lb, la, equal_var=False).confidence_interval(0.95)
    assert (e.ci95_low, e.ci95_high) == pytest.approx((math.exp(ci.low), math.exp(ci.high)), rel=1e-9)
    assert e.p_value == pytest.approx(sps.ttest_ind(la, lb, equal_var=False).pvalue, rel=1e-9)


def test_compare_samples_false_positive_rate_near_alpha() -> None:
    rng = random.Random(2024)
    trials, hits = 500, 0
    for _ in range(trials):
        a = [rng.lognormvariate(4.0, 0.2) for _ in range(3)]
        b = [rng.lognormvariate(4.0, 0.2) for _ in range(3)]
        e = stats.compare_samples(a, b)
        hits += e.p_value < 0.05 and (e.ci95_low > 1 or e.ci95_high < 1)
    assert hits / trials < 0.1


def test_compare_samples_constant_and_degenerate() -> None:
    same = stats.compare_samples([5.0, 5.0, 5.0], [5.0, 5.0])
    assert (same.ratio, same.p_value, same.ci95) == (1.0, 1.0, (1.0, 1.0))
    diff = stats.compare_samples([2.0, 2.0, 2.0], [3.0, 3.0, 3.0])
    assert diff.ratio == 1.5 and diff.p_value == 0.0 and diff.ci95 == (1.5, 1.5)
    assert diff.method == stats.METHOD_CONSTANT
    few = stats.compare_samples([2.0], [3.0, 3.1])
    assert few.method == stats.METHOD_TOO_FEW and few.p_value == 1.0 and few.ci95 == (1.525, 1.525)
    empty = stats.compare_samples([], [1.0, 2.0])
    assert empty.ratio == 1.0 and empty.p_value == 1.0 and empty.n_a == 0
    with pytest.raises(ValueError):
        stats.compare_samples([1.0, math.inf], [1.0, 2.0])


def test_compare_samples_zero_values_fall_back_to_raw_welch() -> None:
    # 0 write syscalls per request in some rounds: no logarithms, Welch on raw values.
    a, b = [0.0, 0.02, 0.01], [1.0, 1.02, 0.99]
    e = stats.compare_samples(a, b)
    assert e.method == stats.METHOD_WELCH_RAW
    ci = sps.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert e.ci95 == pytest.approx((1 + ci.low / np.mean(a), 1 + ci.high / np.mean(a)))
    assert e.p_value < 0.05 and e.ratio == pytest.approx(1.0 / 0.01)


def test_compare_samples_zero_baseline_is_json_safe() -> None:
    e = stats.compare_samples([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    assert e.ratio == stats.RATIO_UNBOUNDED and e.p_value == 0.0
    e2 = stats.compare_samples([0.0, 0.0, 0.0], [1.0, 0.9, 1.1])
    assert e2.ci95_low == e2.ci95_high == e2.ratio == stats.RATIO_UNBOUNDED
    for est in (e, e2, stats.compare_samples([1.0, 2.0], [0.0, 0.0])):
        json.dumps([est.ratio, est.ci95_low, est.ci95_high, est.p_value], allow_nan=False)


@settings(max_examples=150, deadline=None, database=None)
@given(st.lists(positive, min_size=0, max_size=6), st.lists(positive, min_size=0, max_size=6))
def test_compare_samples_always_finite(a: list[float], b: list[float]) -> None:
    e = stats.compare_samples(a, b)
    for v in (e.ratio, e.ci95_low, e.ci95_high, e.p_value):
        assert math.isfinite(v)
    assert 0.0 <= e.p_value <= 1.0 and e.ci95_low <= e.ci95_high


# --------------------------------------------------------------------------------------- outliers


def test_modified_z_scores() -> None:
    xs = [10.0, 11.0, 12.0, 13.0, 40.0]
    med = 12.0
    mad = statistics.median(abs(x - med) for x in xs)
    assert stats.modified_z_scores(xs) == pytest.approx([0.6745 * (x - med) / mad for x in xs])
    assert stats.outliers(xs) == [4]
    # hyperfine's own test cases: no outliers in small or low-variance samples, one obvious one found.
    assert stats.outliers([]) == [] and stats.outliers([50.0]) == [] and stats.outliers([1000.0, 0.0]) == []
    assert stats.outliers([-0.2, 0.0, 0.2]) == []
    assert stats.outliers([0.5, 0.30, 0.29, 0.31, 0.30]) == [0]
    # MAD = 0 falls back to the mean absolute deviation instead of dividing by zero.
    assert stats.outliers([10.0] * 7 + [100.0]) == [7]
    assert stats.outliers([10.0] * 7 + [100.0, 100.0]) == [7, 8]
    assert stats.modified_z_scores([3.0, 3.0, 3.0]) == [0.0, 0.0, 0.0]
