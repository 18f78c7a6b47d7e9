"""The demo's simulated service and story: wire format, and go -> no_go -> rollback -> go
through the real decision engine with the demo gate's own criteria."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
import pytest
import yaml

from app.demo import service as demo
from gates.engine import Decision, Sample, decide
from gates.model import Gate
from gates.sampler import placeholder_values, take_sample
from probes.base import Measurement, ProbeConfig, ProbeContext, ProbeQuery, QuoteContext
from probes.quoting import quote_promql

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


class StoryProbe:
    """Answers each query from the story at the story second the test sets."""

    type_name: ClassVar[str] = "story"
    config_model: ClassVar[type[ProbeConfig]] = ProbeConfig

    def __init__(self) -> None:
        self.story_seconds = 0.0
        self.queries: list[str] = []

    @staticmethod
    def quote(value: str, context: QuoteContext) -> str:
        return quote_promql(value, context)  # it stands in for the gate's prometheus probe

    async def measure(self, query: ProbeQuery, ctx: ProbeContext) -> Measurement:
        state = demo.state_at(self.story_seconds)
        if query.metric == "up":
            return Measurement.ok(1.0 if state.healthy else 0.0, ctx.now)
        assert query.query is not None
        self.queries.append(query.query)
        signal = demo.classify_query(query.query)
        if signal is None:
            return Measurement.no_data("empty vector", ctx.now)
        return Measurement.ok(state.signal(signal), ctx.now)

    async def aclose(self) -> None:
        return None


def demo_gate(interval: timedelta = demo.NOMINAL_INTERVAL) -> Gate:
    document: dict[str, Any] = yaml.safe_load(demo.demo_gate_yaml("http://127.0.0.1:9", interval))
    document["name"] = demo.GATE_NAME
    # The probe configs belong to the probe types; the engine only needs their names.
    document["probes"] = {
        name: ProbeConfig(type=config["type"]) for name, config in document["probes"].items()
    }
    return Gate.model_validate(document)


async def run_story(
    gate: Gate, seconds: float, step: float
) -> list[tuple[float, Decision, tuple[str, ...]]]:
    probe = StoryProbe()
    probes: Mapping[str, StoryProbe] = {"prom": probe, "health": probe}
    history: list[Sample] = []
    decisions = []
    t = 0.0
    while t <= seconds:
        probe.story_seconds = t
        sample = await take_sample(
            gate,
            probes,  # type: ignore[arg-type]
            now=T0 + timedelta(seconds=t),
            values=placeholder_values(gate, version="1.4.2"),
        )
        history.append(sample)
        verdict = decide(gate, history)
        decisions.append((t, verdict.decision, verdict.reasons))
        t += step
    return decisions


def first_time(
    decisions: list[tuple[float, Decision, tuple[str, ...]]], wanted: Decision, after: float = -1.0
) -> float:
    return next(t for t, decision, _ in decisions if decision is wanted and t > after)


async def test_story_goes_then_no_go_then_rollback_within_a_minute_then_recovers() -> None:
    gate = demo_gate()
    decisions = await run_story(gate, demo.STORY_LENGTH * 2, demo.NOMINAL_INTERVAL.total_seconds())

    go_at = first_time(decisions, Decision.GO)
    no_go_at = first_time(decisions, Decision.NO_GO, after=go_at)
    rollback_at = first_time(decisions, Decision.ROLLBACK, after=no_go_at)
    recovered_at = first_time(decisions, Decision.GO, after=rollback_at)
    assert go_at <= 15
    assert rollback_at <= 60
    assert recovered_at < demo.STORY_LENGTH + 15
    # no_go comes from the error rate before availability is anywhere near rollback.
    no_go_reasons = next(r for t, _, r in decisions if t == no_go_at)
    assert any(reason.startswith("error-rate:") for reason in no_go_reasons)
    rollback_reasons = next(r for t, _, r in decisions if t == rollback_at)
    assert any(reason.startswith("availability:") for reason in rollback_reasons)
    # The second loop tells the same story.
    assert first_time(decisions, Decision.ROLLBACK, after=demo.STORY_LENGTH) < 2 * 60


async def test_every_demo_query_is_recognised_with_the_version_filled_in() -> None:
    gate = demo_gate()
    probe = StoryProbe()
    await take_sample(
        gate,
        {"prom": probe, "health": probe},  # type: ignore[dict-item]
        now=T0,
        values=placeholder_values(gate, version="2.0.1"),
    )
    assert probe.queries, "the demo gate asks the simulated Prometheus"
    for query in probe.queries:
        assert "${" not in query
        assert demo.classify_query(query) is not None, query


def test_states_stay_in_range_over_a_whole_loop() -> None:
    for tenth in range(int(demo.STORY_LENGTH * 10)):
        state = demo.state_at(tenth / 10)
        assert 0.0 <= state.availability <= 1.0
        assert 0.0 <= state.error_rate < 1.0
        assert state.latency_p95 > 0
        assert state.requests > 100


def test_unknown_query_is_not_classified() -> None:
    assert demo.classify_query('up{job="node"}') is None


@pytest.mark.parametrize(
    ("speed", "interval", "scale"),
    [(1.0, 2.0, 1.0), (2.0, 1.0, 2.0), (0.5, 4.0, 0.5), (20.0, 1.0, 2.0)],
)
def test_pace_never_samples_faster_than_gates_allow(
    speed: float, interval: float, scale: float
) -> None:
    result = demo.pace(speed)
    assert result.interval == timedelta(seconds=interval)
    assert result.time_scale == pytest.approx(scale)
    assert result.clamped == (speed > 2)


@pytest.mark.parametrize("speed", [0.0, -1.0, float("nan"), float("inf")])
def test_pace_rejects_bad_speed(speed: float) -> None:
    with pytest.raises(ValueError, match="--speed"):
        demo.pace(speed)


def test_story_clock_scales_real_time() -> None:
    now = [100.0]
    clock = demo.StoryClock(2.0, monotonic=lambda: now[0])
    assert clock() == 0.0
    now[0] = 103.5
    assert clock() == pytest.approx(7.0)


# --- the simulated service over HTTP ---------------------------------------------------


def service_client(story_seconds: float) -> httpx.AsyncClient:
    app = demo.simulated_service(lambda: story_seconds)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim")


async def test_prometheus_query_answers_in_the_prometheus_wire_format() -> None:
    async with service_client(40.0) as client:
        response = await client.get("/api/v1/query", params={"query": demo.QUERIES["availability"]})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == "success"
    assert body["data"]["resultType"] == "vector"
    [series] = body["data"]["result"]
    timestamp, value = series["value"]
    assert isinstance(timestamp, float | int)
    assert isinstance(value, str)
    assert float(value) == pytest.approx(demo.state_at(40.0).availability)
    assert float(value) < 0.95


async def test_prometheus_query_by_post_form() -> None:
    async with service_client(5.0) as client:
        response = await client.post(
            "/api/v1/query", data={"query": demo.QUERIES["error_rate"], "time": "1"}
        )
    [series] = response.json()["data"]["result"]
    assert float(series["value"][1]) == pytest.approx(demo.state_at(5.0).error_rate)


async def test_unknown_series_is_an_empty_vector() -> None:
    async with service_client(5.0) as client:
        response = await client.get("/api/v1/query", params={"query": "up"})
    assert response.json() == {"status": "success", "data": {"resultType": "vector", "result": []}}


async def test_missing_query_is_bad_data_like_prometheus() -> None:
    async with service_client(5.0) as client:
        response = await client.get("/api/v1/query")
    assert response.status_code == 400
    assert response.json()["errorType"] == "bad_data"
    assert "no expression found" in response.json()["error"]


@pytest.mark.parametrize(
    ("story_seconds", "status", "text"), [(5.0, 200, "UP"), (42.0, 503, "DOWN")]
)
async def test_health_endpoint_follows_the_story(
    story_seconds: float, status: int, text: str
) -> None:
    async with service_client(story_seconds) as client:
        response = await client.get("/health")
    assert response.status_code == status
    assert response.json() == {"status": text}
