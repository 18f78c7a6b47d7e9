"""The decision engine, one test (or table row) per rule in docs/decisions.md."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gates.engine
from gates.engine import (
    CriterionOutcome,
    CriterionResult,
    Decision,
    Sample,
    decide,
    decide_safely,
    deciding_count,
    freshness_bound,
    gap_bound,
    judge,
)
from gates.model import Criterion, Gate
from probes.base import Measurement, MeasurementStatus, ProbeConfig
from tests.conftest import T0

PASS, FAIL, BREACH, INCONCLUSIVE = (
    CriterionOutcome.PASS,
    CriterionOutcome.FAIL,
    CriterionOutcome.BREACH,
    CriterionOutcome.INCONCLUSIVE,
)


def make_gate(*criteria: Mapping[str, Any], **fields: Any) -> Gate:
    return Gate(
        name="portal",
        probes={"p": ProbeConfig(type="fake")},
        criteria=[Criterion(probe="p", **c) for c in criteria],
        **fields,
    )


AVAILABILITY = {"name": "availability", "go": "> 99.9%", "rollback": "< 95%"}


def ok(value: float, *, volume: float | None = None) -> Measurement:
    return Measurement.ok(value, T0, volume=volume)


def history(gate: Gate, *rows: Mapping[str, Measurement | float]) -> list[Sample]:
    """Samples, oldest first; each row maps a criterion name to what its probe answered."""
    samples = []
    for index, row in enumerate(rows):
        at = T0 + timedelta(seconds=30 * index)
        results = []
        for criterion in gate.criteria:
            answer = row[criterion.name]
            measurement = answer if isinstance(answer, Measurement) else ok(answer)
            results.append(judge(criterion, measurement))
        samples.append(Sample(at, tuple(results)))
    return samples


def outcome(criterion: Mapping[str, Any], measurement: Measurement, **kw: Any) -> CriterionResult:
    return judge(Criterion(probe="p", **criterion), measurement, **kw)


# -- judge: one measurement, one criterion ----------------------------------------------------

JUDGE_TABLE = [
    # (rule, criterion, measurement, outcome, reason)
    ("value meets go", AVAILABILITY, ok(0.9995), PASS, "99.95 % > 99.9 % (go: > 99.9%)"),
    (
        "value misses go",
        AVAILABILITY,
        ok(0.9931),
        FAIL,
        "99.31 % <= 99.9 % (go: > 99.9%)",
    ),
    ("value meets rollback", AVAILABILITY, ok(0.94), BREACH, "94 % < 95 % (rollback: < 95%)"),
    (
        "breach beats pass when both conditions hold",
        {"name": "latency", "go": "< 2s", "rollback": "> 500ms"},
        ok(0.8),
        BREACH,
        "800 ms > 500 ms (rollback: > 500ms)",
    ),
    (
        "go conditions in a list are ANDed",
        {"name": "ratio", "go": [">= 98%", "<= 100%"]},
        ok(1.01),
        FAIL,
        "101 % > 100 % (go: >= 98% and <= 100%)",
    ),
    (
        "ANDed go list passes only when every condition holds",
        {"name": "ratio", "go": [">= 98%", "<= 100%"]},
        ok(0.99),
        PASS,
        "99 % >= 98 % (go: >= 98% and <= 100%)",
    ),
    (
        "rollback conditions in a list are ANDed",
        {"name": "errors", "go": "< 1%", "rollback": ["> 5%", "< 50%"]},
        ok(0.6),
        FAIL,
        "60 % >= 1 % (go: < 1%)",
    ),
    (
        "no data, default policy: inconclusive",
        AVAILABILITY,
        Measurement.no_data("no series matched", T0),
        INCONCLUSIVE,
        "no data: no series matched",
    ),
    (
        "no data with no_data: pass",
        {"name": "alerts", "go": "== 0", "no_data": "pass"},
        Measurement.no_data("no alerts", T0),
        PASS,
        "no data (no alerts); no_data: pass",
    ),
    (
        "no data with no_data: fail",
        {"name": "alerts", "go": "== 0", "no_data": "fail"},
        Measurement.no_data("no alerts", T0),
        FAIL,
        "no data (no alerts); no_data: fail",
    ),
    (
        "a probe error is inconclusive even with no_data: pass",
        {"name": "alerts", "go": "== 0", "no_data": "pass"},
        Measurement.error("prometheus: connection refused after 3 tries", T0),
        INCONCLUSIVE,
        "prometheus: connection refused after 3 tries",
    ),
    (
        "a timeout is inconclusive even with no_data: pass",
        {"name": "alerts", "go": "== 0", "no_data": "pass"},
        Measurement.timeout("no answer within 5s", T0),
        INCONCLUSIVE,
        "no answer within 5s",
    ),
    (
        "several series where one was expected (the probe's error) is inconclusive",
        AVAILABILITY,
        Measurement.error("3 series where one was expected; set reduce", T0),
        INCONCLUSIVE,
        "3 series where one was expected; set reduce",
    ),
    (
        "NaN is refused by Measurement.ok and so inconclusive",
        AVAILABILITY,
        ok(math.nan),
        INCONCLUSIVE,
        "value is nan, not a finite number",
    ),
    (
        "Inf is inconclusive",
        {"name": "latency", "go": "< 2s"},
        ok(math.inf),
        INCONCLUSIVE,
        "value is inf, not a finite number",
    ),
    (
        "volume below min_volume.at_least (probe volume) is inconclusive",
        {"name": "errors", "go": "< 1%", "min_volume": {"at_least": 100}},
        ok(0.0, volume=42),
        INCONCLUSIVE,
        "only 42 requests in window, need 100",
    ),
    (
        "volume at min_volume.at_least (probe volume) is judged",
        {"name": "errors", "go": "< 1%", "min_volume": {"at_least": 100}},
        ok(0.0, volume=100),
        PASS,
        "0 % < 1 % (go: < 1%)",
    ),
    (
        "a NaN volume does not satisfy min_volume",
        {"name": "errors", "go": "< 1%", "min_volume": {"at_least": 100}},
        ok(0.0, volume=math.nan),
        INCONCLUSIVE,
        "volume unknown: volume is nan, not a finite number",
    ),
    (
        "an infinite volume does not satisfy min_volume",
        {"name": "errors", "go": "< 1%", "min_volume": {"at_least": 100}},
        ok(0.0, volume=math.inf),
        INCONCLUSIVE,
        "volume unknown: volume is inf, not a finite number",
    ),
    (
        "a NaN value a probe built by hand is inconclusive",
        AVAILABILITY,
        Measurement(MeasurementStatus.OK, T0, math.nan),
        INCONCLUSIVE,
        "value is nan, not a finite number",
    ),
    (
        "min_volume without a volume from the probe is inconclusive",
        {"name": "errors", "go": "< 1%", "min_volume": {"at_least": 100}},
        ok(0.0),
        INCONCLUSIVE,
        "volume unknown: this probe reports no volume; set min_volume.query",
    ),
]


@pytest.mark.parametrize(
    ("criterion", "measurement", "expected", "reason"),
    [row[1:] for row in JUDGE_TABLE],
    ids=[row[0] for row in JUDGE_TABLE],
)
def test_judge_rule(
    criterion: Mapping[str, Any],
    measurement: Measurement,
    expected: CriterionOutcome,
    reason: str,
) -> None:
    result = outcome(criterion, measurement)
    assert result.outcome is expected
    assert result.reason == reason


MIN_VOLUME_QUERY = {
    "name": "errors",
    "go": "< 1%",
    "min_volume": {"query": "sum(increase(requests[5m]))", "at_least": 100},
}


@pytest.mark.parametrize(
    ("volume", "expected", "reason"),
    [
        (ok(5200), PASS, "0.4 % < 1 % (go: < 1%)"),
        (ok(42), INCONCLUSIVE, "only 42 requests in window, need 100"),
        (
            Measurement.error("prometheus: HTTP 503", T0),
            INCONCLUSIVE,
            "volume unknown: prometheus: HTTP 503",
        ),
        (None, INCONCLUSIVE, "volume unknown: not measured"),
    ],
    ids=["enough", "too little", "volume query failed", "volume not measured"],
)
def test_min_volume_query_measurement_decides_volume(
    volume: Measurement | None, expected: CriterionOutcome, reason: str
) -> None:
    # The value's own volume (1e6) is ignored once min_volume.query is set.
    result = outcome(MIN_VOLUME_QUERY, ok(0.004, volume=1e6), volume=volume)
    assert (result.outcome, result.reason) == (expected, reason)
    if expected is PASS:
        assert result.volume == 5200


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_volume_query_answer_is_inconclusive(bad: float) -> None:
    volume = Measurement(MeasurementStatus.OK, T0, bad)
    result = outcome(MIN_VOLUME_QUERY, ok(0.004), volume=volume)
    assert result.outcome is INCONCLUSIVE
    assert result.reason == f"volume unknown: volume is {bad!r}, not a finite number"


def test_a_non_finite_volume_is_never_shown_as_a_number() -> None:
    result = outcome({"name": "errors", "go": "< 1%"}, ok(0.004, volume=math.nan))
    assert result.outcome is PASS
    assert result.volume is None


def test_result_carries_what_the_decision_body_shows() -> None:
    result = outcome(AVAILABILITY, ok(0.9931, volume=5200), duration_ms=12.5)
    assert result.as_dict() == {
        "name": "availability",
        "outcome": "fail",
        "value": 0.9931,
        "volume": 5200,
        "go": "> 99.9%",
        "rollback": "< 95%",
        "reason": "99.31 % <= 99.9 % (go: > 99.9%)",
        "probe": "p",
        "duration_ms": 12.5,
        "dry_run": False,
        "baseline": None,
        "unit": "percent",
    }


# -- decide: the history of samples -----------------------------------------------------------

GOOD, LOW, DOWN = 0.9995, 0.99, 0.9


def test_go_needs_steady_for_consecutive_all_pass_samples() -> None:
    gate = make_gate(AVAILABILITY, steady_for=3)
    two = decide(gate, history(gate, *[{"availability": GOOD}] * 2))
    assert two.decision is Decision.NO_GO
    assert two.reasons == ("steady 2/3",)
    assert (two.steady.passes, two.steady.needed) == (2, 3)
    three = decide(gate, history(gate, *[{"availability": GOOD}] * 3))
    assert three.decision is Decision.GO
    assert three.reasons == ()


def test_steady_count_is_reset_by_any_non_pass() -> None:
    gate = make_gate(AVAILABILITY, {"name": "latency", "go": "< 2s"}, steady_for=3)
    good: dict[str, Measurement | float] = {"availability": GOOD, "latency": 0.4}
    interruptions: list[dict[str, Measurement | float]] = [
        {"availability": LOW, "latency": 0.4},  # fail
        {"availability": DOWN, "latency": 0.4},  # breach
        {"availability": GOOD, "latency": Measurement.error("refused", T0)},  # inconclusive
    ]
    for interruption in interruptions:
        verdict = decide(gate, history(gate, good, good, good, interruption, good))
        assert verdict.decision is Decision.NO_GO, interruption
        assert "steady 1/3" in verdict.reasons
    recovered = decide(
        gate, history(gate, good, {"availability": LOW, "latency": 0.4}, *[good] * 3)
    )
    assert recovered.decision is Decision.GO


def test_steady_reason_counts_the_current_run() -> None:
    gate = make_gate(AVAILABILITY, steady_for=3)
    verdict = decide(gate, history(gate, {"availability": LOW}, {"availability": GOOD}))
    assert verdict.reasons == ("steady 1/3",)


def test_rollback_after_uses_the_gate_default() -> None:
    gate = make_gate(AVAILABILITY, rollback_after=2)
    once = decide(gate, history(gate, {"availability": GOOD}, {"availability": DOWN}))
    assert once.decision is Decision.NO_GO
    assert once.reasons[0] == "availability: 90 % < 95 % (rollback: < 95%) [breach 1/2]"
    twice = decide(gate, history(gate, {"availability": DOWN}, {"availability": DOWN}))
    assert twice.decision is Decision.ROLLBACK
    assert twice.reasons == ("availability: 90 % < 95 % (rollback: < 95%) [breach 2/2]",)


def test_rollback_after_on_the_criterion_overrides_the_gate() -> None:
    alerts = {"name": "security", "go": "== 0", "rollback": "> 0", "rollback_after": 1}
    gate = make_gate(AVAILABILITY, alerts, rollback_after=3)
    verdict = decide(gate, history(gate, {"availability": GOOD, "security": 1}))
    assert verdict.decision is Decision.ROLLBACK
    assert verdict.reasons == ("security: 1 > 0 (rollback: > 0) [breach 1/1]",)


def test_rollback_needs_consecutive_breaches() -> None:
    gate = make_gate(AVAILABILITY, rollback_after=2)
    broken_run = history(
        gate, {"availability": DOWN}, {"availability": LOW}, {"availability": DOWN}
    )
    assert decide(gate, broken_run).decision is Decision.NO_GO


def test_rollback_beats_go_and_missing_signoffs() -> None:
    alerts = {"name": "security", "go": "== 0", "rollback": "> 0", "rollback_after": 1}
    gate = make_gate(AVAILABILITY, alerts, steady_for=1)
    verdict = decide(
        gate,
        history(gate, {"availability": GOOD, "security": 2}),
        required_signoffs=["uat"],
    )
    assert verdict.decision is Decision.ROLLBACK


def test_inconclusive_never_yields_go() -> None:
    gate = make_gate(AVAILABILITY, steady_for=1)
    verdict = decide(
        gate, history(gate, {"availability": Measurement.timeout("no answer within 5s", T0)})
    )
    assert verdict.decision is Decision.NO_GO
    assert verdict.reasons == ("availability: no answer within 5s", "steady 0/1")


def test_missing_signoff_blocks_go() -> None:
    gate = make_gate(AVAILABILITY, steady_for=1)
    samples = history(gate, {"availability": GOOD})
    blocked = decide(
        gate, samples, required_signoffs=["uat", "clinical-safety"], recorded_signoffs={"uat"}
    )
    assert blocked.decision is Decision.NO_GO
    assert blocked.reasons == ("missing sign-off: clinical-safety",)
    signed = decide(
        gate,
        samples,
        required_signoffs=["uat", "clinical-safety"],
        recorded_signoffs={"uat", "clinical-safety"},
    )
    assert signed.decision is Decision.GO


def test_no_go_lists_failing_inconclusive_steady_and_signoffs() -> None:
    gate = make_gate(
        AVAILABILITY, {"name": "error-rate", "go": "< 1%", "rollback": "> 5%"}, steady_for=3
    )
    samples = history(
        gate,
        {"availability": GOOD, "error-rate": 0.002},
        {"availability": Measurement.error("refused", T0), "error-rate": 0.013},
    )
    verdict = decide(gate, samples, required_signoffs=["uat"])
    assert verdict.reasons == (
        "availability: refused",
        "error-rate: 1.3 % >= 1 % (go: < 1%)",
        "steady 0/3",
        "missing sign-off: uat",
    )
    assert verdict.evaluated_at == samples[-1].evaluated_at
    assert [c.name for c in verdict.criteria] == ["availability", "error-rate"]


def test_no_sample_yet_is_no_go() -> None:
    gate = make_gate(AVAILABILITY)
    verdict = decide(gate, [])
    assert verdict.decision is Decision.NO_GO
    assert verdict.reasons == ("no sample yet",)


def test_a_criterion_missing_from_a_sample_is_not_a_pass() -> None:
    gate = make_gate(AVAILABILITY, {"name": "latency", "go": "< 2s"}, steady_for=1)
    partial = Sample(T0, (judge(gate.criteria[0], ok(GOOD)),))
    verdict = decide(gate, [partial])
    assert verdict.decision is Decision.NO_GO
    assert "latency: not evaluated in this sample" in verdict.reasons


def test_decide_safely_turns_an_engine_fault_into_no_go(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = make_gate(AVAILABILITY, steady_for=1)
    samples = history(gate, {"availability": GOOD})

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(gates.engine, "decide", broken)
    verdict = decide_safely(gate, samples)
    assert verdict.decision is Decision.NO_GO
    assert verdict.reasons == ("engine error: ZeroDivisionError: division by zero",)
    assert verdict.evaluated_at == samples[-1].evaluated_at


def test_decide_safely_is_decide_when_nothing_breaks() -> None:
    gate = make_gate(AVAILABILITY, steady_for=1)
    samples = history(gate, {"availability": GOOD})
    assert decide_safely(gate, samples) == decide(gate, samples)


def test_verdict_body_has_the_spec_shape() -> None:
    gate = make_gate(AVAILABILITY, steady_for=3)
    body = decide(gate, history(gate, {"availability": GOOD})).as_dict()
    assert body["gate"] == "portal"
    assert body["decision"] == "no_go"
    assert body["evaluated_at"] == "2026-11-24T10:00:00Z"
    assert body["steady"] == {"passes": 1, "needed": 3}
    assert body["reasons"] == ["steady 1/3"]
    assert body["criteria"][0]["outcome"] == "pass"


# -- time: gaps between samples and breach runs with inconclusive samples --------------------

ERROR = Measurement.error("prometheus: connection refused after 3 tries", T0)


def timed(gate: Gate, *rows: tuple[float, Mapping[str, Measurement | float]]) -> list[Sample]:
    """Samples at the given seconds after T0; each row maps a criterion to its answer."""
    samples = []
    for seconds, row in rows:
        results = []
        for criterion in gate.criteria:
            answer = row[criterion.name]
            measurement = answer if isinstance(answer, Measurement) else ok(answer)
            results.append(judge(criterion, measurement))
        samples.append(Sample(T0 + timedelta(seconds=seconds), tuple(results)))
    return samples


@pytest.mark.parametrize(
    ("interval", "bound"),
    [("30s", 90), ("1s", 10), ("3s", 10), ("4s", 12), ("5m", 900)],
)
def test_gap_bound_is_three_intervals_and_at_least_ten_seconds(interval: str, bound: int) -> None:
    gate = make_gate(AVAILABILITY, interval=interval)
    assert gap_bound(gate) == timedelta(seconds=bound)
    assert freshness_bound(gate) == gap_bound(gate)


H = 3600.0
TIME_TABLE: list[tuple[str, dict[str, Any], list[tuple[float, Any]], Decision, tuple[str, ...]]] = [
    # (rule, gate fields, [(seconds, availability answer)], decision, reasons)
    (
        "two passes, three hours down, one pass: the gap breaks the steady run",
        {"steady_for": 3},
        [(0, GOOD), (30, GOOD), (30 + 3 * H, GOOD)],
        Decision.NO_GO,
        (
            "steady 1/3",
            "gap of 3h between samples at 2026-11-24T10:00:30Z and 2026-11-24T13:00:30Z"
            " (more than 1m30s) broke the runs",
        ),
    ),
    (
        "after a gap, steady_for fresh passes go",
        {"steady_for": 3},
        [(0, GOOD), (30, GOOD), (3 * H, GOOD), (3 * H + 30, GOOD), (3 * H + 60, GOOD)],
        Decision.GO,
        (),
    ),
    (
        "samples exactly the gap bound apart keep the run",
        {"steady_for": 3},
        [(0, GOOD), (90, GOOD), (180, GOOD)],
        Decision.GO,
        (),
    ),
    (
        "one second past the gap bound breaks it",
        {"steady_for": 3},
        [(0, GOOD), (90, GOOD), (181, GOOD)],
        Decision.NO_GO,
        (
            "steady 1/3",
            "gap of 1m31s between samples at 2026-11-24T10:01:30Z and 2026-11-24T10:03:01Z"
            " (more than 1m30s) broke the runs",
        ),
    ),
    (
        "the 10s floor: a 1s gate keeps its run over a 10s pause",
        {"steady_for": 2, "interval": "1s"},
        [(0, GOOD), (10, GOOD)],
        Decision.GO,
        (),
    ),
    (
        "the 10s floor: an 11s pause breaks a 1s gate's run",
        {"steady_for": 2, "interval": "1s"},
        [(0, GOOD), (11, GOOD)],
        Decision.NO_GO,
        (
            "steady 1/2",
            "gap of 11s between samples at 2026-11-24T10:00:00Z and 2026-11-24T10:00:11Z"
            " (more than 10s) broke the runs",
        ),
    ),
    (
        "samples out of order break the run",
        {"steady_for": 2},
        [(30, GOOD), (0, GOOD)],
        Decision.NO_GO,
        (
            "steady 1/2",
            "samples out of order (2026-11-24T10:00:00Z after 2026-11-24T10:00:30Z) broke the runs",
        ),
    ),
    (
        "probe failures are samples, not gaps: the run resumes after them",
        {"steady_for": 2},
        [(0, GOOD), (30, ERROR), (60, ERROR), (90, GOOD), (120, GOOD)],
        Decision.GO,
        (),
    ),
    (
        "an inconclusive sample still breaks a steady run (it is not a pass)",
        {"steady_for": 3},
        [(0, GOOD), (30, GOOD), (60, ERROR), (90, GOOD)],
        Decision.NO_GO,
        ("steady 1/3",),
    ),
    (
        "a gap breaks a breach run",
        {"rollback_after": 2},
        [(0, DOWN), (3 * H, DOWN)],
        Decision.NO_GO,
        (
            "availability: 90 % < 95 % (rollback: < 95%) [breach 1/2]",
            "steady 0/3",
        ),
    ),
    (
        "breach, probe error, breach: an inconclusive sample does not break a breach run",
        {"rollback_after": 2},
        [(0, DOWN), (30, ERROR), (60, DOWN)],
        Decision.ROLLBACK,
        ("availability: 90 % < 95 % (rollback: < 95%) [breach 2/2]",),
    ),
    (
        "breach, error, breach, error: still rollback, and the latest error is explained",
        {"rollback_after": 2},
        [(0, DOWN), (30, ERROR), (60, DOWN), (90, ERROR)],
        Decision.ROLLBACK,
        (
            "availability: 90 % < 95 % (rollback: < 95%) [breach 2/2]",
            "availability: prometheus: connection refused after 3 tries",
        ),
    ),
    (
        "breach then errors: an inconclusive sample does not extend a breach run",
        {"rollback_after": 2},
        [(0, DOWN), (30, ERROR), (60, ERROR)],
        Decision.NO_GO,
        (
            "availability: prometheus: connection refused after 3 tries [breach 1/2 so far]",
            "steady 0/3",
        ),
    ),
    (
        "a gap between a breach and an error still breaks the breach run",
        {"rollback_after": 2},
        [(0, DOWN), (3 * H, ERROR), (3 * H + 30, DOWN)],
        Decision.NO_GO,
        (
            "availability: 90 % < 95 % (rollback: < 95%) [breach 1/2]",
            "steady 0/3",
        ),
    ),
    (
        "a fail breaks a breach run",
        {"rollback_after": 2},
        [(0, DOWN), (30, ERROR), (60, LOW), (90, DOWN)],
        Decision.NO_GO,
        ("availability: 90 % < 95 % (rollback: < 95%) [breach 1/2]", "steady 0/3"),
    ),
    (
        "a pass breaks a breach run",
        {"rollback_after": 2},
        [(0, DOWN), (30, GOOD), (60, ERROR), (90, DOWN)],
        Decision.NO_GO,
        ("availability: 90 % < 95 % (rollback: < 95%) [breach 1/2]", "steady 0/3"),
    ),
]


@pytest.mark.parametrize(
    ("fields", "rows", "expected", "reasons"),
    [row[1:] for row in TIME_TABLE],
    ids=[row[0] for row in TIME_TABLE],
)
def test_time_rule(
    fields: dict[str, Any],
    rows: list[tuple[float, Any]],
    expected: Decision,
    reasons: tuple[str, ...],
) -> None:
    gate = make_gate(AVAILABILITY, **fields)
    verdict = decide(gate, timed(gate, *((at, {"availability": a}) for at, a in rows)))
    assert (verdict.decision, verdict.reasons) == (expected, reasons)


def test_rollback_explains_every_failing_and_inconclusive_criterion() -> None:
    gate = make_gate(
        AVAILABILITY,
        {"name": "error-rate", "go": "< 1%", "rollback": "> 5%"},
        {"name": "latency", "go": "< 2s"},
        {"name": "fatal", "go": "== 0"},
        rollback_after=2,
    )
    good = {"availability": GOOD, "error-rate": 0.002, "latency": 0.3, "fatal": 0}
    samples = timed(
        gate,
        (0, {**good, "availability": DOWN, "error-rate": 0.07}),
        (30, {**good, "availability": DOWN, "error-rate": 0.013, "latency": ERROR}),
    )
    verdict = decide(gate, samples, required_signoffs=["uat"])
    assert verdict.decision is Decision.ROLLBACK
    assert verdict.reasons == (
        "availability: 90 % < 95 % (rollback: < 95%) [breach 2/2]",
        "error-rate: 1.3 % >= 1 % (go: < 1%)",
        "latency: prometheus: connection refused after 3 tries",
    )


def test_rollback_of_two_criteria_lists_both_and_the_open_breach_of_a_third() -> None:
    gate = make_gate(
        AVAILABILITY,
        {"name": "error-rate", "go": "< 1%", "rollback": "> 5%", "rollback_after": 1},
        {"name": "saturation", "go": "< 80%", "rollback": "> 95%", "rollback_after": 3},
        rollback_after=2,
    )
    row = {"availability": DOWN, "error-rate": 0.07, "saturation": 0.97}
    verdict = decide(gate, timed(gate, (0, row), (30, row)))
    assert verdict.decision is Decision.ROLLBACK
    assert verdict.reasons == (
        "availability: 90 % < 95 % (rollback: < 95%) [breach 2/2]",
        "error-rate: 7 % > 5 % (rollback: > 5%) [breach 1/1]",
        "saturation: 97 % > 95 % (rollback: > 95%) [breach 2/3]",
    )


def test_a_sample_without_results_neither_extends_nor_breaks_a_breach_run() -> None:
    """A check's sample that failed outside the probes is recorded with no results."""
    gate = make_gate(AVAILABILITY, rollback_after=2)
    samples = timed(gate, (0, {"availability": DOWN}))
    samples.append(Sample(T0 + timedelta(seconds=30), ()))
    samples += timed(gate, (60, {"availability": DOWN}))
    assert decide(gate, samples).decision is Decision.ROLLBACK


# -- properties -------------------------------------------------------------------------------

OUTCOMES = [PASS, FAIL, BREACH, INCONCLUSIVE]


@st.composite
def gates_and_histories(draw: st.DrawFn) -> tuple[Gate, list[Sample]]:
    count = draw(st.integers(1, 3))
    criteria = []
    for index in range(count):
        spec: dict[str, Any] = {"name": f"c{index}", "go": "> 0"}
        if draw(st.booleans()):
            spec["rollback"] = "< -1"
            spec["rollback_after"] = draw(st.none() | st.integers(1, 4))
        criteria.append(spec)
    gate = make_gate(
        *criteria, steady_for=draw(st.integers(1, 4)), rollback_after=draw(st.integers(1, 4))
    )
    length = draw(st.integers(0, 8))
    samples = []
    for step in range(length):
        results = []
        for criterion in gate.criteria:
            # A breach is only possible for a criterion with a rollback condition.
            choices = OUTCOMES if criterion.rollback else [PASS, FAIL, INCONCLUSIVE]
            results.append(
                CriterionResult(
                    name=criterion.name,
                    outcome=draw(st.sampled_from(choices)),
                    reason="drawn",
                    probe="p",
                    go="> 0",
                )
            )
        samples.append(Sample(T0 + timedelta(seconds=step), tuple(results)))
    return gate, samples


def conclusive_breaches(samples: Sequence[Sample], name: str) -> int:
    """Trailing breaches among the conclusive outcomes (inconclusive ones are skipped)."""
    count = 0
    for sample in reversed(samples):
        found = sample.outcome_of(name)
        if found is INCONCLUSIVE or found is None:
            continue
        if found is not BREACH:
            break
        count += 1
    return count


@settings(max_examples=400, deadline=None)
@given(gates_and_histories(), st.booleans())
def test_property_go_only_after_steady_passes_rollback_only_after_breaches(
    drawn: tuple[Gate, list[Sample]], signed: bool
) -> None:
    gate, samples = drawn
    recorded = {"uat"} if signed else set()
    verdict = decide_safely(gate, samples, required_signoffs=["uat"], recorded_signoffs=recorded)

    recent = samples[-gate.steady_for :]
    any_non_pass = len(samples) < gate.steady_for or any(
        s.outcome_of(c.name) is not PASS for s in recent for c in gate.criteria
    )
    if any_non_pass or not signed:
        assert verdict.decision is not Decision.GO

    should_roll_back = any(
        c.rollback and conclusive_breaches(samples, c.name) >= gate.rollback_after_for(c)
        for c in gate.criteria
    )
    assert (verdict.decision is Decision.ROLLBACK) == should_roll_back
    if not should_roll_back and not any_non_pass and signed:
        assert verdict.decision is Decision.GO


# Absolute bounds are unsigned: a signed number is relative to a baseline.
finite = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), finite, finite)
def test_property_judge_is_consistent_with_the_conditions(
    value: float, go: float, rollback: float
) -> None:
    criterion = Criterion(name="c", probe="p", go=f"> {go!r}", rollback=f"< {rollback!r}")
    result = judge(criterion, Measurement.ok(value, T0))
    if value < rollback:
        assert result.outcome is BREACH
    elif value > go:
        assert result.outcome is PASS
    else:
        assert result.outcome is FAIL
    assert result.value == value
    assert result.status is MeasurementStatus.OK


def test_judge_keeps_observation_time_for_history() -> None:
    moment = datetime(2026, 1, 1, tzinfo=T0.tzinfo)
    result = outcome(AVAILABILITY, Measurement.ok(0.5, moment, extra={"up": 0.0}))
    measurement = result.as_measurement()
    assert measurement is not None
    assert (measurement.observed_at, measurement.value, dict(measurement.extra)) == (
        moment,
        0.5,
        {"up": 0.0},
    )


# -- properties with time: gaps, restarts and interleaved probe errors -------------------------

BOUND_OF = {1: 10, 5: 15, 30: 90}


@st.composite
def timed_histories(draw: st.DrawFn) -> tuple[Gate, list[Sample]]:
    """A gate and a history whose samples come on time, late within the gap bound, after
    a gap (a pause, a restart), with probe errors interleaved anywhere."""
    interval = draw(st.sampled_from(sorted(BOUND_OF)))
    bound = BOUND_OF[interval]
    count = draw(st.integers(1, 3))
    criteria = []
    for index in range(count):
        spec: dict[str, Any] = {"name": f"c{index}", "go": "> 0"}
        if draw(st.booleans()):
            spec["rollback"] = "< -1"
            spec["rollback_after"] = draw(st.none() | st.integers(1, 4))
        criteria.append(spec)
    gate = make_gate(
        *criteria,
        interval=f"{interval}s",
        steady_for=draw(st.integers(1, 4)),
        rollback_after=draw(st.integers(1, 4)),
    )
    steps = st.sampled_from(["on time", "late", "gap", "restart"])
    at = T0
    samples = []
    for step in range(draw(st.integers(0, 12))):
        if step:
            kind = draw(steps)
            if kind == "on time":
                at += timedelta(seconds=interval)
            elif kind == "late":
                at += timedelta(seconds=draw(st.integers(1, bound)))
            elif kind == "gap":
                at += timedelta(seconds=draw(st.integers(bound + 1, 10 * bound)))
            else:
                at += timedelta(hours=draw(st.integers(1, 48)))
        results = []
        for criterion in gate.criteria:
            choices = OUTCOMES if criterion.rollback else [PASS, FAIL, INCONCLUSIVE]
            results.append(
                CriterionResult(
                    name=criterion.name,
                    outcome=draw(st.sampled_from(choices)),
                    reason="drawn",
                    probe="p",
                    go="> 0",
                )
            )
        samples.append(Sample(at, tuple(results)))
    return gate, samples


def after_last_gap(samples: Sequence[Sample], bound: timedelta) -> list[Sample]:
    start = 0
    for index in range(1, len(samples)):
        if samples[index].evaluated_at - samples[index - 1].evaluated_at > bound:
            start = index
    return list(samples[start:])


@settings(max_examples=600, deadline=None)
@given(timed_histories(), st.booleans())
def test_property_time_no_go_across_a_gap_and_rollback_exactly_on_conclusive_breaches(
    drawn: tuple[Gate, list[Sample]], signed: bool
) -> None:
    gate, samples = drawn
    bound = timedelta(seconds=BOUND_OF[int(gate.interval.total_seconds())])
    verdict = decide_safely(
        gate, samples, required_signoffs=["uat"], recorded_signoffs={"uat"} if signed else set()
    )

    recent = samples[-gate.steady_for :]
    all_pass = len(samples) >= gate.steady_for and all(
        s.outcome_of(c.name) is PASS for s in recent for c in gate.criteria
    )
    gap_in_run = any(
        later.evaluated_at - earlier.evaluated_at > bound
        for earlier, later in itertools.pairwise(recent)
    )
    if gap_in_run or not all_pass or not signed:
        assert verdict.decision is not Decision.GO

    segment = after_last_gap(samples, bound)
    should_roll_back = any(
        c.rollback and conclusive_breaches(segment, c.name) >= gate.rollback_after_for(c)
        for c in gate.criteria
    )
    assert (verdict.decision is Decision.ROLLBACK) == should_roll_back

    # The honest case: steady passes within the bound (and signed) still go.
    if all_pass and not gap_in_run and signed and not should_roll_back:
        assert verdict.decision is Decision.GO
    if verdict.decision is not Decision.GO:
        assert verdict.reasons


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5), st.integers(0, 6), st.data())
def test_property_inconclusives_between_breaches_never_delay_or_hasten_rollback(
    rollback_after: int, errors_between: int, data: st.DataObject
) -> None:
    """Breaches interleaved with any number of probe errors roll back exactly at the
    rollback_after-th breach, never earlier."""
    gate = make_gate(AVAILABILITY, rollback_after=rollback_after)
    rows: list[tuple[float, Any]] = []
    at = 0.0
    for breaches in range(1, rollback_after + 1):
        for _ in range(data.draw(st.integers(0, errors_between))):
            rows.append((at, ERROR))
            at += 30
        rows.append((at, DOWN))
        at += 30
        verdict = decide(gate, timed(gate, *((t, {"availability": a}) for t, a in rows)))
        expected = Decision.ROLLBACK if breaches == rollback_after else Decision.NO_GO
        assert verdict.decision is expected, rows


def test_the_samples_a_rollback_rests_on_include_the_inconclusive_ones_between_breaches() -> None:
    """A final check records its deciding samples: breach, error, breach is three."""
    gate = make_gate(AVAILABILITY, rollback_after=2, steady_for=2)
    flaky = timed(
        gate, *((at, {"availability": a}) for at, a in [(0, GOOD), (30, DOWN), (60, ERROR)])
    )
    flaky += timed(gate, (90, {"availability": DOWN}))
    assert decide(gate, flaky).decision is Decision.ROLLBACK
    assert deciding_count(gate, flaky, Decision.ROLLBACK) == 3
    steady = timed(gate, *((at, {"availability": GOOD}) for at in (0, 30, 60)))
    assert deciding_count(gate, steady, Decision.GO) == 2
    assert deciding_count(gate, steady, Decision.NO_GO) == 1
    assert deciding_count(gate, [], Decision.NO_GO) == 0
