"""The decision engine, one test (or table row) per rule in docs/decisions.md."""

from __future__ import annotations

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
    ("value meets go", AVAILABILITY, ok(0.9995), PASS, "0.9995 > 0.999 (go: > 99.9%)"),
    (
        "value misses go",
        AVAILABILITY,
        ok(0.9931),
        FAIL,
        "0.9931 <= 0.999 (go: > 99.9%)",
    ),
    ("value meets rollback", AVAILABILITY, ok(0.94), BREACH, "0.94 < 0.95 (rollback: < 95%)"),
    (
        "breach beats pass when both conditions hold",
        {"name": "latency", "go": "< 2s", "rollback": "> 500ms"},
        ok(0.8),
        BREACH,
        "0.8 > 0.5 (rollback: > 500ms)",
    ),
    (
        "go conditions in a list are ANDed",
        {"name": "ratio", "go": [">= 98%", "<= 100%"]},
        ok(1.01),
        FAIL,
        "1.01 > 1 (go: >= 98% and <= 100%)",
    ),
    (
        "ANDed go list passes only when every condition holds",
        {"name": "ratio", "go": [">= 98%", "<= 100%"]},
        ok(0.99),
        PASS,
        "0.99 >= 0.98 (go: >= 98% and <= 100%)",
    ),
    (
        "rollback conditions in a list are ANDed",
        {"name": "errors", "go": "< 1%", "rollback": ["> 5%", "< 50%"]},
        ok(0.6),
        FAIL,
        "0.6 >= 0.01 (go: < 1%)",
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
        "0 < 0.01 (go: < 1%)",
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
        (ok(5200), PASS, "0.004 < 0.01 (go: < 1%)"),
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


def test_result_carries_what_the_decision_body_shows() -> None:
    result = outcome(AVAILABILITY, ok(0.9931, volume=5200), duration_ms=12.5)
    assert result.as_dict() == {
        "name": "availability",
        "outcome": "fail",
        "value": 0.9931,
        "volume": 5200,
        "go": "> 99.9%",
        "rollback": "< 95%",
        "reason": "0.9931 <= 0.999 (go: > 99.9%)",
        "probe": "p",
        "duration_ms": 12.5,
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
    assert once.reasons[0] == "availability: 0.9 < 0.95 (rollback: < 95%) [breach 1/2]"
    twice = decide(gate, history(gate, {"availability": DOWN}, {"availability": DOWN}))
    assert twice.decision is Decision.ROLLBACK
    assert twice.reasons == ("availability: 0.9 < 0.95 (rollback: < 95%) [breach 2/2]",)


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
        "error-rate: 0.013 >= 0.01 (go: < 1%)",
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


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(finite, finite, finite)
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
