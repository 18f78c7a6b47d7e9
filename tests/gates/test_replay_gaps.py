"""Gaps and steps in a replay (gates/replay.py, docs/replay.md "Gaps and steps").

- a reading (a range point or a stored sample) serves one step at most: a step shorter
  than the readings' spacing never makes a steady run count one reading twice;
- a stretch where gonogo took no sample adds none to the history: the decision stays as
  the last one while it is fresh, is a stale ``no_go`` after that, and the engine's own
  ``gap_bound`` breaks the runs across it, as live;
- property: over random histories with gaps, a replay never shows ``go`` at a step where
  a deciding criterion had no reading within the freshness bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gates.engine import Decision, Sample, freshness_bound, judge
from gates.model import Gate
from gates.replay import Replay, replay, replay_gate
from gates.sampler import placeholder_values
from probes.base import Measurement, ProbeConfig, ProbeContext, ProbeQuery, Series
from tests.gates.test_replay import HistoryProbe, gate

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)

STORED_GATE = """\
    interval: 1m
    steady_for: 3
    probes:
      web: {type: http, url: "http://127.0.0.1:9/health"}
    criteria:
      - name: up
        probe: web
        metric: up
        go: "== 1"
    """


class NoHistory:
    """A probe type that knows only the present (no ``measure_range``), like http."""

    type_name: ClassVar[str] = "http"
    config_model: ClassVar[type[ProbeConfig]] = ProbeConfig

    async def measure(self, query: ProbeQuery, ctx: ProbeContext) -> Measurement:
        return Measurement.error("not asked in a replay", ctx.now)

    async def aclose(self) -> None:
        return None


def stored_samples(g: Gate, readings: Sequence[tuple[datetime, float]]) -> list[Sample]:
    (criterion,) = g.criteria
    return [Sample(at, (judge(criterion, Measurement.ok(value, at)),)) for at, value in readings]


async def replay_stored(
    g: Gate, readings: Sequence[tuple[datetime, float]], end: datetime, step: timedelta
) -> Replay:
    return await replay(
        g,
        {"web": NoHistory()},
        values=placeholder_values(g),
        start=T0,
        end=end,
        step=step,
        stored=stored_samples(g, readings),
    )


def decisions(replayed: Replay) -> dict[datetime, Decision]:
    return {step.at: step.verdict.decision for step in replayed.steps}


async def test_a_step_shorter_than_the_samples_never_counts_one_sample_twice() -> None:
    g = gate(STORED_GATE)
    readings = [(T0 + MINUTE * i, 1.0) for i in range(5)]
    replayed = await replay_stored(g, readings, T0 + 4 * MINUTE, timedelta(seconds=20))
    first_go = min(at for at, d in decisions(replayed).items() if d is Decision.GO)
    # steady_for 3 takes three stored samples, 10:00, 10:01 and 10:02, as it did live.
    assert first_go == T0 + 2 * MINUTE
    between = next(s for s in replayed.steps if s.at == T0 + timedelta(seconds=20))
    assert between.verdict.steady.passes == 1  # the step between samples added none


async def test_a_stretch_without_samples_goes_stale_and_its_gap_breaks_the_runs() -> None:
    g = gate(STORED_GATE)
    before = [(T0 + MINUTE * i, 1.0) for i in range(6)]  # 10:00 .. 10:05
    after = [(T0 + MINUTE * i, 1.0) for i in range(15, 21)]  # 10:15 .. 10:20: gonogo was down
    replayed = await replay_stored(g, before + after, T0 + 20 * MINUTE, MINUTE)
    got = decisions(replayed)
    assert [got[T0 + MINUTE * i] for i in range(6)] == [Decision.NO_GO] * 2 + [Decision.GO] * 4
    # Fresh for max(3 x 1m, 10s) after the last sample, as a reader saw it live...
    assert got[T0 + 6 * MINUTE] is Decision.GO and got[T0 + 7 * MINUTE] is Decision.GO
    # ...then stale, saying since when.
    stale = next(s for s in replayed.steps if s.at == T0 + 8 * MINUTE)
    assert stale.verdict.decision is Decision.NO_GO
    assert stale.verdict.reasons[0] == (
        "stale since 2026-11-24T10:08:00Z: no sample stored since 2026-11-24T10:05:00Z"
    )
    assert all(got[T0 + MINUTE * i] is Decision.NO_GO for i in range(8, 15))
    # The 10-minute gap broke the steady run: three new samples are needed again.
    assert [got[T0 + MINUTE * i] for i in range(15, 18)] == [
        Decision.NO_GO,
        Decision.NO_GO,
        Decision.GO,
    ]
    resumed = next(s for s in replayed.steps if s.at == T0 + 15 * MINUTE)
    assert any("gap of 10m" in reason for reason in resumed.verdict.reasons)


# -- the property ---------------------------------------------------------------------------

RANGE_GATE = """\
    interval: 1m
    steady_for: 2
    rollback_after: 2
    probes:
      src: {type: constant, value: 1}
    criteria:
      - name: errors
        probe: src
        query: errors
        go: "< 1%"
        rollback: "> 5%"
      - name: latency
        probe: src
        query: latency
        go: "< 0.5"
    """

STEPS = 40
values_at = st.one_of(st.none(), st.sampled_from([0.001, 0.002, 0.02, 0.1, 0.3, 0.9]))


class Scripted(HistoryProbe):
    """Points at irregular instants (not on the steps), some missing: a history with gaps."""

    def __init__(self, points: dict[str, list[tuple[datetime, float]]]) -> None:
        super().__init__(lambda at: None)
        self.points = points

    async def measure_range(
        self, query: ProbeQuery, ctx: ProbeContext, start: datetime, end: datetime, step: timedelta
    ) -> Series | Measurement:
        inside = [(at, v) for at, v in self.points[query.query or ""] if start <= at <= end]
        return Series.of(inside, ctx.now, source="scripted")


def fresh(times: Sequence[datetime], at: datetime, bound: timedelta) -> bool:
    return any(at - bound < seen <= at for seen in times)


@st.composite
def histories(draw: st.DrawFn) -> tuple[dict[str, list[tuple[datetime, float]]], int]:
    step_seconds = draw(st.sampled_from([20, 60, 90]))
    points: dict[str, list[tuple[datetime, float]]] = {}
    for name in ("errors", "latency"):
        found = []
        for index in range(STEPS * 2):
            value = draw(values_at)
            if value is not None:
                offset = draw(st.integers(min_value=-40, max_value=0))
                found.append((T0 + timedelta(seconds=45 * index + offset), value))
        points[name] = found
    return points, step_seconds


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_a_replay_of_range_reads_never_says_go_without_a_fresh_reading_of_each_criterion(
    drawn: tuple[dict[str, list[tuple[datetime, float]]], int],
) -> None:
    points, step_seconds = drawn
    g = gate(RANGE_GATE)
    step = timedelta(seconds=step_seconds)
    replayed = asyncio.run(
        replay(
            g,
            {"src": Scripted(points)},
            values=placeholder_values(g),
            start=T0,
            end=T0 + step * STEPS,
            step=step,
        )
    )
    bound = freshness_bound(replay_gate(g, step))
    for replayed_step in replayed.steps:
        if replayed_step.verdict.decision is Decision.GO:
            for name, found in points.items():
                assert fresh([at for at, _ in found], replayed_step.at, bound), (
                    name,
                    replayed_step,
                )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.integers(0, 3_000), st.sampled_from([0.0, 1.0, 1.0])), max_size=60),
    st.sampled_from([20, 60, 150]),
)
def test_a_replay_of_stored_samples_never_says_go_without_a_fresh_stored_sample(
    drawn: list[tuple[int, float]], step_seconds: int
) -> None:
    g = gate(STORED_GATE)
    readings = sorted((T0 + timedelta(seconds=s), v) for s, v in drawn)
    step = timedelta(seconds=step_seconds)
    replayed = asyncio.run(replay_stored(g, readings, T0 + timedelta(seconds=3_000), step))
    bound = freshness_bound(replay_gate(g, step))
    times = [at for at, _ in readings]
    for replayed_step in replayed.steps:
        if replayed_step.verdict.decision is Decision.GO:
            assert fresh(times, replayed_step.at, bound), replayed_step.at
