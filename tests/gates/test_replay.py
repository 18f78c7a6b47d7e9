"""Replaying a gate on history (gates/replay.py): the engine's own decisions, step by step.

- a replay from range reads decides exactly as the live gate did, sample by sample, when
  the range reader gives the values the live probe gave;
- a criterion with no range reads (http) is "not replayable", inconclusive at every step,
  and the replay never says go;
- alignment: a step takes the latest point in ``(t - step, t]``; none is no data;
- bounded reads: a range longer than the probe type's limit is read in a few pieces; a
  failed read is inconclusive over its piece, with the cause, never a raise;
- bad ranges are ``ReplayError``s naming the input.
"""

from __future__ import annotations

import re
import textwrap
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest

from gates.engine import CriterionOutcome, Decision, Sample, Verdict, decide_safely
from gates.loader import load_gate_text
from gates.model import Gate, history_size
from gates.replay import (
    MAX_STEPS,
    ReplayError,
    parse_instant,
    replay,
    replay_instants,
)
from gates.sampler import placeholder_values, take_sample
from probes.base import Measurement, ProbeConfig, ProbeContext, ProbeQuery, Series
from probes.http import HttpConfig, HttpProbe

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
STEP = timedelta(seconds=30)

Values = Callable[[datetime], float | None]


class HistoryProbe:
    """A source with a history: ``values(at)`` is what it held at ``at`` (None: nothing).
    ``measure`` answers the instant, ``measure_range`` the points of a range, as a source
    that stores its past would."""

    type_name: ClassVar[str] = "history"
    config_model: ClassVar[type[ProbeConfig]] = ProbeConfig

    def __init__(self, values: Values, *, fail: str | None = None) -> None:
        self.values = values
        self.fail = fail
        self.config = ProbeConfig(type="history", timeout=5.0, retries=0)
        self.ranges: list[tuple[datetime, datetime, timedelta]] = []

    async def measure(self, query: ProbeQuery, ctx: ProbeContext) -> Measurement:
        value = self.values(ctx.now)
        if value is None:
            return Measurement.no_data("empty result", ctx.now)
        return Measurement.ok(value, ctx.now)

    async def measure_range(
        self, query: ProbeQuery, ctx: ProbeContext, start: datetime, end: datetime, step: timedelta
    ) -> Series | Measurement:
        self.ranges.append((start, end, step))
        if self.fail is not None:
            return Measurement.error(self.fail, ctx.now)
        points = []
        at = start
        while at <= end:
            value = self.values(at)
            if value is not None:
                points.append((at, value))
            at += step
        return Series.of(points, ctx.now, source="history")

    async def aclose(self) -> None:
        return None


def gate(text: str) -> Gate:
    return load_gate_text(textwrap.dedent(text), name="release", source="release.yaml")


GATE = """\
    interval: 30s
    steady_for: 3
    rollback_after: 2
    probes:
      src: {type: constant, value: 1}
    criteria:
      - name: error-rate
        probe: src
        query: errors
        go: "< 1%"
        rollback: "> 5%"
        no_data: fail
    """


def incident(at: datetime) -> float | None:
    """Quiet, a failing stretch, a breach, a hole with no data, quiet again."""
    minute = (at - T0) / timedelta(minutes=1)
    if 5 <= minute < 7:
        return 0.02  # fail
    if 9 <= minute < 12:
        return 0.10  # breach
    if 14 <= minute < 15:
        return None
    return 0.001


async def live_decisions(g: Gate, probe: HistoryProbe, instants: list[datetime]) -> list[object]:
    """What the live gate decided: one sample per instant, the bounded history, decide."""
    history: deque[Sample] = deque(maxlen=history_size(g))
    found = []
    for at in instants:
        sample = await take_sample(
            g, {"src": probe}, now=at, values=placeholder_values(g), history=list(history)
        )
        history.append(sample)
        found.append(shown(decide_safely(g, list(history))))
    return found


def shown(verdict: Verdict) -> tuple[object, ...]:
    """A decision, its reasons (a no-data cause in the source's words aside), and each
    criterion's outcome and value."""
    reasons = tuple(
        re.sub(r"no data \(.*?\)", "no data (...)", reason).replace(
            "no point in the 30s up to this step", "empty result"
        )
        for reason in verdict.reasons
    )
    results = tuple((c.name, c.outcome, c.value) for c in verdict.criteria)
    return verdict.decision, reasons, results


async def test_a_replay_decides_as_the_live_gate_did_at_every_step() -> None:
    g = gate(GATE)
    probe = HistoryProbe(incident)
    instants = replay_instants(T0, T0 + timedelta(minutes=20), STEP)
    live = await live_decisions(g, probe, instants)
    replayed = await replay(
        g, {"src": probe}, values=placeholder_values(g), start=T0, end=instants[-1], step=STEP
    )
    assert [shown(s.verdict) for s in replayed.steps] == live
    # The stretch covers every kind of decision, so the comparison says something.
    assert {d[0] for d in live} == {Decision.GO, Decision.NO_GO, Decision.ROLLBACK}
    assert any("no data (...)" in r for d in live for r in d[1])
    assert len(probe.ranges) == 1  # one range read for the whole stretch


HTTP_GATE = """\
    interval: 30s
    steady_for: 1
    probes:
      src: {type: constant, value: 1}
      web: {type: http, url: "http://127.0.0.1:9/health"}
    criteria:
      - name: error-rate
        probe: src
        query: errors
        go: "< 1%"
      - name: up
        probe: web
        metric: up
        go: "== 1"
    """


async def test_an_http_criterion_is_not_replayable_and_the_replay_never_says_go() -> None:
    g = gate(HTTP_GATE)
    config = g.probes["web"]
    assert isinstance(config, HttpConfig)
    web = HttpProbe(config, name="web")
    try:
        replayed = await replay(
            g,
            {"src": HistoryProbe(lambda at: 0.001), "web": web},
            values=placeholder_values(g),
            start=T0,
            end=T0 + timedelta(minutes=10),
            step=STEP,
        )
    finally:
        await web.aclose()
    report = {c.name: c for c in replayed.criteria}
    assert report["error-rate"].replayable
    assert not report["up"].replayable
    assert "http probe type has no range reads" in report["up"].reason
    for step in replayed.steps:
        assert step.verdict.decision is Decision.NO_GO
        up = next(c for c in step.verdict.criteria if c.name == "up")
        assert up.outcome is CriterionOutcome.INCONCLUSIVE
        assert up.reason.startswith("not replayable: ")
    assert replayed.summary()["seconds_in"]["go"] == 0
    assert replayed.summary()["not_replayable"] == ["up"]


async def test_a_step_takes_the_latest_point_within_one_step_and_none_is_no_data() -> None:
    g = gate(GATE.replace("no_data: fail", "no_data: inconclusive"))

    # Points every 2 minutes, 10 s before the whole minute: a 1 m step sees each one at
    # the next whole minute only; the minute after has no point within its step.
    def sparse(at: datetime) -> float | None:
        return 0.001

    class Sparse(HistoryProbe):
        async def measure_range(
            self,
            query: ProbeQuery,
            ctx: ProbeContext,
            start: datetime,
            end: datetime,
            step: timedelta,
        ) -> Series | Measurement:
            points = [
                (T0 + timedelta(minutes=2 * i, seconds=-10), 0.001 * (i + 1)) for i in range(6)
            ]
            return Series.of(points, ctx.now, source="sparse")

    replayed = await replay(
        g,
        {"src": Sparse(sparse)},
        values=placeholder_values(g),
        start=T0,
        end=T0 + timedelta(minutes=9),
        step=timedelta(minutes=1),
    )
    values = [s.verdict.criteria[0].value for s in replayed.steps]
    assert values == [0.001, None, 0.002, None, 0.003, None, 0.004, None, 0.005, None]
    assert (
        replayed.steps[1].verdict.criteria[0].reason
        == "no data: no point in the 1m up to this step"
    )


async def test_a_long_range_is_read_in_pieces_and_a_failed_read_is_inconclusive() -> None:
    g = gate(GATE)
    probe = HistoryProbe(lambda at: 0.001, fail="history: 503 Service Unavailable")
    replayed = await replay(
        g,
        {"src": probe},
        values=placeholder_values(g),
        start=T0,
        end=T0 + STEP * 2_500,
        step=STEP,
    )
    # 2,501 steps at 1,000 points a read (one of them the point before the first step).
    assert len(probe.ranges) == 3
    assert all(int((end - start) / step) + 1 <= 1_000 for start, end, step in probe.ranges)
    assert probe.ranges[0][0] == T0 - STEP
    report = replayed.criteria[0]
    assert report.reads == 3 and report.all_reads_failed
    assert "503 Service Unavailable" in report.failed_reads[0]
    for step in replayed.steps:
        assert step.verdict.decision is Decision.NO_GO
        assert step.verdict.criteria[0].outcome is CriterionOutcome.INCONCLUSIVE
        assert "503 Service Unavailable" in step.verdict.criteria[0].reason


def test_ranges_and_instants_are_checked() -> None:
    with pytest.raises(ReplayError, match="must be before") as reversed_range:
        replay_instants(T0, T0 - STEP, STEP)
    assert reversed_range.value.field == "from"
    with pytest.raises(ReplayError, match="at most 20,000") as too_many:
        replay_instants(T0, T0 + STEP * MAX_STEPS, STEP)
    assert too_many.value.field == "step"
    assert len(replay_instants(T0, T0 + STEP * (MAX_STEPS - 1), STEP)) == MAX_STEPS
    with pytest.raises(ReplayError, match="under the minimum"):
        replay_instants(T0, T0 + STEP, timedelta(milliseconds=500))
    assert parse_instant("now", now=T0, field="--to") == T0
    assert parse_instant("-7d", now=T0, field="--from") == T0 - timedelta(days=7)
    assert parse_instant("-90m", now=T0, field="--from") == T0 - timedelta(minutes=90)
    assert parse_instant("2026-11-24T09:00:00+01:00", now=T0, field="--from") == T0 - timedelta(
        hours=2
    )
    for bad in ("yesterday", "2026-11-24T10:00:00", "-99999999999d", "+5m"):
        with pytest.raises(ReplayError, match="--from"):
            parse_instant(bad, now=T0, field="--from")


SLO_GATE = """\
    interval: 30s
    steady_for: 2
    probes:
      src: {type: constant, value: 1}
    criteria:
      - name: checkout-slo
        probe: src
        slo:
          objective: 99.9%
          errors: 'errors[${window}]'
          total: 'total[${window}]'
    """


def slo_source(query: ProbeQuery, at: datetime) -> float | None:
    """Requests per second over the query's window: 100, failing at 0.01 %, except that
    the shorter windows burn at 5 % from minute 8 to minute 14, with a hole at minute 16."""
    minute = (at - T0) / timedelta(minutes=1)
    if 16 <= minute < 17:
        return None
    burning = 8 <= minute < 14 and query.window is not None and query.window <= timedelta(hours=6)
    share = 0.05 if burning else 0.0001
    return 100 * share if (query.query or "").startswith("errors") else 100.0


class QueryHistoryProbe(HistoryProbe):
    """A history whose values depend on the query as well as the instant."""

    def __init__(self, values: Callable[[ProbeQuery, datetime], float | None]) -> None:
        super().__init__(lambda at: None)
        self.by_query = values

    async def measure(self, query: ProbeQuery, ctx: ProbeContext) -> Measurement:
        value = self.by_query(query, ctx.now)
        if value is None:
            return Measurement.no_data("empty result", ctx.now)
        return Measurement.ok(value, ctx.now)

    async def measure_range(
        self, query: ProbeQuery, ctx: ProbeContext, start: datetime, end: datetime, step: timedelta
    ) -> Series | Measurement:
        self.ranges.append((start, end, step))
        points = []
        at = start
        while at <= end:
            value = self.by_query(query, at)
            if value is not None:
                points.append((at, value))
            at += step
        return Series.of(points, ctx.now, source="history")


async def test_an_slo_criterion_replays_as_the_live_gate_judged_it() -> None:
    g = gate(SLO_GATE)
    probe = QueryHistoryProbe(slo_source)
    instants = replay_instants(T0, T0 + timedelta(minutes=20), STEP)
    live = await live_decisions(g, probe, instants)
    probe.ranges.clear()
    replayed = await replay(
        g, {"src": probe}, values=placeholder_values(g), start=T0, end=instants[-1], step=STEP
    )
    assert [shown(s.verdict) for s in replayed.steps] == live
    assert {d[0] for d in live} == {Decision.GO, Decision.NO_GO, Decision.ROLLBACK}
    # One range read per window and side (errors, total), not one per step.
    report = replayed.criteria[0]
    assert report.replayable and report.reads == len(probe.ranges) <= 10
    burning = replayed.steps[20].verdict.criteria[0]
    assert burning.comparison is not None and "windows" in burning.comparison
