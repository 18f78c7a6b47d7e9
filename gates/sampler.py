"""Taking one sample: ask every criterion's probe at once and judge the answers.

The only I/O here goes through the ``Probe`` protocol. A probe that hangs past its
budget, or raises, becomes an inconclusive outcome for its own criterion only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from gates.conditions import UnfilledPlaceholder
from gates.engine import CriterionResult, Sample, inconclusive, judge
from gates.model import Criterion, Gate
from gates.placeholders import PlaceholderValues, Quote, fill_text
from probes.base import Measurement, Probe, ProbeContext, ProbeQuery, QuoteRefused, quoter_of

# Backoff between tries, on top of each try's own timeout.
_RETRY_ALLOWANCE = timedelta(seconds=2)


def placeholder_values(
    gate: Gate,
    *,
    version: str | None = None,
    environment: str | None = None,
    stage: str | None = None,
    check_vars: Mapping[str, str] | None = None,
) -> PlaceholderValues:
    """Values for ``${name}``: the check's own (version, environment, stage, vars) first,
    then the gate's ``vars`` defaults; the check's are marked as supplied by it, so the
    probe quotes them."""
    supplied = dict(check_vars or {})
    for key, value in (("version", version), ("environment", environment), ("stage", stage)):
        if value is not None:
            supplied[key] = value
    return PlaceholderValues(gate=dict(gate.vars), check=supplied)


def fill_query(
    query: ProbeQuery, values: Mapping[str, str], quote: Quote | None = None
) -> ProbeQuery:
    """``query`` with every placeholder filled, check-supplied values through ``quote``
    (the probe's); raises ``UnfilledPlaceholder`` or ``QuoteRefused``."""
    known = PlaceholderValues.of(values)

    def fill(text: str | None, field: str) -> str | None:
        return None if text is None else fill_text(text, known, field=field, quote=quote)

    return query.model_copy(
        update={
            "query": fill(query.query, "query"),
            "metric": fill(query.metric, "metric"),
            "matchers": tuple(
                fill_text(m, known, field="matchers", quote=quote) for m in query.matchers
            ),
            "params": {
                k: fill_text(v, known, field=f"params.{k}", quote=quote)
                for k, v in query.params.items()
            },
            "path": fill(query.path, "path"),
            "field": fill(query.field, "field"),
        }
    )


def probe_budget(probe: Probe) -> float:
    """Seconds a probe may take for one measurement, all tries included."""
    config = getattr(probe, "config", None)
    timeout = float(getattr(config, "timeout", 5.0))
    tries = 1 + int(getattr(config, "retries", 0))
    return timeout * tries + _RETRY_ALLOWANCE.total_seconds() * (tries - 1) + 1.0


async def _measure(probe: Probe, query: ProbeQuery, ctx: ProbeContext) -> Measurement:
    budget = probe_budget(probe)
    try:
        return await asyncio.wait_for(probe.measure(query, ctx), timeout=budget)
    except TimeoutError:
        return Measurement.timeout(f"no answer within {budget:g}s", ctx.now)
    except Exception as fault:  # the probe broke its contract; stay closed
        return Measurement.error(f"probe failed: {type(fault).__name__}: {fault}", ctx.now)


def _history_for(history: Sequence[Sample], criterion: str) -> list[Measurement]:
    found = []
    for sample in history:
        for result in sample.results:
            if result.name == criterion:
                measurement = result.as_measurement()
                if measurement is not None:
                    found.append(measurement)
    return found


async def evaluate_criterion(
    gate: Gate,
    criterion: Criterion,
    probes: Mapping[str, Probe],
    *,
    now: datetime,
    values: Mapping[str, str],
    check_started_at: datetime | None = None,
    history: Sequence[Sample] = (),
) -> CriterionResult:
    probe = probes.get(criterion.probe)
    if probe is None:
        return inconclusive(criterion, f"probe {criterion.probe!r} is not available")
    try:
        known = PlaceholderValues.of(values)
        quote = quoter_of(probe)
        query = fill_query(criterion.probe_query(), known, quote)
        volume_query = (
            fill_text(criterion.min_volume.query, known, field="min_volume.query", quote=quote)
            if criterion.min_volume is not None and criterion.min_volume.query is not None
            else None
        )
    except (UnfilledPlaceholder, QuoteRefused) as unusable:
        return inconclusive(criterion, str(unusable))
    ctx = ProbeContext(
        now=now,
        variables=dict(values),
        check_started_at=check_started_at,
        history=_history_for(history, criterion.name),
    )
    started = time.perf_counter()
    if volume_query is None:
        measurement = await _measure(probe, query, ctx)
        volume = None
    else:
        volume_probe_query = query.model_copy(update={"query": volume_query, "reduce": "sum"})
        measurement, volume = await asyncio.gather(
            _measure(probe, query, ctx), _measure(probe, volume_probe_query, ctx)
        )
    duration_ms = round((time.perf_counter() - started) * 1000, 3)
    return judge(criterion, measurement, volume=volume, duration_ms=duration_ms)


async def take_sample(
    gate: Gate,
    probes: Mapping[str, Probe],
    *,
    now: datetime,
    values: Mapping[str, str],
    check_started_at: datetime | None = None,
    history: Sequence[Sample] = (),
) -> Sample:
    """Evaluate every criterion of ``gate`` concurrently at ``now``."""
    results = await asyncio.gather(
        *(
            evaluate_criterion(
                gate,
                criterion,
                probes,
                now=now,
                values=values,
                check_started_at=check_started_at,
                history=history,
            )
            for criterion in gate.criteria
        )
    )
    return Sample(evaluated_at=now, results=tuple(results))
