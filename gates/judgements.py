"""Criteria judged from several readings of their probe: ``compare:`` and ``slo:``.

The sampler hands over the criterion's filled query and the ways to read its probe
(bounded in time and scrubbed of secrets, as every read of a sample is); this module
fills the other queries these criteria need, reads them all concurrently and judges the
answers with ``gates.comparison`` or ``gates.slo``. Its result is an ordinary
``CriterionResult`` with a ``comparison`` dict, so the engine's run rules apply as they
do to any criterion.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from gates.comparison import Judgement, compare_series
from gates.conditions import UnfilledPlaceholder, format_duration
from gates.engine import CriterionOutcome, CriterionResult, format_number
from gates.model import Criterion
from gates.placeholders import PlaceholderValues, Quote, baseline_values, fill_text
from gates.slo import WindowReading, judge_slo, slo_windows
from gates.units import Unit, format_value
from probes.base import Measurement, MeasurementStatus, ProbeQuery, QuoteRefused, Series
from probes.timefmt import iso

# A compared series whose newest point is older than this many steps has stopped.
STOPPED_AFTER_STEPS = 2

Read = Callable[[ProbeQuery], Awaitable[Measurement]]
ReadRange = Callable[[ProbeQuery, datetime, datetime, timedelta], Awaitable[Series | Measurement]]
Fill = Callable[[ProbeQuery, Mapping[str, str], Quote | None], ProbeQuery]


def judged_conditions(criterion: Criterion) -> tuple[str, str | None]:
    """The ``go`` and ``rollback`` texts shown for a ``compare:`` or ``slo:`` criterion."""
    if criterion.compare is not None:
        spec = criterion.compare
        change = {"increase": "increase", "decrease": "decrease", "either": "change"}[
            spec.direction
        ]
        confidence = f"{spec.confidence * 100:g}%"
        go = f"no significant {change} beyond {spec.effect * 100:g}% ({spec.test}, {confidence})"
        rollback = (
            f"significant {change} beyond {spec.rollback_effect * 100:g}%"
            if spec.rollback_effect is not None
            else None
        )
        return go, rollback
    if criterion.slo is not None:
        slo = criterion.slo
        go = f"SLO {slo.objective * 100:g}%: no burn-rate pair fires"
        if slo.budget is not None:
            go += f", at least {slo.budget.at_least * 100:g}% of the budget left"
        pairs = [
            f"{format_duration(p.long)}/{format_duration(p.short)} burn"
            f" > {format_number(p.burn_rate)}"
            for p in slo.windows
            if p.then == "rollback"
        ]
        return go, " or ".join(pairs) or None
    return "", None


def judged_result(
    criterion: Criterion,
    judgement: Judgement,
    *,
    now: datetime,
    duration_ms: float | None,
    status: MeasurementStatus | None,
) -> CriterionResult:
    """The ``CriterionResult`` of a judged ``compare:`` or ``slo:`` criterion."""
    go, rollback = judged_conditions(criterion)
    return CriterionResult(
        name=criterion.name,
        outcome=judgement.outcome,
        reason=judgement.reason,
        probe=criterion.probe,
        go=go,
        rollback=rollback,
        value=judgement.value,
        duration_ms=duration_ms,
        status=status,
        observed_at=now,
        comparison=judgement.details,
        unit=criterion.value_unit(),
    )


def _inconclusive(criterion: Criterion, reason: str, details: dict[str, object]) -> Judgement:
    return Judgement(CriterionOutcome.INCONCLUSIVE, reason, details=dict(details))


async def evaluate_comparison(
    criterion: Criterion,
    query: ProbeQuery,
    values: PlaceholderValues,
    *,
    now: datetime,
    quote: Quote | None,
    fill: Fill,
    read_range: ReadRange,
    duration: Callable[[], float],
) -> CriterionResult:
    """Read the canary's ``query`` and the baseline's over ``compare.window`` ending at
    ``now``, both at once, and judge them."""
    spec = criterion.compare
    assert spec is not None and criterion.baseline is not None
    details: dict[str, object] = {"test": spec.test}
    try:
        baseline_query = fill(
            criterion.probe_query(), baseline_values(values, criterion.baseline), quote
        )
    except (UnfilledPlaceholder, QuoteRefused) as unusable:
        judgement = _inconclusive(criterion, f"baseline: {unusable}", details)
        return judged_result(criterion, judgement, now=now, duration_ms=None, status=None)
    if baseline_query == query:  # a series compared with itself never differs: never a pass
        judgement = _inconclusive(
            criterion,
            "baseline: its vars leave the query as the canary's: nothing to compare",
            details,
        )
        return judged_result(criterion, judgement, now=now, duration_ms=None, status=None)
    start = now - spec.window
    canary, baseline = await asyncio.gather(
        read_range(query, start, now, spec.step),
        read_range(baseline_query, start, now, spec.step),
    )
    failed = [
        (side, answer)
        for side, answer in (("canary", canary), ("baseline", baseline))
        if isinstance(answer, Measurement)
    ]
    if failed:
        said = "; ".join(f"{side}: {answer.detail or answer.status}" for side, answer in failed)
        judgement = _inconclusive(criterion, said, details)
        return judged_result(
            criterion, judgement, now=now, duration_ms=duration(), status=failed[0][1].status
        )
    assert isinstance(canary, Series) and isinstance(baseline, Series)
    # A side whose series has stopped (a canary that crashed) still has its old points in
    # the window; compared as they are they could pass for many minutes after it died.
    fresh_from = now - STOPPED_AFTER_STEPS * spec.step
    stopped = [
        f"{side}: its newest point is at {iso(series.points[-1][0])}, more than"
        f" {STOPPED_AFTER_STEPS} steps ({format_duration(STOPPED_AFTER_STEPS * spec.step)})"
        " before now: the series has stopped"
        for side, series in (("canary", canary), ("baseline", baseline))
        if series.points[-1][0] < fresh_from
    ]
    if stopped:
        judgement = _inconclusive(criterion, "; ".join(stopped), details)
        return judged_result(
            criterion, judgement, now=now, duration_ms=duration(), status=MeasurementStatus.OK
        )
    # In a worker thread: tens of milliseconds of numpy at 2 x 1,000 points
    # (bench/judgement.py), and the first judgement imports scipy.stats; the other
    # gates' samples on this loop are not held up meanwhile.
    judgement = await asyncio.to_thread(compare_series, canary.values, baseline.values, spec)
    return judged_result(
        criterion, judgement, now=now, duration_ms=duration(), status=MeasurementStatus.OK
    )


def window_values(values: PlaceholderValues, window: timedelta) -> PlaceholderValues:
    """``values`` with ``${window}`` set to ``window`` as gonogo writes durations (``5m``,
    ``1h``, ``30d``: a PromQL range as it is), by gonogo itself, never by a check."""
    check = {name: value for name, value in values.check.items() if name != "window"}
    return PlaceholderValues(gate={**values.gate, "window": format_duration(window)}, check=check)


async def evaluate_slo(
    criterion: Criterion,
    query: ProbeQuery,
    values: PlaceholderValues,
    *,
    now: datetime,
    quote: Quote | None,
    read: Read,
    duration: Callable[[], float],
) -> CriterionResult:
    """Read ``errors`` and ``total`` for every window at ``now``, all at once, and judge
    the burn rates."""
    slo = criterion.slo
    assert slo is not None
    windows = slo_windows(slo)
    queries: list[ProbeQuery] = []
    try:
        for window in windows:
            filled = window_values(values, window)
            for key, text in (("errors", slo.errors), ("total", slo.total)):
                queries.append(
                    query.model_copy(
                        update={
                            "query": fill_text(text, filled, field=f"slo.{key}", quote=quote),
                            "window": window,
                        }
                    )
                )
    except (UnfilledPlaceholder, QuoteRefused) as unusable:
        judgement = _inconclusive(criterion, str(unusable), {})
        return judged_result(criterion, judgement, now=now, duration_ms=None, status=None)
    answers = await asyncio.gather(*(read(q) for q in queries))
    readings: dict[timedelta, WindowReading] = {}
    for index, window in enumerate(windows):
        errors, total = answers[2 * index], answers[2 * index + 1]
        bad = [
            (key, answer)
            for key, answer in (("errors", errors), ("total", total))
            if answer.status is not MeasurementStatus.OK or answer.value is None
        ]
        if bad:
            cause = "; ".join(f"{key}: {a.detail or a.status}" for key, a in bad)
            readings[window] = WindowReading(cause=cause)
        else:
            readings[window] = WindowReading(errors.value, total.value)
    judgement = judge_slo(slo, readings)
    statuses = [a.status for a in answers if a.status is not MeasurementStatus.OK]
    status = statuses[0] if statuses else MeasurementStatus.OK
    return judged_result(criterion, judgement, now=now, duration_ms=duration(), status=status)


def comparison_summary(details: Mapping[str, Any] | None, unit: Unit | None = None) -> str | None:
    """One line of a criterion's ``comparison`` details, for tables and the status page:
    both sides and the test for ``compare:`` (medians and shift in ``unit``), every pair's
    burn rates for ``slo:``."""
    if not details:
        return None
    if "windows" in details:
        parts = []
        for pair in details.get("windows") or []:
            burns = "/".join(
                "?" if pair.get(side) is None else format_number(round(pair[side], 3))
                for side in ("long_burn", "short_burn")
            )
            mark = " FIRED" if pair.get("fired") else ""
            parts.append(
                f"{pair.get('long')}/{pair.get('short')} burn {burns}"
                f" (> {format_number(pair.get('burn_rate', 0))} {pair.get('then')}){mark}"
            )
        budget = details.get("budget")
        if isinstance(budget, Mapping) and budget.get("remaining") is not None:
            parts.append(f"budget {budget['remaining'] * 100:.3g}% left over {budget['period']}")
        return " · ".join(parts)
    canary, baseline = details.get("canary") or {}, details.get("baseline") or {}

    def side(name: str, values: Mapping[str, Any]) -> str:
        median = values.get("median")
        shown = "" if median is None else f" median {format_value(median, unit)}"
        return f"{name} n={values.get('n', 0)}{shown}"

    parts = [side("canary", canary), side("baseline", baseline)]
    relative = details.get("relative_shift")
    interval = details.get("shift_ci")
    if relative is not None and interval:
        parts.append(
            f"shift {relative * 100:+.3g}% (CI {format_value(interval[0], unit)}"
            f"..{format_value(interval[1], unit)})"
        )
    if details.get("p_value") is not None:
        parts.append(f"p={details['p_value']:.3g}")
    return f"{details.get('test', 'compare')}: " + " · ".join(parts)


def judged_value_text(details: Mapping[str, Any] | None, value: float | None) -> str | None:
    """How a ``compare:`` or ``slo:`` criterion's value reads: a relative shift, or the
    highest long-window burn rate; None for other criteria."""
    if not details or value is None:
        return None
    if "windows" in details:
        return f"burn {value:.3g}"
    return f"{value * 100:+.3g} %"
