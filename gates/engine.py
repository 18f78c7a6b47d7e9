"""The pure decision engine (its rules are in docs/decisions.md).

``judge`` turns one measurement into a criterion outcome; ``decide`` turns the history of
samples (plus sign-offs, for a check) into a decision with reasons. Neither does I/O nor
reads a clock. The engine fails closed: anything unexpected becomes ``no_go``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gates.conditions import (
    Condition,
    Relative,
    describe_conditions,
    format_duration,
    relative_conditions,
)
from gates.model import Criterion, Gate, NoDataPolicy
from gates.units import Unit, format_pair, format_value
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

# A run survives a pause between samples of up to this many intervals, and never less
# than the floor (a 1s gate may miss a few ticks to a slow source).
GAP_INTERVALS = 3
MIN_GAP_BOUND = timedelta(seconds=10)


def gap_bound(gate: Gate) -> timedelta:
    """``max(3 × interval, 10s)``: the one bound of "recent" for a gate.

    Two consecutive samples further apart than this break every steady and breach run
    (docs/decisions.md, "Gaps between samples"); a windowed value with a longer hole in
    its history is not covered ("Window coverage"); and a decision is fresh for this long
    after it was evaluated.
    """
    return max(gate.interval * GAP_INTERVALS, MIN_GAP_BOUND)


# The same bound, by the name the expiry of decisions uses.
freshness_bound = gap_bound


def format_number(value: float) -> str:
    """A plain number, as reasons without a unit show it (``0.329993``)."""
    return format_value(value)


@dataclass(frozen=True, slots=True)
class BaselineResult:
    """What a criterion's baseline run measured: its value (``None`` when it has none)
    and the placeholder values it filled the query with."""

    value: float | None
    vars: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "vars": dict(self.vars)}


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
    dry_run: bool = False
    baseline: BaselineResult | None = None
    # How a compare: or slo: criterion was judged (docs/decisions.md): JSON-ready.
    comparison: Mapping[str, Any] | None = None
    # The unit its values are shown in (docs/decisions.md, "Units shown"); None: plain numbers.
    unit: Unit | None = None

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "outcome": self.outcome.value,
            "value": self.value,
            "volume": self.volume,
            "go": self.go,
            "rollback": self.rollback,
            "reason": self.reason,
            "probe": self.probe,
            "duration_ms": self.duration_ms,
            "dry_run": self.dry_run,
            "baseline": self.baseline.as_dict() if self.baseline is not None else None,
            "unit": self.unit.value if self.unit is not None else None,
        }
        if self.comparison is not None:
            body["comparison"] = dict(self.comparison)
        return body

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
    # Why dry-run criteria did not pass: shown, never deciding.
    dry_run_reasons: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "decision": self.decision.value,
            "evaluated_at": iso(self.evaluated_at),
            "reasons": list(self.reasons),
            "dry_run_reasons": list(self.dry_run_reasons),
            "steady": {"passes": self.steady.passes, "needed": self.steady.needed},
            "criteria": [c.as_dict() for c in self.criteria],
        }


def no_sample_verdict(gate: str, steady_for: int) -> Verdict:
    """The decision before a gate or check has any sample: ``no_go``, "no sample yet"."""
    return Verdict(gate, Decision.NO_GO, None, ("no sample yet",), Steady(0, steady_for), ())


def _conditions_text(conditions: tuple[Condition, ...] | None) -> str | None:
    return describe_conditions(conditions) if conditions else None


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
        dry_run=criterion.dry_run,
        unit=criterion.value_unit(),
    )


@dataclass(frozen=True, slots=True)
class _Checked:
    """One condition against one value: whether it holds (``None``: it cannot be judged)
    and the words for it."""

    holds: bool | None
    words: str


def _check_condition(
    condition: Condition,
    value: float,
    baseline: float | None,
    label: str,
    text: str,
    unit: Unit | None = None,
) -> _Checked:
    """Values in ``unit``; a value and its bound never read as equal when they differ."""
    shown = format_value(value, unit)
    if condition.relative is None:
        holds = condition.holds(value)
        op = condition.op if holds else _NEGATED[condition.op]
        shown, bound_text = format_pair(value, condition.threshold, unit)
        return _Checked(holds, f"{shown} {op} {bound_text} ({label}: {text})")
    if baseline is None:
        return _Checked(None, f"{condition.text!r} needs a baseline ({label}: {text})")
    of = f"baseline {format_value(baseline, unit)} {condition.offset}"
    if condition.relative is Relative.PERCENT and baseline == 0 and value != 0:
        # Every percentage of 0 is 0: the bound would call any value above it infinitely
        # worse. Judging that is an absolute condition's job.
        return _Checked(
            None,
            f"{shown} against a baseline of 0: a percentage of 0 is 0, so {condition.text!r}"
            f" cannot judge it ({label}: {text})",
        )
    bound = condition.bound(baseline)
    if not math.isfinite(bound):
        return _Checked(None, f"the bound from {of} is not a finite number ({label}: {text})")
    holds = condition.compare(value, bound)
    op = condition.op if holds else _NEGATED[condition.op]
    shown, bound_text = format_pair(value, bound, unit)
    return _Checked(holds, f"{shown} {op} {bound_text} ({of}; {label}: {text})")


def _check_conditions(
    conditions: tuple[Condition, ...],
    value: float,
    baseline: float | None,
    label: str,
    *,
    defer_to_absolute: bool = False,
    unit: Unit | None = None,
) -> _Checked:
    """Conditions ANDed, in three values: false as soon as one is unmet, else unknown if
    one cannot be judged, else true; the words of the condition that settled it (the
    first, when all hold). With ``defer_to_absolute`` a list whose only unknowns are
    relative is settled by its absolute conditions, when it has any."""
    text = describe_conditions(conditions)
    checked = [_check_condition(c, value, baseline, label, text, unit) for c in conditions]
    unmet = next((c for c in checked if c.holds is False), None)
    if unmet is not None:
        return unmet
    unknown = [(c, k) for c, k in zip(conditions, checked, strict=True) if k.holds is None]
    if not unknown:
        return checked[0]
    absolute = [k for c, k in zip(conditions, checked, strict=True) if c.relative is None]
    if defer_to_absolute and absolute:
        left = ", ".join(repr(c.text) for c, _ in unknown)
        return _Checked(
            True, f"{absolute[0].words} [{left} cannot be judged; the absolute conditions decide]"
        )
    return unknown[0][1]


def _baseline_problem(
    criterion: Criterion, baseline: Measurement | None, vars_text: str
) -> str | None:
    """Why the baseline's value cannot be used, or None."""
    if criterion.baseline is None:
        return "a relative condition needs baseline:, and this criterion has none"
    if baseline is None:
        return f"baseline{vars_text}: not measured"
    if baseline.status is MeasurementStatus.NO_DATA:
        return f"baseline{vars_text}: no data: {baseline.detail or 'empty result'}"
    if baseline.status is not MeasurementStatus.OK or baseline.value is None:
        return f"baseline{vars_text}: {baseline.detail or f'probe {baseline.status}'}"
    if not math.isfinite(baseline.value):
        return f"baseline{vars_text}: value is {baseline.value!r}, not a finite number"
    return None


def judge(
    criterion: Criterion,
    measurement: Measurement,
    *,
    volume: Measurement | None = None,
    duration_ms: float | None = None,
    baseline: Measurement | None = None,
    baseline_vars: Mapping[str, str] | None = None,
) -> CriterionResult:
    """The outcome of one measurement against one criterion.

    ``volume`` is the separate ``min_volume.query`` measurement, when the criterion has one;
    otherwise the measurement's own ``volume`` is used. ``baseline`` is the measurement of
    the criterion's baseline run, ``baseline_vars`` the values it filled the query with;
    relative conditions are judged against its value.
    """
    go_text = describe_conditions(criterion.go)
    rollback_text = _conditions_text(criterion.rollback)
    unit = criterion.value_unit()
    baseline_value = (
        baseline.value
        if baseline is not None
        and baseline.status is MeasurementStatus.OK
        and baseline.value is not None
        and math.isfinite(baseline.value)
        else None
    )
    shown_baseline = (
        BaselineResult(baseline_value, dict(baseline_vars or {}))
        if criterion.baseline is not None
        else None
    )

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
            dry_run=criterion.dry_run,
            baseline=shown_baseline,
            unit=unit,
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
    if not math.isfinite(value):
        # Measurement.ok refuses these; a probe that builds its own must not slip one by.
        return result(CriterionOutcome.INCONCLUSIVE, f"value is {value!r}, not a finite number")
    traffic = _finite_or_none(measurement.volume)
    if criterion.min_volume is not None:
        if criterion.min_volume.query is not None:
            if volume is None or volume.status is not MeasurementStatus.OK:
                cause = volume.detail if volume is not None else "not measured"
                return result(
                    CriterionOutcome.INCONCLUSIVE, f"volume unknown: {cause}", value=value
                )
            traffic = volume.value
        else:
            traffic = measurement.volume
        if traffic is not None and not math.isfinite(traffic):
            # NaN compares false with everything: "NaN < at_least" would let it through.
            return result(
                CriterionOutcome.INCONCLUSIVE,
                f"volume unknown: volume is {traffic!r}, not a finite number",
                value=value,
            )
        if traffic is None:
            return result(
                CriterionOutcome.INCONCLUSIVE,
                "volume unknown: this probe reports no volume; set min_volume.query",
                value=value,
            )
        if traffic < criterion.min_volume.at_least:
            return result(
                CriterionOutcome.INCONCLUSIVE,
                f"only {format_value(traffic, Unit.COUNT)} requests in window,"
                f" need {format_value(criterion.min_volume.at_least, Unit.COUNT)}",
                value=value,
                volume=traffic,
            )

    if relative_conditions(criterion.go) or relative_conditions(criterion.rollback):
        vars_text = ", ".join(f"{k}={v}" for k, v in (baseline_vars or {}).items())
        problem = _baseline_problem(criterion, baseline, f" ({vars_text})" if vars_text else "")
        if problem is not None:
            # Without the baseline the absolute rollback conditions still judge the canary
            # on its own: a broken canary is not spared because its baseline is down.
            if criterion.rollback:
                breach = _check_conditions(
                    criterion.rollback, value, None, "rollback", defer_to_absolute=True, unit=unit
                )
                if breach.holds is True:
                    words = f"{breach.words}; {problem}"
                    return result(CriterionOutcome.BREACH, words, value=value, volume=traffic)
            return result(CriterionOutcome.INCONCLUSIVE, problem, value=value, volume=traffic)
    if criterion.rollback:
        # A broken canary must not escape rollback because its baseline is 0: the
        # absolute floor its author wrote beside a relative condition decides then.
        breach = _check_conditions(
            criterion.rollback,
            value,
            baseline_value,
            "rollback",
            defer_to_absolute=True,
            unit=unit,
        )
        if breach.holds is True:
            return result(CriterionOutcome.BREACH, breach.words, value=value, volume=traffic)
        if breach.holds is None:
            # Whether it is a breach is unknown: neither pass nor fail, so a breach run is
            # neither extended nor broken by it.
            return result(CriterionOutcome.INCONCLUSIVE, breach.words, value=value, volume=traffic)
    go = _check_conditions(criterion.go, value, baseline_value, "go", unit=unit)
    if go.holds is None:
        outcome = CriterionOutcome.INCONCLUSIVE
    else:
        outcome = CriterionOutcome.PASS if go.holds else CriterionOutcome.FAIL
    return result(outcome, go.words, value=value, volume=traffic)


def _finite_or_none(number: float | None) -> float | None:
    return number if number is not None and math.isfinite(number) else None


@dataclass(frozen=True, slots=True)
class Gap:
    """Two consecutive samples further apart than the gap bound (or out of order)."""

    before: datetime
    after: datetime
    bound: timedelta

    def describe(self) -> str:
        length = self.after - self.before
        if length < timedelta(0):
            return (
                f"samples out of order ({iso(self.after)} after {iso(self.before)}) broke the runs"
            )
        return (
            f"gap of {format_duration(length)} between samples at {iso(self.before)}"
            f" and {iso(self.after)} (more than {format_duration(self.bound)}) broke the runs"
        )


def _gap_between(earlier: Sample, later: Sample, bound: timedelta) -> Gap | None:
    apart = later.evaluated_at - earlier.evaluated_at
    if apart > bound or apart < timedelta(0):
        return Gap(earlier.evaluated_at, later.evaluated_at, bound)
    return None


def _unbroken(history: Sequence[Sample], bound: timedelta) -> tuple[list[Sample], Gap | None]:
    """The most recent samples with no gap between them, newest first, and the gap that
    ends them (``None`` when the whole history is unbroken)."""
    recent: list[Sample] = []
    for sample in reversed(history):
        if recent:
            gap = _gap_between(sample, recent[-1], bound)
            if gap is not None:
                return recent, gap
        recent.append(sample)
    return recent, None


def deciding_criteria(gate: Gate) -> list[Criterion]:
    """The criteria that decide: every one but those marked ``dry_run``."""
    return [c for c in gate.criteria if not c.dry_run]


def _all_pass(sample: Sample, criteria: Sequence[Criterion]) -> bool:
    return all(sample.outcome_of(c.name) is CriterionOutcome.PASS for c in criteria)


def steady_passes(gate: Gate, history: Sequence[Sample]) -> int:
    """How many of the most recent samples in a row had every criterion pass, with no
    gap longer than ``gap_bound`` between them."""
    return _steady_run(gate, history)[0]


def _steady_run(gate: Gate, history: Sequence[Sample]) -> tuple[int, Gap | None]:
    """The steady count, and the gap that ended the run when a gap (not a non-pass) did."""
    recent, gap = _unbroken(history, gap_bound(gate))
    for count, sample in enumerate(recent):
        if not _all_pass(sample, deciding_criteria(gate)):
            return count, None
    return len(recent), gap


@dataclass(frozen=True, slots=True)
class BreachRun:
    """A criterion's current run of breaches: how many, the latest breach's reason, and
    where each breach is (1 for the latest sample, 2 for the one before, ...)."""

    count: int
    reason: str | None
    positions: tuple[int, ...] = ()

    def span(self, breaches: int) -> int:
        """The latest samples that hold the latest ``breaches`` breaches of the run."""
        return self.positions[min(breaches, self.count) - 1] if self.count else 0


def breach_run(gate: Gate, history: Sequence[Sample], criterion: str) -> BreachRun:
    """The breaches in ``criterion``'s current run (docs/decisions.md).

    Walking back from the latest sample: a breach extends the run; a ``pass`` or
    ``fail`` ends it; an inconclusive sample (or one that did not evaluate the criterion)
    neither extends nor ends it; a gap longer than ``gap_bound`` ends it.
    """
    recent, _ = _unbroken(history, gap_bound(gate))
    reason = None
    positions: list[int] = []
    for position, sample in enumerate(recent, start=1):
        outcome = sample.outcome_of(criterion)
        if outcome is CriterionOutcome.BREACH:
            positions.append(position)
            if reason is None:
                reason = _latest_reason(sample, criterion)
        elif outcome in (CriterionOutcome.PASS, CriterionOutcome.FAIL):
            break
    return BreachRun(len(positions), reason, tuple(positions))


def deciding_count(gate: Gate, history: Sequence[Sample], decision: Decision) -> int:
    """How many of the latest samples a decision rests on: the steady run for ``go``; for
    ``rollback``, every sample back to the oldest breach that counted (inconclusive ones
    between breaches included); the latest sample otherwise."""
    if not history:
        return 0
    if decision is Decision.GO:
        return min(steady_passes(gate, history), gate.steady_for)
    if decision is Decision.ROLLBACK:
        spans = [1]
        for criterion in deciding_criteria(gate):
            if not criterion.can_roll_back():
                continue
            run = breach_run(gate, history, criterion.name)
            required = gate.rollback_after_for(criterion)
            if run.count >= required:
                spans.append(run.span(required))
        return max(spans)
    return 1


def decide(
    gate: Gate,
    history: Sequence[Sample],
    *,
    required_signoffs: Sequence[str] = (),
    recorded_signoffs: Set[str] = frozenset(),
) -> Verdict:
    """The gate's decision from its samples, oldest first (docs/decisions.md).

    Pass ``required_signoffs`` for a check (the gate's sign-off ids); the continuous gate
    decision has none. Every decision but ``go`` gives the reason of each criterion not
    passing in the latest sample, ``rollback`` included.
    """
    needed = gate.steady_for
    if not history:
        return no_sample_verdict(gate.name, needed)
    latest = history[-1]
    deciding = deciding_criteria(gate)
    dry_run_reasons = tuple(_dry_run_reasons(gate, history))
    if not deciding:  # a gate of dry-run criteria only: nothing may say go
        return Verdict(
            gate.name,
            Decision.NO_GO,
            latest.evaluated_at,
            ("no criterion decides: every criterion is dry_run",),
            Steady(0, needed),
            latest.results,
            dry_run_reasons,
        )

    runs = {c.name: breach_run(gate, history, c.name) for c in deciding if c.can_roll_back()}
    rolled_back: list[str] = []
    reasons: list[str] = []
    for criterion in deciding:
        run = runs.get(criterion.name)
        required = gate.rollback_after_for(criterion)
        if run is not None and run.count >= required:
            rolled_back.append(criterion.name)
            reasons.append(f"{criterion.name}: {run.reason} [breach {required}/{required}]")
    for criterion in deciding:
        outcome = latest.outcome_of(criterion.name)
        if outcome is CriterionOutcome.PASS:
            continue
        if outcome is CriterionOutcome.BREACH and criterion.name in rolled_back:
            continue  # its rollback reason above is this sample's reason
        run = None if criterion.name in rolled_back else runs.get(criterion.name)
        reasons.append(f"{criterion.name}: {_reason_with_run(gate, latest, criterion, run)}")

    passes, gap = _steady_run(gate, history)
    steady = Steady(min(passes, needed), needed)

    def verdict(decision: Decision, why: Sequence[str]) -> Verdict:
        return Verdict(
            gate.name,
            decision,
            latest.evaluated_at,
            tuple(why),
            steady,
            latest.results,
            dry_run_reasons,
        )

    if rolled_back:
        return verdict(Decision.ROLLBACK, reasons)

    missing = [s for s in required_signoffs if s not in recorded_signoffs]
    if passes >= needed and not missing:
        return verdict(Decision.GO, ())

    if passes < needed:
        reasons.append(f"steady {steady.passes}/{needed}")
        if gap is not None:
            reasons.append(gap.describe())
    reasons.extend(f"missing sign-off: {s}" for s in missing)
    return verdict(Decision.NO_GO, reasons)


def _reason_with_run(
    gate: Gate, latest: Sample, criterion: Criterion, run: BreachRun | None
) -> str:
    """The latest reason of a criterion not passing, with its breach run so far (a run
    long enough to roll back is explained by its own reason instead)."""
    reason = _latest_reason(latest, criterion.name)
    required = gate.rollback_after_for(criterion)
    if run is not None and 0 < run.count < required:
        held = "" if latest.outcome_of(criterion.name) is CriterionOutcome.BREACH else " so far"
        reason += f" [breach {run.count}/{required}{held}]"
    return reason


def _dry_run_reasons(gate: Gate, history: Sequence[Sample]) -> list[str]:
    """What each dry-run criterion would have said: its latest reason when it did not
    pass, or the breach run that would have rolled back. Shown apart; never deciding."""
    latest = history[-1]
    found = []
    for criterion in gate.criteria:
        if not criterion.dry_run:
            continue
        run = breach_run(gate, history, criterion.name) if criterion.can_roll_back() else None
        required = gate.rollback_after_for(criterion)
        if run is not None and run.count >= required:
            found.append(
                f"{criterion.name}: {run.reason} [breach {required}/{required}]"
                " (dry run: would roll back)"
            )
        elif latest.outcome_of(criterion.name) is not CriterionOutcome.PASS:
            reason = _reason_with_run(gate, latest, criterion, run)
            found.append(f"{criterion.name}: {reason} (dry run)")
    return found


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
