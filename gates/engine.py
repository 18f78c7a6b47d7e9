"""The pure decision engine (its rules are in docs/decisions.md).

``judge`` turns one measurement into a criterion outcome; ``decide`` turns the history of
samples (plus sign-offs, for a check) into a decision with reasons. Neither does I/O nor
reads a clock. The engine fails closed: anything unexpected becomes ``no_go``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gates.conditions import Condition, describe_conditions
from gates.model import Criterion, Gate, NoDataPolicy
from probes.base import Measurement, MeasurementStatus
from probes.timefmt import iso


class CriterionOutcome(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    BREACH = "breach"
    INCONCLUSIVE = "inconclusive"


class Decision(enum.StrEnum):
    GO = "go"
    NO_GO = "no_go"
    ROLLBACK = "rollback"


_NEGATED = {">": "<=", ">=": "<", "<": ">=", "<=": ">", "==": "!=", "!=": "=="}


def format_number(value: float) -> str:
    return f"{value:.6g}"


@dataclass(frozen=True, slots=True)
class CriterionResult:
    """One criterion's outcome in one sample (the ``criteria[]`` items of a decision)."""

    name: str
    outcome: CriterionOutcome
    reason: str
    probe: str
    go: str
    rollback: str | None = None
    value: float | None = None
    volume: float | None = None
    duration_ms: float | None = None
    status: MeasurementStatus | None = None
    observed_at: datetime | None = None
    extra: Mapping[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "outcome": self.outcome.value,
            "value": self.value,
            "volume": self.volume,
            "go": self.go,
            "rollback": self.rollback,
            "reason": self.reason,
            "probe": self.probe,
            "duration_ms": self.duration_ms,
        }

    def as_measurement(self) -> Measurement | None:
        """The measurement behind this result, for a probe's ``ProbeContext.history``."""
        if self.status is None or self.observed_at is None:
            return None
        return Measurement(
            self.status, self.observed_at, self.value, self.volume, "", dict(self.extra)
        )


@dataclass(frozen=True, slots=True)
class Sample:
    """Every criterion of a gate judged at one instant."""

    evaluated_at: datetime
    results: tuple[CriterionResult, ...]

    def outcome_of(self, criterion: str) -> CriterionOutcome | None:
        for result in self.results:
            if result.name == criterion:
                return result.outcome
        return None


@dataclass(frozen=True, slots=True)
class Steady:
    passes: int
    needed: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """A decision with everything that explains it (the decision body; see docs/decisions.md)."""

    gate: str
    decision: Decision
    evaluated_at: datetime | None
    reasons: tuple[str, ...]
    steady: Steady
    criteria: tuple[CriterionResult, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "decision": self.decision.value,
            "evaluated_at": iso(self.evaluated_at),
            "reasons": list(self.reasons),
            "steady": {"passes": self.steady.passes, "needed": self.steady.needed},
            "criteria": [c.as_dict() for c in self.criteria],
        }


# A decision is trusted for three intervals, and never for less than this.
FRESHNESS_FLOOR = timedelta(seconds=10)


def freshness_bound(gate: Gate) -> timedelta:
    """How long a decision of ``gate`` stays trustworthy: ``max(3 x interval, 10s)``.

    A decision expires at ``evaluated_at + freshness_bound(gate)`` (docs/decisions.md,
    "Freshness and expiry")."""
    return max(3 * gate.interval, FRESHNESS_FLOOR)


def no_sample_verdict(gate: str, steady_for: int) -> Verdict:
    """The decision before a gate or check has any sample: ``no_go``, "no sample yet"."""
    return Verdict(gate, Decision.NO_GO, None, ("no sample yet",), Steady(0, steady_for), ())


def _conditions_text(conditions: tuple[Condition, ...] | None) -> str | None:
    return describe_conditions(conditions) if conditions else None


def _first_unmet(conditions: tuple[Condition, ...], value: float) -> Condition | None:
    return next((c for c in conditions if not c.holds(value)), None)


def inconclusive(
    criterion: Criterion, reason: str, *, measurement: Measurement | None = None
) -> CriterionResult:
    """An inconclusive outcome for ``criterion`` (probe error, unfilled placeholder, ...)."""
    return CriterionResult(
        name=criterion.name,
        outcome=CriterionOutcome.INCONCLUSIVE,
        reason=reason,
        probe=criterion.probe,
        go=describe_conditions(criterion.go),
        rollback=_conditions_text(criterion.rollback),
        status=measurement.status if measurement else None,
        observed_at=measurement.observed_at if measurement else None,
        extra=dict(measurement.extra) if measurement else {},
    )


def judge(
    criterion: Criterion,
    measurement: Measurement,
    *,
    volume: Measurement | None = None,
    duration_ms: float | None = None,
) -> CriterionResult:
    """The outcome of one measurement against one criterion.

    ``volume`` is the separate ``min_volume.query`` measurement, when the criterion has one;
    otherwise the measurement's own ``volume`` is used.
    """
    go_text = describe_conditions(criterion.go)
    rollback_text = _conditions_text(criterion.rollback)

    def result(outcome: CriterionOutcome, reason: str, **known: Any) -> CriterionResult:
        return CriterionResult(
            name=criterion.name,
            outcome=outcome,
            reason=reason,
            probe=criterion.probe,
            go=go_text,
            rollback=rollback_text,
            duration_ms=duration_ms,
            status=measurement.status,
            observed_at=measurement.observed_at,
            extra=dict(measurement.extra),
            **known,
        )

    if measurement.status is MeasurementStatus.NO_DATA:
        cause = measurement.detail or "empty result"
        if criterion.no_data is NoDataPolicy.PASS:
            return result(CriterionOutcome.PASS, f"no data ({cause}); no_data: pass")
        if criterion.no_data is NoDataPolicy.FAIL:
            return result(CriterionOutcome.FAIL, f"no data ({cause}); no_data: fail")
        return result(CriterionOutcome.INCONCLUSIVE, f"no data: {cause}")
    if measurement.status is not MeasurementStatus.OK or measurement.value is None:
        return result(
            CriterionOutcome.INCONCLUSIVE, measurement.detail or f"probe {measurement.status}"
        )

    value = measurement.value
    traffic = measurement.volume
    if criterion.min_volume is not None:
        if criterion.min_volume.query is not None:
            if volume is None or volume.status is not MeasurementStatus.OK:
                cause = volume.detail if volume is not None else "not measured"
                return result(
                    CriterionOutcome.INCONCLUSIVE, f"volume unknown: {cause}", value=value
                )
            traffic = volume.value
        if traffic is None:
            return result(
                CriterionOutcome.INCONCLUSIVE,
                "volume unknown: this probe reports no volume; set min_volume.query",
                value=value,
            )
        if traffic < criterion.min_volume.at_least:
            return result(
                CriterionOutcome.INCONCLUSIVE,
                f"only {format_number(traffic)} requests in window,"
                f" need {format_number(criterion.min_volume.at_least)}",
                value=value,
                volume=traffic,
            )

    shown = format_number(value)
    if criterion.rollback and all(c.holds(value) for c in criterion.rollback):
        first = criterion.rollback[0]
        return result(
            CriterionOutcome.BREACH,
            f"{shown} {first.op} {format_number(first.threshold)} (rollback: {rollback_text})",
            value=value,
            volume=traffic,
        )
    unmet = _first_unmet(criterion.go, value)
    if unmet is None:
        first = criterion.go[0]
        return result(
            CriterionOutcome.PASS,
            f"{shown} {first.op} {format_number(first.threshold)} (go: {go_text})",
            value=value,
            volume=traffic,
        )
    return result(
        CriterionOutcome.FAIL,
        f"{shown} {_NEGATED[unmet.op]} {format_number(unmet.threshold)} (go: {go_text})",
        value=value,
        volume=traffic,
    )


def _trailing(history: Sequence[Sample], criterion: str, outcome: CriterionOutcome) -> int:
    count = 0
    for sample in reversed(history):
        if sample.outcome_of(criterion) is not outcome:
            break
        count += 1
    return count


def _all_pass(sample: Sample, criteria: Sequence[Criterion]) -> bool:
    return all(sample.outcome_of(c.name) is CriterionOutcome.PASS for c in criteria)


def steady_passes(gate: Gate, history: Sequence[Sample]) -> int:
    """How many of the most recent samples in a row had every criterion pass."""
    count = 0
    for sample in reversed(history):
        if not _all_pass(sample, gate.criteria):
            break
        count += 1
    return count


def decide(
    gate: Gate,
    history: Sequence[Sample],
    *,
    required_signoffs: Sequence[str] = (),
    recorded_signoffs: Set[str] = frozenset(),
) -> Verdict:
    """The gate's decision from its samples, oldest first (docs/decisions.md).

    Pass ``required_signoffs`` for a check (the gate's sign-off ids); the continuous gate
    decision has none.
    """
    needed = gate.steady_for
    if not history:
        return no_sample_verdict(gate.name, needed)
    latest = history[-1]

    rollback_reasons = []
    for criterion in gate.criteria:
        if not criterion.rollback:
            continue
        required = gate.rollback_after_for(criterion)
        breaches = _trailing(history, criterion.name, CriterionOutcome.BREACH)
        if breaches >= required:
            rollback_reasons.append(
                f"{criterion.name}: {_latest_reason(latest, criterion.name)}"
                f" [breach {required}/{required}]"
            )
    passes = steady_passes(gate, history)
    steady = Steady(min(passes, needed), needed)
    if rollback_reasons:
        return Verdict(
            gate.name,
            Decision.ROLLBACK,
            latest.evaluated_at,
            tuple(rollback_reasons),
            steady,
            latest.results,
        )

    missing = [s for s in required_signoffs if s not in recorded_signoffs]
    if passes >= needed and not missing:
        return Verdict(gate.name, Decision.GO, latest.evaluated_at, (), steady, latest.results)

    reasons = []
    for criterion in gate.criteria:
        outcome = latest.outcome_of(criterion.name)
        if outcome is CriterionOutcome.PASS:
            continue
        reason = _latest_reason(latest, criterion.name)
        if outcome is CriterionOutcome.BREACH:
            breaches = _trailing(history, criterion.name, CriterionOutcome.BREACH)
            reason += f" [breach {breaches}/{gate.rollback_after_for(criterion)}]"
        reasons.append(f"{criterion.name}: {reason}")
    if passes < needed:
        reasons.append(f"steady {steady.passes}/{needed}")
    reasons.extend(f"missing sign-off: {s}" for s in missing)
    return Verdict(
        gate.name, Decision.NO_GO, latest.evaluated_at, tuple(reasons), steady, latest.results
    )


def _latest_reason(sample: Sample, criterion: str) -> str:
    for result in sample.results:
        if result.name == criterion:
            return result.reason
    return "not evaluated in this sample"


def decide_safely(
    gate: Gate,
    history: Sequence[Sample],
    *,
    required_signoffs: Sequence[str] = (),
    recorded_signoffs: Set[str] = frozenset(),
) -> Verdict:
    """``decide``, except that an engine fault is a ``no_go`` naming the fault, never a crash."""
    try:
        return decide(
            gate,
            history,
            required_signoffs=required_signoffs,
            recorded_signoffs=recorded_signoffs,
        )
    except Exception as fault:  # fail closed, whatever went wrong
        latest = history[-1] if history else None
        return Verdict(
            gate.name,
            Decision.NO_GO,
            latest.evaluated_at if latest else None,
            (f"engine error: {type(fault).__name__}: {fault}",),
            Steady(0, gate.steady_for),
            latest.results if latest else (),
        )
