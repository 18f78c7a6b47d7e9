"""Replaying a ``compare:`` criterion against a fake Prometheus ``query_range``.

- one range read per side covers the whole replay; each step's window is a slice of it;
- every step is judged by the live path's ``evaluate_comparison``: a live sample taken at
  a step's instant against the same history gives the same outcome and value;
- a canary that diverges for 20 minutes breaches inside that stretch (and the window
  after it that still holds its points) and nowhere else, and rolls the gate back there;
- a failed range read makes the steps it covers inconclusive, with its cause.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from gates.engine import CriterionOutcome, Decision
from gates.loader import load_gate_text
from gates.model import Gate
from gates.replay import Replay, ReplayStep, replay
from gates.sampler import placeholder_values, take_sample
from probes.prometheus import PrometheusConfig, PrometheusProbe
from tests.fakes import Reply
from tests.fakes.prometheus import PrometheusFake, prom_number, prom_time

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
DIVERGES_FROM = T0 + 30 * MINUTE
DIVERGES_TO = T0 + 50 * MINUTE
WINDOW = 10 * MINUTE

GATE = """\
    interval: 1m
    steady_for: 2
    rollback_after: 2
    vars: {baseline: stable, version: canary}
    probes:
      prom: {type: prometheus, url: "URL"}
    criteria:
      - name: latency-vs-stable
        probe: prom
        query: 'latency{version="${version}"}'
        baseline: {vars: {version: "${baseline}"}}
        compare: {test: mann_whitney, window: 10m, step: 30s, confidence: 98%, effect: 10%,
                  rollback_effect: 50%, direction: increase}
    """
CANARY = 'latency{version="canary"}'
STABLE = 'latency{version="stable"}'


def noise(seconds: float) -> float:
    """The same small wobble on both sides: the two series do not differ."""
    return 0.01 * ((int(seconds) // 30) * 7 % 11)


def stable(seconds: float) -> float:
    return 0.200 + noise(seconds)


def canary(seconds: float) -> float:
    at = datetime.fromtimestamp(seconds, UTC)
    factor = 2.0 if DIVERGES_FROM <= at < DIVERGES_TO else 1.0
    return (0.200 + noise(seconds)) * factor


class PrometheusHistoryFake(PrometheusFake):
    """``GET /api/v1/query_range`` answered from ``histories`` (query text -> value at a
    Unix time): a one-series matrix with a point at every ``start + k * step`` up to
    ``end``, an empty matrix for an unknown query; more than 11,000 points, or an end
    before the start, is the ``bad_data`` error Prometheus gives."""

    def __init__(self) -> None:
        super().__init__()
        self.histories: dict[str, Callable[[float], float]] = {}

    def add_routes(self, app: web.Application) -> None:
        super().add_routes(app)

        async def query_range(request: web.Request) -> web.StreamResponse:
            return await self.handle(request, self._range)

        app.router.add_get("/api/v1/query_range", query_range)

    def _range(self, request: web.Request) -> Reply:
        params = request.query
        start, end = float(params["start"]), float(params["end"])
        step = float(params["step"])
        if end < start:
            return self._error(
                "bad_data", 'invalid parameter "end": end timestamp must not be before start time'
            )
        if (end - start) / step > 11_000:
            return self._error(
                "bad_data",
                "exceeded maximum resolution of 11,000 points per timeseries."
                " Try decreasing the query resolution (?step=XX)",
            )
        history = self.histories.get(params["query"])
        result: list[dict[str, Any]] = []
        if history is not None:
            count = int((end - start) / step + 1e-9) + 1
            values = [
                [prom_time(start + i * step), prom_number(history(start + i * step))]
                for i in range(count)
            ]
            result.append({"metric": {}, "values": values})
        return Reply(json={"status": "success", "data": {"resultType": "matrix", "result": result}})


@pytest.fixture
async def fake() -> AsyncIterator[PrometheusHistoryFake]:
    served = PrometheusHistoryFake()
    served.histories = {CANARY: canary, STABLE: stable}
    async with served.serving():
        yield served


@pytest.fixture
async def setup(fake: PrometheusHistoryFake) -> AsyncIterator[tuple[Gate, PrometheusProbe]]:
    g = load_gate_text(
        textwrap.dedent(GATE).replace("URL", fake.url), name="release", source="release.yaml"
    )
    config = g.probes["prom"]
    assert isinstance(config, PrometheusConfig)
    probe = PrometheusProbe(config, name="prom")
    yield g, probe
    await probe.aclose()


async def replayed(g: Gate, probe: PrometheusProbe, end: datetime) -> Replay:
    return await replay(
        g, {"prom": probe}, values=placeholder_values(g), start=T0, end=end, step=MINUTE
    )


def outcome(step: ReplayStep) -> CriterionOutcome:
    (result,) = step.verdict.criteria
    return result.outcome


async def test_a_canary_diverging_for_20_minutes_breaches_there_and_nowhere_else(
    fake: PrometheusHistoryFake, setup: tuple[Gate, PrometheusProbe]
) -> None:
    g, probe = setup
    result = await replayed(g, probe, T0 + 90 * MINUTE)
    (report,) = result.criteria
    assert report.replayable and report.reads == 2 and not report.failed_reads
    assert len(fake.requests) == 2  # one query_range per side for the 91 steps
    breaches = [s.at for s in result.steps if outcome(s) is CriterionOutcome.BREACH]
    assert breaches
    # Inside the divergence, or the window after it that still holds its points.
    assert all(DIVERGES_FROM < at < DIVERGES_TO + WINDOW for at in breaches)
    assert any(at < DIVERGES_TO for at in breaches)
    rollbacks = [s.at for s in result.steps if s.verdict.decision is Decision.ROLLBACK]
    assert rollbacks and all(DIVERGES_FROM < at < DIVERGES_TO + WINDOW for at in rollbacks)
    quiet = [s for s in result.steps if s.at < DIVERGES_FROM or s.at >= DIVERGES_TO + WINDOW]
    assert all(outcome(s) is CriterionOutcome.PASS for s in quiet)
    assert any(s.verdict.decision is Decision.GO for s in quiet)


async def test_every_step_is_judged_as_a_live_sample_at_that_instant(
    setup: tuple[Gate, PrometheusProbe],
) -> None:
    g, probe = setup
    result = await replayed(g, probe, T0 + 70 * MINUTE)
    values = placeholder_values(g)
    for step in result.steps[::5]:
        live = await take_sample(g, {"prom": probe}, now=step.at, values=values)
        (judged,) = step.verdict.criteria
        (sampled,) = live.results
        assert (judged.outcome, judged.value, judged.reason) == (
            sampled.outcome,
            sampled.value,
            sampled.reason,
        ), step.at
        assert judged.comparison == sampled.comparison


async def test_a_failed_range_read_is_inconclusive_with_its_cause(
    fake: PrometheusHistoryFake, setup: tuple[Gate, PrometheusProbe]
) -> None:
    g, probe = setup
    error = {"status": "error", "errorType": "bad_data", "error": "parse error: bad label"}
    fake.script(Reply(status=400, json=error))
    result = await replayed(g, probe, T0 + 20 * MINUTE)
    (report,) = result.criteria
    assert len(report.failed_reads) == 1 and "bad label" in report.failed_reads[0]
    for step in result.steps:
        assert outcome(step) is CriterionOutcome.INCONCLUSIVE
        assert step.verdict.decision is Decision.NO_GO
