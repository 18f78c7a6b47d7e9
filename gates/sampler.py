"""Taking one sample: ask every criterion's probe at once and judge the answers.

The only I/O here goes through the ``Probe`` protocol. A probe that hangs past its
budget, or raises, becomes an inconclusive outcome for its own criterion only.

Three guarantees hold for every probe, built-in or third-party, because they are kept
here rather than by each probe:
- every text of a measurement is scrubbed of the probe's declared secrets before anyone
  stores or shows it (``_measure``);
- a sample takes at most the gate's interval (at least 1 s), all tries included: each
  measurement is cut off at the earlier of its probe's budget and the sample's end, and
  the built-in client sees that deadline and stops retrying in time;
- one sample sends at most ``MAX_REQUESTS_PER_PROBE`` requests at once to one probe, so
  a gate's share of a source shared with other gates is bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from gates.conditions import UnfilledPlaceholder
from gates.engine import CriterionResult, Sample, gap_bound, inconclusive, judge
from gates.judgements import evaluate_comparison, evaluate_slo, judged_conditions
from gates.model import Criterion, Gate
from gates.placeholders import PlaceholderValues, Quote, baseline_values, fill_text
from probes.base import (
    Measurement,
    Probe,
    ProbeContext,
    ProbeQuery,
    QuoteRefused,
    Series,
    declared_secrets,
    quoter_of,
    range_reader_of,
)
from probes.client import deadline_in, scrubber

Answer = TypeVar("Answer")

# Backoff between tries, on top of each try's own timeout.
_RETRY_ALLOWANCE = timedelta(seconds=2)
# Requests one sample may have in flight to one probe (criteria and volume queries).
MAX_REQUESTS_PER_PROBE = 8
# The shortest time cap of a sample, whatever the gate's interval.
MIN_SAMPLE_CAP = 1.0
# The built-in client is told to finish this much before the sampler cuts it off, so
# the reason is its own ("timed out after 3 tries"), not the sampler's.
_CLIENT_MARGIN = 0.25


def sample_cap(gate: Gate) -> float:
    """Seconds one sample of ``gate`` may take, every criterion and try included."""
    return max(gate.interval.total_seconds(), MIN_SAMPLE_CAP)


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


async def _measure(
    probe: Probe,
    query: ProbeQuery,
    ctx: ProbeContext,
    *,
    ends_at: float | None = None,
    limit: asyncio.Semaphore | None = None,
) -> Measurement:
    """One measurement, bounded in time, scrubbed of the probe's secrets.

    ``ends_at`` (``time.monotonic()``) is the end of the sample: the call is cut off then
    even if the probe's own budget is longer. ``limit`` bounds the sample's requests
    in flight to this probe.
    """
    measurement = await _bounded(
        probe, lambda: probe.measure(query, ctx), ctx, ends_at=ends_at, limit=limit
    )
    try:
        secrets = declared_secrets(probe)
    except Exception as fault:  # secrets() itself failed: nothing from this probe is safe
        return Measurement.error(
            f"probe failed to declare its secrets: {type(fault).__name__}", ctx.now
        )
    return _scrubbed(measurement, secrets)


async def _bounded(
    probe: Probe,
    call: Callable[[], Awaitable[Answer]],
    ctx: ProbeContext,
    *,
    ends_at: float | None,
    limit: asyncio.Semaphore | None,
) -> Answer | Measurement:
    """``call()`` (one read of ``probe``) within the probe's budget and the sample's end,
    with the sample's in-flight limit; a timeout or a fault is a measurement."""
    try:
        budget = probe_budget(probe)
    except (TypeError, ValueError) as bad:  # a config whose timeout is not a number
        return Measurement.error(f"probe failed: {type(bad).__name__}: {bad}", ctx.now)
    if limit is not None:
        try:
            remaining = budget if ends_at is None else max(0.0, ends_at - time.monotonic())
            await asyncio.wait_for(limit.acquire(), timeout=remaining)
        except TimeoutError:
            return Measurement.timeout(
                f"not asked: the sample's {MAX_REQUESTS_PER_PROBE} requests to this probe"
                " were all in flight until its time was up",
                ctx.now,
            )
    try:
        if ends_at is not None:
            budget = max(0.0, min(budget, ends_at - time.monotonic()))
        try:
            with deadline_in(max(0.0, budget - min(_CLIENT_MARGIN, budget / 10))):
                return await asyncio.wait_for(call(), timeout=budget)
        except TimeoutError:
            return Measurement.timeout(f"no answer within {round(budget, 2):g}s", ctx.now)
        except Exception as fault:  # the probe broke its contract; stay closed
            return Measurement.error(f"probe failed: {type(fault).__name__}: {fault}", ctx.now)
    finally:
        if limit is not None:
            limit.release()


async def _measure_range(
    probe: Probe,
    query: ProbeQuery,
    ctx: ProbeContext,
    span: tuple[datetime, datetime, timedelta],
    *,
    ends_at: float | None = None,
    limit: asyncio.Semaphore | None = None,
) -> Series | Measurement:
    """One range read (``measure_range``), bounded and scrubbed like ``_measure``."""
    read = range_reader_of(probe)
    if read is None:
        return Measurement.error("this probe type has no range reads", ctx.now)
    start, end, step = span
    answer = await _bounded(
        probe, lambda: read(query, ctx, start, end, step), ctx, ends_at=ends_at, limit=limit
    )
    try:
        secrets = declared_secrets(probe)
    except Exception as fault:  # secrets() itself failed: nothing from this probe is safe
        return Measurement.error(
            f"probe failed to declare its secrets: {type(fault).__name__}", ctx.now
        )
    if isinstance(answer, Measurement):
        return _scrubbed(answer, secrets)
    if not isinstance(answer, Series):
        return Measurement.error(
            f"probe failed: measure_range returned {type(answer).__name__}, not a Series", ctx.now
        )
    if secrets and answer.detail:
        return dataclasses.replace(answer, detail=scrubber(secrets).text(answer.detail))
    return answer


def _scrubbed(measurement: Measurement, secrets: tuple[str, ...]) -> Measurement:
    """``measurement`` with every text in it scrubbed of ``secrets``."""
    if not secrets:
        return measurement
    clean = scrubber(secrets)
    detail = clean.text(measurement.detail)
    extra = {clean.text(key): value for key, value in measurement.extra.items()}
    if detail == measurement.detail and extra == dict(measurement.extra):
        return measurement
    return dataclasses.replace(measurement, detail=detail, extra=extra)


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
    ends_at: float | None = None,
    limits: dict[str, asyncio.Semaphore] | None = None,
) -> CriterionResult:
    """``ends_at``: when the sample's time is up (``time.monotonic()``), default the
    gate's ``sample_cap`` from now; ``limits``: the sample's in-flight limit per probe."""
    if ends_at is None:
        ends_at = time.monotonic() + sample_cap(gate)
    limit = None
    if limits is not None:
        limit = limits.setdefault(criterion.probe, asyncio.Semaphore(MAX_REQUESTS_PER_PROBE))
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
        result = inconclusive(criterion, str(unusable))
        if criterion.compare is not None or criterion.slo is not None:
            go, rollback = judged_conditions(criterion)
            result = dataclasses.replace(result, go=go, rollback=rollback)
        return result
    ctx = ProbeContext(
        now=now,
        variables=dict(values),
        check_started_at=check_started_at,
        history=_history_for(history, criterion.name),
        interval=gate.interval,
        max_gap=gap_bound(gate),
    )
    if criterion.compare is not None or criterion.slo is not None:
        return await _evaluate_judged(criterion, probe, query, known, ctx, ends_at, limit)
    asks = [_measure(probe, query, ctx, ends_at=ends_at, limit=limit)]
    if volume_query is not None:
        volume_probe_query = query.model_copy(update={"query": volume_query, "reduce": "sum"})
        asks.append(_measure(probe, volume_probe_query, ctx, ends_at=ends_at, limit=limit))
    baseline = _baseline_run(criterion, known, quote, query, ctx)
    if isinstance(baseline, _BaselineRun):
        # The same instant, deadline and in-flight limit as the canary's own question.
        asks.append(_measure(probe, baseline.query, baseline.ctx, ends_at=ends_at, limit=limit))
    started = time.perf_counter()
    answers = await asyncio.gather(*asks)
    duration_ms = round((time.perf_counter() - started) * 1000, 3)
    measurement = answers[0]
    volume = answers[1] if volume_query is not None else None
    if isinstance(baseline, _BaselineRun):
        baseline_measurement: Measurement | None = answers[-1]
        baseline_vars = baseline.vars
    else:
        baseline_measurement, baseline_vars = baseline, {}
    return judge(
        criterion,
        measurement,
        volume=volume,
        duration_ms=duration_ms,
        baseline=baseline_measurement,
        baseline_vars=baseline_vars,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _BaselineRun:
    """The criterion's query as its baseline run asks it, and the values that filled it."""

    query: ProbeQuery
    ctx: ProbeContext
    vars: dict[str, str]


def _baseline_run(
    criterion: Criterion,
    known: PlaceholderValues,
    quote: Quote | None,
    canary: ProbeQuery,
    ctx: ProbeContext,
) -> _BaselineRun | Measurement | None:
    """The baseline run of ``criterion`` (``None`` without ``baseline:``), or the error
    measurement saying why it cannot be asked. Its values go through the same filling
    and quoting as the canary's."""
    if criterion.baseline is None:
        return None
    try:
        values = baseline_values(known, criterion.baseline)
        query = fill_query(criterion.probe_query(), values, quote)
    except (UnfilledPlaceholder, QuoteRefused) as unusable:
        return Measurement.error(str(unusable), ctx.now)
    if query == canary:
        # Compared with itself, any canary would pass a relative bound.
        return Measurement.error(
            "its vars leave the query as the canary's: nothing to compare", ctx.now
        )
    shown = {name: values[name] for name in criterion.baseline.vars}
    baseline_ctx = dataclasses.replace(ctx, variables=dict(values), history=())
    return _BaselineRun(query, baseline_ctx, shown)


async def _evaluate_judged(
    criterion: Criterion,
    probe: Probe,
    query: ProbeQuery,
    values: PlaceholderValues,
    ctx: ProbeContext,
    ends_at: float | None,
    limit: asyncio.Semaphore | None,
) -> CriterionResult:
    """A ``compare:`` or ``slo:`` criterion (gates/judgements.py), its reads bounded and
    scrubbed like every other."""
    started = time.perf_counter()

    def duration() -> float:
        return round((time.perf_counter() - started) * 1000, 3)

    def read(q: ProbeQuery) -> Awaitable[Measurement]:
        return _measure(probe, q, ctx, ends_at=ends_at, limit=limit)

    def read_range(
        q: ProbeQuery, start: datetime, end: datetime, step: timedelta
    ) -> Awaitable[Series | Measurement]:
        return _measure_range(probe, q, ctx, (start, end, step), ends_at=ends_at, limit=limit)

    quote = quoter_of(probe)
    if criterion.compare is not None:
        return await evaluate_comparison(
            criterion,
            query,
            values,
            now=ctx.now,
            quote=quote,
            fill=fill_query,
            read_range=read_range,
            duration=duration,
        )
    return await evaluate_slo(
        criterion, query, values, now=ctx.now, quote=quote, read=read, duration=duration
    )


async def take_sample(
    gate: Gate,
    probes: Mapping[str, Probe],
    *,
    now: datetime,
    values: Mapping[str, str],
    check_started_at: datetime | None = None,
    history: Sequence[Sample] = (),
) -> Sample:
    """Evaluate every criterion of ``gate`` concurrently at ``now``, within the gate's
    ``sample_cap``."""
    ends_at = time.monotonic() + sample_cap(gate)
    limits: dict[str, asyncio.Semaphore] = {}
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
                ends_at=ends_at,
                limits=limits,
            )
            for criterion in gate.criteria
        )
    )
    return Sample(evaluated_at=now, results=tuple(results))
