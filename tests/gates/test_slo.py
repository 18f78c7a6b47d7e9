"""SLO burn-rate judgement: one row per rule, at each edge."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from gates.engine import CriterionOutcome
from gates.model import Slo
from gates.slo import WindowReading, judge_slo, slo_windows

H, M, D = timedelta(hours=1), timedelta(minutes=1), timedelta(days=1)
# At 99.9 %, a burn rate of 1 is an error ratio of 0.001.
ALLOWED = 0.001


def slo(**overrides: Any) -> Slo:
    return Slo.model_validate(
        {
            "objective": "99.9%",
            "errors": "sum(rate(errors[${window}]))",
            "total": "sum(rate(requests[${window}]))",
            **overrides,
        }
    )


def burning(**burns: float) -> dict[timedelta, WindowReading]:
    """Readings with the given burn rate per window (``h1=20`` is 1h at burn 20)."""
    windows = {"m5": 5 * M, "m30": 30 * M, "h1": H, "h6": 6 * H, "d30": 30 * D}
    return {
        windows[name]: WindowReading(errors=burn * ALLOWED * 1000, total=1000)
        for name, burn in burns.items()
    }


QUIET = {"m5": 0.5, "m30": 0.5, "h1": 0.5, "h6": 0.5}

CASES = [
    # name, burns, outcome, in reason
    ("nothing burns", QUIET, CriterionOutcome.PASS, "no pair fired"),
    (
        "fast pair fires: rollback",
        {**QUIET, "h1": 20, "m5": 15},
        CriterionOutcome.BREACH,
        "1h/5m pair fired: burn rate 20 over 1h and 15 over 5m, both above 14.4",
    ),
    (
        "fast pair exactly at its rate does not fire",
        {**QUIET, "h1": 14.4, "m5": 14.4},
        CriterionOutcome.PASS,
        "no pair fired",
    ),
    (
        "fast pair just above its rate fires",
        {**QUIET, "h1": 14.41, "m5": 14.41},
        CriterionOutcome.BREACH,
        "1h/5m pair fired",
    ),
    (
        "long window only does not fire",
        {**QUIET, "h1": 30},
        CriterionOutcome.PASS,
        "no pair fired",
    ),
    (
        "short window only does not fire",
        {**QUIET, "m5": 30},
        CriterionOutcome.PASS,
        "no pair fired",
    ),
    (
        "slow pair fires: no_go",
        {**QUIET, "h6": 7, "m30": 8},
        CriterionOutcome.FAIL,
        "6h/30m pair fired: burn rate 7 over 6h and 8 over 30m, both above 6 (then: no_go)",
    ),
    (
        "slow pair exactly at its rate does not fire",
        {**QUIET, "h6": 6, "m30": 6},
        CriterionOutcome.PASS,
        "no pair fired",
    ),
    (
        "both fire: rollback wins",
        {"h1": 20, "m5": 20, "h6": 8, "m30": 8},
        CriterionOutcome.BREACH,
        "1h/5m pair fired",
    ),
]


@pytest.mark.parametrize(
    ("burns", "outcome", "said"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_burn_rate_table(burns: dict[str, float], outcome: CriterionOutcome, said: str) -> None:
    judged = judge_slo(slo(), burning(**burns))
    assert judged.outcome is outcome, judged.reason
    assert said in judged.reason


def test_value_is_the_highest_long_window_burn_rate() -> None:
    judged = judge_slo(slo(), burning(m5=50, m30=1, h1=3, h6=4))
    assert judged.value == pytest.approx(4)
    pairs = judged.details["windows"]
    assert [(p["long"], p["short"], p["fired"]) for p in pairs] == [
        ("1h", "5m", False),
        ("6h", "30m", False),
    ]
    assert pairs[0]["long_burn"] == pytest.approx(3)
    assert pairs[0]["short_burn"] == pytest.approx(50)


@pytest.mark.parametrize(
    "reading",
    [
        WindowReading(cause="errors: no data: prometheus: query returned no series"),
        WindowReading(errors=0, total=0),
        WindowReading(errors=5, total=4),
        WindowReading(errors=-1, total=4),
        WindowReading(errors=float("nan"), total=4),
    ],
    ids=["no data", "no traffic", "errors exceed total", "negative", "nan"],
)
def test_missing_data_in_any_window_is_inconclusive_never_pass(reading: WindowReading) -> None:
    readings = burning(**QUIET)
    readings[6 * H] = reading
    judged = judge_slo(slo(), readings)
    assert judged.outcome is CriterionOutcome.INCONCLUSIVE
    assert "6h:" in judged.reason


def test_a_window_not_read_at_all_is_inconclusive() -> None:
    readings = burning(**QUIET)
    del readings[5 * M]
    assert judge_slo(slo(), readings).outcome is CriterionOutcome.INCONCLUSIVE


def test_a_fired_rollback_pair_breaches_even_when_another_window_is_missing() -> None:
    readings = burning(h1=20, m5=20)
    judged = judge_slo(slo(), readings)
    assert judged.outcome is CriterionOutcome.BREACH


def test_budget_short_is_no_go_and_enough_budget_passes() -> None:
    spec = slo(budget={"period": "30d", "at_least": "10%"})
    assert slo_windows(spec)[-1] == 30 * D
    # Burn 0.95 over 30 days: 5 % of the budget left.
    short = judge_slo(spec, burning(**QUIET, d30=0.95))
    assert short.outcome is CriterionOutcome.FAIL
    assert "error budget over 30d: 5% left, need 10%" in short.reason
    assert short.details["budget"]["remaining"] == pytest.approx(0.05)
    # Burn 0.9 exactly: 10 % left, which is enough.
    edge = judge_slo(spec, burning(**QUIET, d30=0.9))
    assert edge.outcome is CriterionOutcome.PASS, edge.reason
    assert "budget 10% left over 30d" in edge.reason
    missing = judge_slo(spec, burning(**QUIET))
    assert missing.outcome is CriterionOutcome.INCONCLUSIVE


def test_custom_pairs_and_objective() -> None:
    spec = slo(
        objective=0.99,
        windows=[{"long": "3d", "short": "6h", "burn_rate": 1, "then": "no_go"}],
    )
    # 99 %: burn 1 is an error ratio of 1 %.
    readings = {3 * D: WindowReading(2, 100), 6 * H: WindowReading(3, 100)}
    judged = judge_slo(spec, readings)
    assert judged.outcome is CriterionOutcome.FAIL
    assert "3d/6h pair fired: burn rate 2 over 3d and 3 over 6h" in judged.reason
