"""Replay a gate on history: what it would have decided at every step of a past range.

The source's own history is read with one range read per criterion (plus one for its
``min_volume.query`` and one for its baseline run), cut into a few reads only where the
probe type's size limit asks for it. Each step then gets the measurements a live sample
would have got at that instant, judged by ``judge`` and decided by ``decide`` on the
growing history, bounded like the live one: the replay has no rules of its own.

Alignment (``latest_reading``): a step at ``t`` takes the latest point in ``(t - step, t]``;
no such point is no data there (judged by the criterion's ``no_data`` policy, as live). A
reading serves one step at most and is never carried forward. Where gonogo's stored samples
stand in and it took none at a step, that step is a gap, not a sample (``judge_steps``).

A criterion whose value cannot be rebuilt from range reads is replayed from gonogo's stored
samples when the caller has them, and is otherwise "not replayable": inconclusive at every
step, so a replay never shows a ``go`` the live gate could not have given (docs/replay.md).
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gates.conditions import UnfilledPlaceholder, format_duration, parse_duration
from gates.engine import (
    CriterionOutcome,
    CriterionResult,
    Decision,
    Sample,
    Verdict,
    decide_safely,
    freshness_bound,
    inconclusive,
    judge,
    no_sample_verdict,
)
from gates.judgements import evaluate_comparison, evaluate_slo
from gates.model import Criterion, Gate, history_size, history_window
from gates.placeholders import PlaceholderValues, fill_text
from gates.sampler import _baseline_run, _BaselineRun, _measure_range, fill_query
from probes.base import (
    Measurement,
    MeasurementStatus,
    Probe,
    ProbeContext,
    ProbeQuery,
    QuoteRefused,
    Series,
    quoter_of,
    range_reader_of,
)
from probes.errors import GonogoError
from probes.timefmt import iso

# The most steps one replay may have (7 days at 1 minute is 10,080).
MAX_STEPS = 20_000
# The most points one range read may ask of a probe type: Prometheus refuses more than
# 11,000 points per series, New Relic gives at most 366 TIMESERIES buckets, and Datadog
# picks its own rollup, coarser for longer ranges, so its reads stay short. Sentry's stats
# are hourly whatever the step, and its probe cuts its own reads by hours (probes/sentry.py).
POINTS_PER_READ = {"prometheus": 11_000, "newrelic": 366, "datadog": 300, "sentry": MAX_STEPS}
DEFAULT_POINTS_PER_READ = 1_000

_RELATIVE = re.compile(r"-(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WEEK = timedelta(days=7)


class ReplayError(GonogoError):
    """A replay that cannot run as asked (a bad range or step); ``field`` names the input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_instant(text: str, *, now: datetime, field: str) -> datetime:
    """``now``, a past offset (``-7d``, ``-90m``, ``-1w``) from ``now``, or an RFC 3339
    instant with a zone; in UTC."""
    written = text.strip()
    if written == "now":
        moment = now
    elif (relative := _RELATIVE.fullmatch(written)) is not None:
        number, unit = relative.groups()
        try:
            ago = _WEEK * float(number) if unit == "w" else parse_duration(number + unit)
            moment = now - ago
        except (ValueError, OverflowError):
            raise ReplayError(field, f"{field}: {text!r} reaches too far back") from None
    else:
        try:
            moment = datetime.fromisoformat(written.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ReplayError(
                field,
                f"{field}: {text!r} is neither RFC 3339 (2026-11-24T10:00:00Z)"
                " nor relative (-7d, -90m, now)",
            ) from None
        if moment.tzinfo is None:
            raise ReplayError(field, f"{field}: {text!r} needs a time zone, e.g. a trailing Z")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ReplayError(field, f"{field}: {text!r} is out of range") from None


def replay_instants(
    start: datetime, end: datetime, step: timedelta, *, max_steps: int = MAX_STEPS
) -> list[datetime]:
    """Every step from ``start`` to ``end`` (both included when on a step); raises
    ``ReplayError`` for an empty or reversed range, a step under 1s, or too many steps."""
    if step < timedelta(seconds=1):
        raise ReplayError("step", f"step: {format_duration(step)} is under the minimum of 1s")
    if start >= end:
        raise ReplayError("from", f"from ({iso(start)}) must be before to ({iso(end)})")
    count = int((end - start) / step) + 1
    if count > max_steps:
        raise ReplayError(
            "step",
            f"{count:,} steps of {format_duration(step)} from {iso(start)} to {iso(end)};"
            f" a replay has at most {max_steps:,}: use a longer step or a shorter range",
        )
    return [start + step * index for index in range(count)]


@dataclass(frozen=True, slots=True)
class CriterionReplay:
    """How one criterion was replayed: whether it could be, why not, and its reads."""

    name: str
    replayable: bool
    reason: str = ""
    reads: int = 0
    failed_reads: tuple[str, ...] = ()

    @property
    def all_reads_failed(self) -> bool:
        """Every range read of this criterion failed (not merely found no data)."""
        return self.reads > 0 and len(self.failed_reads) == self.reads

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "replayable": self.replayable,
            "reason": self.reason or None,
            "reads": self.reads,
            "failed_reads": list(self.failed_reads),
        }


@dataclass(frozen=True, slots=True)
class ReplayStep:
    at: datetime
    verdict: Verdict

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": iso(self.at),
            "decision": self.verdict.decision.value,
            "reasons": list(self.verdict.reasons),
            "criteria": [
                {"name": c.name, "outcome": c.outcome.value, "value": c.value}
                for c in self.verdict.criteria
            ],
        }


@dataclass(frozen=True, slots=True)
class Span:
    """Consecutive steps with one decision; ``end`` is where the next span starts (the
    last step stands for one step of time)."""

    start: datetime
    end: datetime
    decision: Decision
    reason: str

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": iso(self.start),
            "to": iso(self.end),
            "decision": self.decision.value,
            "seconds": self.length.total_seconds(),
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Replay:
    gate: Gate
    start: datetime
    end: datetime
    step: timedelta
    steps: tuple[ReplayStep, ...]
    criteria: tuple[CriterionReplay, ...]
    requests: int = 0

    def spans(self) -> list[Span]:
        spans: list[Span] = []
        for step in self.steps:
            decision = step.verdict.decision
            ends = step.at + self.step
            if spans and spans[-1].decision is decision:
                spans[-1] = dataclasses.replace(spans[-1], end=ends)
                continue
            reason = step.verdict.reasons[0] if step.verdict.reasons else "every criterion passes"
            if spans:
                spans[-1] = dataclasses.replace(spans[-1], end=step.at)
            spans.append(Span(step.at, ends, decision, reason))
        return spans

    def summary(self) -> dict[str, Any]:
        spans = self.spans()
        seconds = {d.value: 0.0 for d in Decision}
        for span in spans:
            seconds[span.decision.value] += span.length.total_seconds()
        no_go = [s for s in spans if s.decision is Decision.NO_GO]
        longest = max(no_go, key=lambda s: s.length, default=None)
        return {
            "steps": len(self.steps),
            "seconds_in": seconds,
            "changes": max(0, len(spans) - 1),
            "rollbacks": sum(1 for s in spans if s.decision is Decision.ROLLBACK),
            "longest_no_go": longest.as_dict() if longest is not None else None,
            "not_replayable": [c.name for c in self.criteria if not c.replayable],
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate.name,
            "from": iso(self.start),
            "to": iso(self.end),
            "step": format_duration(self.step),
            "step_seconds": self.step.total_seconds(),
            "criteria": [c.as_dict() for c in self.criteria],
            "summary": self.summary(),
            "spans": [s.as_dict() for s in self.spans()],
            "timeline": [s.as_dict() for s in self.steps],
        }


# -- reading -------------------------------------------------------------------------------


def not_replayable_reason(gate: Gate, criterion: Criterion, probe: Probe | None) -> str | None:
    """Why ``criterion`` cannot be rebuilt from range reads, or None when it can."""
    config = gate.probes.get(criterion.probe)
    kind = config.type if config is not None else "unknown"
    if history_window(gate, criterion) is not None:
        return f"{criterion.metric} is aggregated from gonogo's own samples, not the source's"
    if probe is not None and range_reader_of(probe) is None:
        return f"the {kind} probe type has no range reads (it knows only the present)"
    return None


@dataclass
class _Track:
    """One query's measurement at every step, and how its reads went."""

    measurements: list[Measurement]
    reads: int = 0
    failed: list[str] = field(default_factory=list)


def _chunks(instants: Sequence[datetime], size: int) -> list[tuple[int, int]]:
    """``[first, last]`` step indexes of each read; one point before each read's first
    step is asked too, so each step's window ``(t - step, t]`` is inside some read."""
    per_read = max(1, size - 1)
    return [
        (first, min(first + per_read, len(instants)) - 1)
        for first in range(0, len(instants), per_read)
    ]


def latest_reading(times: Sequence[datetime], at: datetime, step: timedelta) -> int | None:
    """The index in ``times`` (sorted) of the reading step ``at`` takes: the latest in
    ``(at - step, at]``, or None. The one rule of alignment, for range points and stored
    samples alike: consecutive steps' spans do not overlap, so a reading serves one step
    at most (a run never counts it twice) and is never carried past its step, which is
    inside the freshness bound ``max(3 × step, 10s)``."""
    # A source rounding its timestamps to the millisecond is still on the step.
    slack = timedelta(milliseconds=1)
    index = bisect.bisect_right(times, at + slack) - 1
    if index >= 0 and times[index] > at - step + slack:
        return index
    return None


def readings_taken(
    times: Sequence[datetime], instants: Sequence[datetime], step: timedelta
) -> list[int]:
    """The indexes in ``times`` (sorted) that some step takes (``latest_reading``), in
    order: at most one per step, so a caller can skip decoding the others."""
    taken = (latest_reading(times, at, step) for at in instants)
    return sorted({index for index in taken if index is not None})


def _aligned(series: Series, instants: Sequence[datetime], step: timedelta) -> list[Measurement]:
    points = series.points
    times = [at for at, _ in points]
    found: list[Measurement] = []
    for at in instants:
        index = latest_reading(times, at, step)
        if index is not None:
            found.append(Measurement.ok(points[index][1], at, detail=series.detail))
        else:
            found.append(
                Measurement.no_data(f"no point in the {format_duration(step)} up to this step", at)
            )
    return found


async def _read_track(
    probe: Probe,
    kind: str,
    query: ProbeQuery,
    ctx: ProbeContext,
    instants: Sequence[datetime],
    step: timedelta,
) -> _Track:
    track = _Track([])
    for first, last in _chunks(instants, POINTS_PER_READ.get(kind, DEFAULT_POINTS_PER_READ)):
        covered = instants[first : last + 1]
        read_ctx = dataclasses.replace(ctx, now=covered[-1])
        answer = await _measure_range(
            probe, query, read_ctx, (covered[0] - step, covered[-1], step)
        )
        track.reads += 1
        if isinstance(answer, Series):
            track.measurements.extend(_aligned(answer, covered, step))
            continue
        if answer.status is not MeasurementStatus.NO_DATA:
            track.failed.append(
                f"{iso(covered[0])} to {iso(covered[-1])}: {answer.detail or answer.status}"
            )
        track.measurements.extend(
            Measurement(answer.status, at, detail=answer.detail or str(answer.status))
            for at in covered
        )
    return track


@dataclass
class _Plan:
    """A criterion ready to judge at every step: a fixed result, or its read tracks."""

    criterion: Criterion
    report: CriterionReplay
    fixed: CriterionResult | None = None
    value: _Track | None = None
    volume: _Track | None = None
    baseline: _Track | None = None
    baseline_fixed: Measurement | None = None
    baseline_vars: dict[str, str] = field(default_factory=dict)
    per_step: list[CriterionResult] | None = None
    # From stored samples: whether gonogo had a sample of its own at each step.
    stored_at: list[bool] | None = None


async def _plan(
    gate: Gate,
    criterion: Criterion,
    probes: Mapping[str, Probe],
    values: Mapping[str, str],
    instants: Sequence[datetime],
    step: timedelta,
) -> _Plan:
    probe = probes.get(criterion.probe)
    why_not = not_replayable_reason(gate, criterion, probe)
    if why_not is not None:
        return _Plan(
            criterion,
            CriterionReplay(criterion.name, False, why_not),
            fixed=inconclusive(criterion, f"not replayable: {why_not}"),
        )
    if probe is None:
        return _Plan(
            criterion,
            CriterionReplay(criterion.name, False, "its probe is not available"),
            fixed=inconclusive(criterion, f"probe {criterion.probe!r} is not available"),
        )
    config = gate.probes[criterion.probe]
    # The same filling and quoting as a live sample's (gates/sampler.py).
    try:
        known = PlaceholderValues.of(values)
        quote = quoter_of(probe)
        query = fill_query(criterion.probe_query(), known, quote)
        volume_text = (
            fill_text(criterion.min_volume.query, known, field="min_volume.query", quote=quote)
            if criterion.min_volume is not None and criterion.min_volume.query is not None
            else None
        )
    except (UnfilledPlaceholder, QuoteRefused) as unusable:
        return _Plan(
            criterion,
            CriterionReplay(criterion.name, True, str(unusable)),
            fixed=inconclusive(criterion, str(unusable)),
        )
    ctx = ProbeContext(now=instants[-1], variables=dict(values), interval=step)
    if criterion.compare is not None:
        return await _plan_compare(criterion, probe, config.type, query, known, ctx, instants)
    if criterion.slo is not None:
        return await _plan_slo(criterion, probe, config.type, query, known, ctx, instants, step)
    reads = [_read_track(probe, config.type, query, ctx, instants, step)]
    if volume_text is not None:
        volume_query = query.model_copy(update={"query": volume_text, "reduce": "sum"})
        reads.append(_read_track(probe, config.type, volume_query, ctx, instants, step))
    baseline = _baseline_run(criterion, known, quote, query, ctx)
    if isinstance(baseline, _BaselineRun):
        reads.append(_read_track(probe, config.type, baseline.query, baseline.ctx, instants, step))
    tracks = await asyncio.gather(*reads)
    plan = _Plan(criterion, CriterionReplay(criterion.name, True), value=tracks[0])
    if volume_text is not None:
        plan.volume = tracks[1]
    if isinstance(baseline, _BaselineRun):
        plan.baseline, plan.baseline_vars = tracks[-1], baseline.vars
    else:
        plan.baseline_fixed = baseline
    failed = [message for track in tracks for message in track.failed]
    plan.report = CriterionReplay(
        criterion.name, True, "", sum(t.reads for t in tracks), tuple(failed)
    )
    return plan


def _query_key(query: ProbeQuery) -> tuple[str | None, timedelta | None]:
    return query.query, query.window


async def _plan_slo(
    criterion: Criterion,
    probe: Probe,
    kind: str,
    query: ProbeQuery,
    known: PlaceholderValues,
    ctx: ProbeContext,
    instants: Sequence[datetime],
    step: timedelta,
) -> _Plan:
    """An ``slo:`` criterion: each window's filled ``errors`` and ``total`` read once over
    the range (the value an instant query gives at a step is the range read's point
    there), then ``evaluate_slo`` itself judges every step from those points."""
    quote = quoter_of(probe)
    asked: list[ProbeQuery] = []

    async def record(q: ProbeQuery) -> Measurement:
        asked.append(q)
        return Measurement.no_data("not read", ctx.now)

    async def judged(read: Callable[[ProbeQuery], Any], at: datetime) -> CriterionResult:
        return await evaluate_slo(
            criterion, query, known, now=at, quote=quote, read=read, duration=lambda: 0.0
        )

    first = await judged(record, instants[0])
    if not asked:  # a placeholder it cannot fill: the same result at every step
        return _Plan(criterion, CriterionReplay(criterion.name, True, first.reason), fixed=first)
    unique = list({_query_key(q): q for q in asked}.values())
    tracks = await asyncio.gather(
        *(_read_track(probe, kind, q, ctx, instants, step) for q in unique)
    )
    by_key = {_query_key(q): t for q, t in zip(unique, tracks, strict=True)}

    async def every_step() -> list[CriterionResult]:
        results = []
        for index, at in enumerate(instants):

            async def read(q: ProbeQuery, index: int = index) -> Measurement:
                return by_key[_query_key(q)].measurements[index]

            results.append(await judged(read, at))
        return results

    # Thousands of judgements: in a worker thread, on a loop of its own (they only read
    # the points already fetched).
    results = await asyncio.to_thread(asyncio.run, every_step())
    failed = [message for track in tracks for message in track.failed]
    report = CriterionReplay(criterion.name, True, "", sum(t.reads for t in tracks), tuple(failed))
    return _Plan(criterion, report, per_step=results)


@dataclass(frozen=True, slots=True)
class _Piece:
    """One range read of a series: the span it covered and what it gave."""

    start: datetime
    end: datetime
    answer: Series | Measurement


async def _read_pieces(
    probe: Probe,
    kind: str,
    query: ProbeQuery,
    ctx: ProbeContext,
    span: tuple[datetime, datetime, timedelta],
) -> list[_Piece]:
    """``query``'s points over ``span`` (start, end, step), in as few reads as the probe
    type's size limit allows."""
    start, end, step = span
    per_read = step * (POINTS_PER_READ.get(kind, DEFAULT_POINTS_PER_READ) - 1)
    pieces = []
    low = start
    while True:
        high = min(end, low + per_read)
        answer = await _measure_range(
            probe, query, dataclasses.replace(ctx, now=high), (low, high, step)
        )
        pieces.append(_Piece(low, high, answer))
        if high >= end:
            return pieces
        low = high + step


def _sliced(pieces: Sequence[_Piece], start: datetime, end: datetime) -> Series | Measurement:
    """The points of ``pieces`` in ``[start, end]``, as one live range read over that span
    would give them; a failed read overlapping the span is that read's failure."""
    points: list[tuple[datetime, float]] = []
    for piece in pieces:
        if piece.end < start or piece.start > end:
            continue
        if isinstance(piece.answer, Measurement):
            if piece.answer.status is not MeasurementStatus.NO_DATA:
                return dataclasses.replace(piece.answer, observed_at=end)
            continue
        times = [at for at, _ in piece.answer.points]
        low, high = bisect.bisect_left(times, start), bisect.bisect_right(times, end)
        points.extend(piece.answer.points[low:high])
    detail = next((p.answer.detail for p in pieces if isinstance(p.answer, Series)), "")
    return Series.of(points, end, source="replay", detail=detail)


async def _plan_compare(
    criterion: Criterion,
    probe: Probe,
    kind: str,
    query: ProbeQuery,
    known: PlaceholderValues,
    ctx: ProbeContext,
    instants: Sequence[datetime],
) -> _Plan:
    """A ``compare:`` criterion: the canary's and the baseline's series each read once
    over the whole replay (from the first step's window on) at ``compare.step``, then at
    every step ``evaluate_comparison`` itself judges the slices of its window, as it
    judges a live sample's two range reads."""
    spec = criterion.compare
    assert spec is not None
    quote = quoter_of(probe)
    asked: list[ProbeQuery] = []

    async def record(
        q: ProbeQuery, start: datetime, end: datetime, step: timedelta
    ) -> Series | Measurement:
        asked.append(q)
        return Measurement.no_data("not read", end)

    async def judged(read_range: Any, at: datetime) -> CriterionResult:
        return await evaluate_comparison(
            criterion,
            query,
            known,
            now=at,
            quote=quote,
            fill=fill_query,
            read_range=read_range,
            duration=lambda: 0.0,
        )

    first = await judged(record, instants[0])
    if not asked:  # a baseline it cannot fill, or one equal to the canary: every step alike
        return _Plan(criterion, CriterionReplay(criterion.name, True, first.reason), fixed=first)
    unique = list({q.model_dump_json(): q for q in asked}.values())
    span = (instants[0] - spec.window, instants[-1], spec.step)
    read = await asyncio.gather(*(_read_pieces(probe, kind, q, ctx, span) for q in unique))
    by_query = {q.model_dump_json(): pieces for q, pieces in zip(unique, read, strict=True)}

    async def every_step() -> list[CriterionResult]:
        async def sliced(
            q: ProbeQuery, start: datetime, end: datetime, step: timedelta
        ) -> Series | Measurement:
            return _sliced(by_query[q.model_dump_json()], start, end)

        return [await judged(sliced, at) for at in instants]

    # Thousands of comparisons: in a worker thread, on a loop of its own (they only read
    # the points already fetched).
    results = await asyncio.to_thread(asyncio.run, every_step())
    pieces = [piece for found in read for piece in found]
    failed = [
        f"{iso(p.start)} to {iso(p.end)}: {p.answer.detail or p.answer.status}"
        for p in pieces
        if isinstance(p.answer, Measurement) and p.answer.status is not MeasurementStatus.NO_DATA
    ]
    report = CriterionReplay(criterion.name, True, "", len(pieces), tuple(failed))
    return _Plan(criterion, report, per_step=results)


def _from_store(plan: _Plan) -> bool:
    """A criterion gonogo's own samples can stand in for: one its probe type cannot
    read back (http, alertmanager, ...), not a ``compare:`` window."""
    return not plan.report.replayable and plan.criterion.compare is None


def stored_plan(
    gate: Gate,
    plan: _Plan,
    stored: Sequence[Sample],
    instants: Sequence[datetime],
    step: timedelta,
) -> _Plan:
    """``plan``'s criterion replayed from stored samples: at each step the stored result
    ``latest_reading`` picks, its value judged again under the gate as it is now (with
    its stored volume and baseline); a stored result with no value keeps its outcome and
    reason. No stored result there: inconclusive, and the step is one where gonogo took
    no sample of this criterion (``judge_steps`` treats it as a gap)."""
    criterion = plan.criterion
    found = [
        (sample.evaluated_at, result)
        for sample in stored
        for result in sample.results
        if result.name == criterion.name
    ]
    if not found:
        return plan
    found.sort(key=lambda item: item[0])
    times = [at for at, _ in found]
    missing = inconclusive(
        criterion, f"no stored sample in the {format_duration(step)} up to this step"
    )
    results: list[CriterionResult] = []
    present: list[bool] = []
    for at in instants:
        index = latest_reading(times, at, step)
        present.append(index is not None)
        if index is None:
            results.append(missing)
            continue
        result = found[index][1]
        if result.value is None or result.status not in (None, MeasurementStatus.OK):
            results.append(dataclasses.replace(result, reason=f"stored: {result.reason}"))
            continue
        volume = Measurement.ok(result.volume, at) if result.volume is not None else None
        baseline = (
            Measurement.ok(result.baseline.value, at)
            if result.baseline is not None and result.baseline.value is not None
            else None
        )
        results.append(
            judge(
                criterion,
                Measurement.ok(result.value, at, volume=result.volume),
                volume=volume,
                baseline=baseline,
                baseline_vars=result.baseline.vars if result.baseline is not None else None,
            )
        )
    report = CriterionReplay(
        criterion.name,
        True,
        f"from {len(found):,} stored samples ({plan.report.reason})",
    )
    return _Plan(criterion, report, per_step=results, stored_at=present)


def _no_sample_at(plans: Sequence[_Plan], index: int) -> bool:
    """Whether gonogo took no sample at step ``index``: the gate's criteria are read only
    from stored samples (or are not replayable), and none has one there. Steps of range
    reads are always samples: a source with nothing to say gives a no-data sample live too."""
    stored = [plan for plan in plans if plan.stored_at is not None]
    return bool(stored) and all(
        plan.fixed is not None or (plan.stored_at is not None and not plan.stored_at[index])
        for plan in plans
    )


def _between_samples(gate: Gate, last: Verdict | None, at: datetime) -> Verdict:
    """The decision a reader saw at ``at`` when gonogo took no sample then: the last one
    while it is fresh (``freshness_bound`` after it), a stale ``no_go`` after that."""
    if last is None or last.evaluated_at is None:
        verdict = no_sample_verdict(gate.name, gate.steady_for)
        return dataclasses.replace(verdict, reasons=("no sample yet: none stored up to here",))
    expires = last.evaluated_at + freshness_bound(gate)
    if at < expires:
        return last
    reason = f"stale since {iso(expires)}: no sample stored since {iso(last.evaluated_at)}"
    return dataclasses.replace(last, decision=Decision.NO_GO, reasons=(reason, *last.reasons))


def _result_at(plan: _Plan, index: int, at: datetime) -> CriterionResult:
    if plan.fixed is not None:
        return plan.fixed
    if plan.per_step is not None:
        return plan.per_step[index]
    assert plan.value is not None
    baseline = plan.baseline.measurements[index] if plan.baseline is not None else None
    if baseline is None and plan.baseline_fixed is not None:
        baseline = dataclasses.replace(plan.baseline_fixed, observed_at=at)
    return judge(
        plan.criterion,
        plan.value.measurements[index],
        volume=plan.volume.measurements[index] if plan.volume is not None else None,
        baseline=baseline,
        baseline_vars=plan.baseline_vars,
    )


Progress = Callable[[int, int], None]


def judge_steps(
    gate: Gate,
    plans: Sequence[_Plan],
    instants: Sequence[datetime],
    progress: Progress | None = None,
) -> list[ReplayStep]:
    """Every step judged and decided, with the history bounded like the live one. A step
    where gonogo took no sample (``_no_sample_at``) adds none to the history: the
    engine's own ``gap_bound`` then says whether the runs around it survive, as live.
    Pure and CPU-bound: callers on an event loop run it in a thread."""
    history: deque[Sample] = deque(maxlen=history_size(gate))
    steps = []
    last: Verdict | None = None
    for index, at in enumerate(instants):
        if _no_sample_at(plans, index):
            steps.append(ReplayStep(at, _between_samples(gate, last, at)))
        else:
            sample = Sample(at, tuple(_result_at(plan, index, at) for plan in plans))
            history.append(sample)
            last = decide_safely(gate, list(history))
            steps.append(ReplayStep(at, last))
        if progress is not None and (index % 500 == 0 or index == len(instants) - 1):
            progress(index + 1, len(instants))
    return steps


def replay_gate(gate: Gate, step: timedelta) -> Gate:
    """The gate as the replay decides it: its interval is the step (runs break on a gap
    of more than ``max(3 × step, 10s)`` between samples, and a decision is fresh that
    long)."""
    return gate.model_copy(update={"interval": step})


async def replay(
    gate: Gate,
    probes: Mapping[str, Probe],
    *,
    values: Mapping[str, str],
    start: datetime,
    end: datetime,
    step: timedelta | None = None,
    progress: Progress | None = None,
    max_steps: int = MAX_STEPS,
    stored: Sequence[Sample] = (),
) -> Replay:
    """Replay ``gate`` from ``start`` to ``end`` every ``step`` (default its interval),
    with ``values`` for its placeholders (``gates.sampler.placeholder_values``). Raises
    ``ReplayError`` for a bad range; a failed read is inconclusive steps, never a raise.

    ``stored``: gonogo's own samples of the gate over the range, oldest first; a criterion
    whose probe has no history of its own is replayed from them (``stored_plan``)."""
    every = step or gate.interval
    instants = replay_instants(start, end, every, max_steps=max_steps)
    decided = replay_gate(gate, every)
    plans = await asyncio.gather(
        *(_plan(gate, c, probes, values, instants, every) for c in gate.criteria)
    )
    if stored:
        plans = [
            await asyncio.to_thread(stored_plan, gate, plan, stored, instants, every)
            if _from_store(plan)
            else plan
            for plan in plans
        ]
    steps = await asyncio.to_thread(judge_steps, decided, plans, instants, progress)
    return Replay(
        gate=gate,
        start=instants[0],
        end=instants[-1],
        step=every,
        steps=tuple(steps),
        criteria=tuple(plan.report for plan in plans),
        requests=sum(plan.report.reads for plan in plans),
    )


def outcome_counts(replayed: Replay, criterion: str) -> dict[CriterionOutcome, int]:
    """How often ``criterion`` had each outcome over the replay."""
    counts = dict.fromkeys(CriterionOutcome, 0)
    for step in replayed.steps:
        for result in step.verdict.criteria:
            if result.name == criterion:
                counts[result.outcome] += 1
    return counts
