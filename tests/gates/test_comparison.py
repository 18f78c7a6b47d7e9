"""The Mann-Whitney comparison of a canary's series with its baseline's."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from gates.comparison import compare_series, hodges_lehmann
from gates.engine import CriterionOutcome
from gates.model import MIN_COMPARISON_POINTS, Compare


def spec(**overrides: Any) -> Compare:
    settings_: dict[str, Any] = {
        "window": "10m",
        "step": "30s",
        "confidence": "98%",
        "effect": "10%",
        "rollback_effect": "50%",
        "direction": "increase",
    }
    return Compare.model_validate({**settings_, **overrides})


def noisy(level: float, n: int = 21, *, seed: int, spread: float = 0.05) -> list[float]:
    rng = random.Random(seed)
    return [level * (1 + rng.gauss(0, spread)) for _ in range(n)]


# Known samples (latency seconds), with what scipy says about them.
CANARY = [0.31, 0.29, 0.35, 0.33, 0.30, 0.36, 0.32, 0.34, 0.31, 0.37, 0.33, 0.30]
BASELINE = [0.21, 0.20, 0.23, 0.22, 0.19, 0.24, 0.21, 0.22, 0.20, 0.23, 0.22, 0.21]


def test_p_value_is_scipys_two_sided_mann_whitney() -> None:
    judged = compare_series(CANARY, BASELINE, spec())
    expected = mannwhitneyu(CANARY, BASELINE, alternative="two-sided").pvalue
    assert judged.details["p_value"] == pytest.approx(float(expected))
    assert judged.details["canary"] == {"n": 12, "median": pytest.approx(float(np.median(CANARY)))}
    assert judged.details["baseline"]["median"] == pytest.approx(float(np.median(BASELINE)))


def test_hodges_lehmann_is_the_median_pairwise_difference_within_its_interval() -> None:
    shift = hodges_lehmann(CANARY, BASELINE, 0.98)
    differences = [c - b for c in CANARY for b in BASELINE]
    assert shift.estimate == pytest.approx(float(np.median(differences)))
    assert shift.low <= shift.estimate <= shift.high
    # A higher confidence never gives a narrower interval.
    wider = hodges_lehmann(CANARY, BASELINE, 0.999)
    assert wider.low <= shift.low and wider.high >= shift.high


def test_hodges_lehmann_of_a_pure_shift_is_that_shift() -> None:
    base = [float(v) for v in range(20)]
    shift = hodges_lehmann([v + 3 for v in base], base, 0.95)
    assert shift.estimate == 3


def test_three_times_worse_breaches_and_reason_shows_everything() -> None:
    judged = compare_series(noisy(0.3, seed=1), noisy(0.1, seed=2), spec())
    assert judged.outcome is CriterionOutcome.BREACH
    for part in ("canary n=21", "baseline n=21", "median", "shift", "98% CI", "p="):
        assert part in judged.reason
    assert judged.value == pytest.approx(2.0, rel=0.1)


def test_twenty_percent_worse_fails_without_breaching() -> None:
    judged = compare_series(
        noisy(0.12, seed=3, spread=0.02), noisy(0.1, seed=4, spread=0.02), spec()
    )
    assert judged.outcome is CriterionOutcome.FAIL
    assert "beyond effect 10%" in judged.reason


def test_five_percent_worse_passes_with_a_ten_percent_effect() -> None:
    judged = compare_series(
        noisy(0.105, seed=5, spread=0.01), noisy(0.1, seed=6, spread=0.01), spec()
    )
    assert judged.outcome is CriterionOutcome.PASS
    assert judged.details["p_value"] < 0.02  # significant, but small
    assert "within effect 10%" in judged.reason


def test_a_large_change_against_the_direction_passes() -> None:
    judged = compare_series(noisy(0.03, seed=7), noisy(0.1, seed=8), spec())
    assert judged.outcome is CriterionOutcome.PASS
    assert "against direction increase" in judged.reason
    either = compare_series(noisy(0.03, seed=7), noisy(0.1, seed=8), spec(direction="either"))
    assert either.outcome is CriterionOutcome.BREACH
    decrease = compare_series(noisy(0.03, seed=7), noisy(0.1, seed=8), spec(direction="decrease"))
    assert decrease.outcome is CriterionOutcome.BREACH


def test_without_rollback_effect_a_large_change_fails() -> None:
    judged = compare_series(noisy(0.3, seed=1), noisy(0.1, seed=2), spec(rollback_effect=None))
    assert judged.outcome is CriterionOutcome.FAIL


@pytest.mark.parametrize(
    ("canary", "baseline"),
    [
        ([1.0] * (MIN_COMPARISON_POINTS - 1), [1.0] * 20),
        ([1.0] * 20, [1.0] * (MIN_COMPARISON_POINTS - 1)),
        ([], []),
    ],
)
def test_too_few_points_a_side_is_inconclusive(canary: list[float], baseline: list[float]) -> None:
    judged = compare_series(canary, baseline, spec())
    assert judged.outcome is CriterionOutcome.INCONCLUSIVE
    assert f"at least {MIN_COMPARISON_POINTS} a side" in judged.reason


def test_exactly_the_minimum_is_judged() -> None:
    judged = compare_series([1.0] * MIN_COMPARISON_POINTS, [1.0] * MIN_COMPARISON_POINTS, spec())
    assert judged.outcome is CriterionOutcome.PASS


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_point_is_inconclusive(bad: float) -> None:
    judged = compare_series([*noisy(0.1, seed=1)[:-1], bad], noisy(0.1, seed=2), spec())
    assert judged.outcome is CriterionOutcome.INCONCLUSIVE
    assert "not a finite number" in judged.reason


def test_a_zero_baseline_median_with_a_significant_shift_is_inconclusive() -> None:
    judged = compare_series([0.01] * 20, [0.0] * 20, spec())
    assert judged.outcome is CriterionOutcome.INCONCLUSIVE
    assert "median is 0" in judged.reason
    assert compare_series([0.0] * 20, [0.0] * 20, spec()).outcome is CriterionOutcome.PASS


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=MIN_COMPARISON_POINTS, max_size=60))
def test_identical_series_always_pass(points: list[float]) -> None:
    assert compare_series(points, list(points), spec()).outcome is CriterionOutcome.PASS


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(min_value=1.0, max_value=2.0), min_size=MIN_COMPARISON_POINTS, max_size=40),
    st.floats(min_value=0.0, max_value=5.0),
)
def test_a_shifted_series_fails_once_the_shift_is_large_enough(
    baseline: list[float], extra: float
) -> None:
    # Every canary point above every baseline point: as significant as n allows.
    top = max(baseline)
    canary = [top + 0.01 + v - min(baseline) + extra for v in baseline]
    judged = compare_series(canary, baseline, spec(rollback_effect=None))
    relative = judged.details["relative_shift"]
    if relative > 0.1:
        assert judged.outcome is CriterionOutcome.FAIL
    else:
        assert judged.outcome is CriterionOutcome.PASS
    # Against the direction, the same shift is never a failure.
    against = compare_series(canary, baseline, spec(direction="decrease", rollback_effect=None))
    assert against.outcome is CriterionOutcome.PASS


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(min_value=1.0, max_value=2.0), min_size=15, max_size=40),
    st.floats(min_value=0.0, max_value=0.9),
)
def test_a_better_canary_never_fails_an_increase_comparison(
    baseline: list[float], factor: float
) -> None:
    canary = [v * factor for v in baseline]
    judged = compare_series(canary, baseline, spec())
    assert judged.outcome is CriterionOutcome.PASS
