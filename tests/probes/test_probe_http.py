"""The http probe: up, latency and availability of a health URL (Spring, IETF, custom)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gates.engine import Decision, Sample, decide, judge
from gates.model import Criterion, Gate
from probes.base import Measurement, MeasurementStatus, ProbeContext, ProbeQuery
from probes.http import HttpConfig, HttpProbe
from probes.registry import probe_type
from tests.conftest import T0
from tests.fakes import Reply
from tests.fakes.health import HealthFake
from tests.fakes.server import refused_port

# What the sampler hands the probe for a gate with interval: 30s (gap bound 1m30s).
INTERVAL = timedelta(seconds=30)


@pytest.fixture
async def health() -> AsyncIterator[HealthFake]:
    fake = HealthFake()
    async with fake.serving():
        yield fake


async def measure(
    url: str,
    now: datetime,
    metric: str = "up",
    *,
    window: timedelta | None = None,
    history: Sequence[Measurement] = (),
    interval: timedelta | None = INTERVAL,
    **options: object,
) -> Measurement:
    config = HttpConfig.model_validate(
        {"type": "http", "url": url, "timeout": 1, "retries": 0, **options}
    )
    probe = HttpProbe(config, name="health")
    ctx = ProbeContext(
        now=now,
        history=history,
        interval=interval,
        max_gap=None if interval is None else max(3 * interval, timedelta(seconds=10)),
    )
    try:
        return await probe.measure(ProbeQuery(metric=metric, window=window), ctx)
    finally:
        await probe.aclose()


def test_registered_under_its_entry_point() -> None:
    assert probe_type("http") is HttpProbe


@pytest.mark.parametrize(
    ("mode", "detailed", "up", "detail"),
    [
        ("spring-up", False, 1.0, "up: HTTP 200, status UP"),
        ("spring-up", True, 1.0, "up: HTTP 200, status UP"),
        ("spring-down", False, 0.0, "down: HTTP 503, expected 2xx; health status DOWN"),
        ("spring-down", True, 0.0, "down: HTTP 503, expected 2xx; health status DOWN"),
        ("ietf-pass", False, 1.0, "up: HTTP 200, status pass"),
        ("ietf-warn", False, 1.0, "up: HTTP 200, status warn (cpu:utilization above threshold)"),
        (
            "ietf-fail",
            False,
            0.0,
            "down: HTTP 503, expected 2xx; health status fail (cassandra:connections check failed)",
        ),
    ],
)
async def test_spring_and_ietf_health(
    health: HealthFake, now: datetime, mode: str, detailed: bool, up: float, detail: str
) -> None:
    health.mode, health.detailed = mode, detailed
    result = await measure(health.url + "/actuator/health", now)
    assert (result.status, result.value, result.detail) == (MeasurementStatus.OK, up, detail)
    assert result.extra == {"up": up}


async def test_down_body_with_200_is_still_down(health: HealthFake, now: datetime) -> None:
    health.script(Reply(json={"status": "DOWN"}))
    result = await measure(health.url + "/health", now)
    assert result.value == 0.0


async def test_json_path_expect_value_and_contains(health: HealthFake, now: datetime) -> None:
    url = health.url + "/actuator/health"
    options: dict[str, Any] = {"expect_status": [200], "json_path": "status", "expect_value": "UP"}
    assert (await measure(url, now, **options)).value == 1.0
    health.script(Reply(json={"status": "UNKNOWN"}))
    result = await measure(url, now, **options)
    assert (result.value, result.detail) == (0.0, "down: status is \"UNKNOWN\", expected 'UP'")
    health.script(Reply(json={"db": "up"}))
    result = await measure(url, now, **options)
    assert result.detail == "down: status not found: no 'status' in the top level"
    health.script(Reply(body=b"all systems nominal", content_type="text/plain"))
    assert (await measure(url, now, contains="nominal")).value == 1.0
    health.script(Reply(body=b"degraded", content_type="text/plain"))
    result = await measure(url, now, contains="nominal")
    assert result.detail == "down: body does not contain 'nominal'"


async def test_expect_status_overrides_2xx(health: HealthFake, now: datetime) -> None:
    health.script(Reply(status=204), Reply(status=200))
    url = health.url + "/health"
    assert (await measure(url, now, expect_status=[204])).value == 1.0
    result = await measure(url, now, expect_status=[204])
    assert (result.value, result.detail) == (0.0, "down: HTTP 200, expected 204")


async def test_unreachable_is_down_with_the_cause(now: datetime) -> None:
    """Decision in probes.http: no answer from the health URL is the service being down."""
    result = await measure(f"http://127.0.0.1:{refused_port()}/health", now)
    assert (result.status, result.value) == (MeasurementStatus.OK, 0.0)
    assert result.detail == "down: connection refused"


async def test_latency_in_seconds(health: HealthFake, now: datetime) -> None:
    health.script(Reply(json={"status": "UP"}, delay=0.2))
    result = await measure(health.url + "/health", now, "latency")
    assert result.status is MeasurementStatus.OK
    assert result.value is not None and 0.2 <= result.value < 1.0


async def test_latency_is_inconclusive_when_the_check_fails(
    health: HealthFake, now: datetime
) -> None:
    health.mode = "spring-down"
    result = await measure(health.url + "/health", now, "latency")
    assert (result.status, result.value) == (MeasurementStatus.ERROR, None)
    assert result.detail.startswith("http: no latency, the check failed (HTTP 503")
    assert result.extra == {"up": 0.0}


async def test_a_timeout_is_down_and_latency_inconclusive(
    health: HealthFake, now: datetime
) -> None:
    health.script(Reply(hang=True), Reply(hang=True))
    up = await measure(health.url + "/health", now, timeout=0.2)
    latency = await measure(health.url + "/health", now, "latency", timeout=0.2)
    assert (up.value, up.detail) == (0.0, "down: timed out after 0.2s")
    assert latency.status is MeasurementStatus.ERROR


def history(now: datetime, ups: list[float], every: timedelta) -> list[Measurement]:
    return [
        Measurement.ok(u, now - every * (len(ups) - i), extra={"up": u}) for i, u in enumerate(ups)
    ]


async def test_availability_is_the_up_fraction_over_the_window(
    health: HealthFake, now: datetime
) -> None:
    # 10 past observations 30s apart; the window of 2m holds the last 3 (+ now).
    past = history(now, [0.0] * 7 + [1.0, 0.0, 1.0], timedelta(seconds=30))
    result = await measure(
        health.url + "/health", now, "availability", window=timedelta(minutes=2), history=past
    )
    assert result.status is MeasurementStatus.OK
    assert result.value == 0.75
    assert result.volume == 4.0
    assert result.extra == {"up": 1.0}
    assert result.detail == "1 of 4 checks down; now up: HTTP 200, status UP"


async def test_availability_without_history_is_not_judged_on_one_check(
    health: HealthFake, now: datetime
) -> None:
    """Regression: a 5m availability was judged on the current check alone (after a
    restart, a redefinition, a check's first sample). It is inconclusive until covered,
    and still records up, so coverage builds up."""
    result = await measure(health.url + "/health", now, "availability", window=timedelta(minutes=5))
    assert (result.status, result.value) == (MeasurementStatus.ERROR, None)
    assert result.detail == (
        "availability over 5m needs history since 2026-11-24T09:55:30Z, have 0s"
    )
    assert result.extra == {"up": 1.0}


# -- window coverage --------------------------------------------------------------------------

FIVE_MINUTES = timedelta(minutes=5)


def ups_at(now: datetime, seconds_ago: Sequence[float], up: float = 1.0) -> list[Measurement]:
    return [
        Measurement.ok(up, now - timedelta(seconds=s), extra={"up": up})
        for s in sorted(seconds_ago, reverse=True)
    ]


def availability(
    now: datetime,
    past: Sequence[Measurement],
    *,
    window: timedelta = FIVE_MINUTES,
    up: float = 1.0,
    interval: timedelta = INTERVAL,
) -> Measurement:
    """The probe's availability arithmetic on its own, without an HTTP request."""
    probe = HttpProbe(HttpConfig(type="http", url="http://portal/health"), name="health")
    ctx = ProbeContext(
        now=now,
        history=past,
        interval=interval,
        max_gap=max(3 * interval, timedelta(seconds=10)),
    )
    return probe._availability(
        up, "HTTP 200", ProbeQuery(metric="availability", window=window), ctx
    )


def test_three_samples_do_not_cover_a_five_minute_window(now: datetime) -> None:
    """Regression: 5m availability said > 99.9% from three samples (a check's first minute)."""
    result = availability(now, ups_at(now, [60, 30]))
    assert (result.status, result.value) == (MeasurementStatus.ERROR, None)
    assert result.detail == (
        "availability over 5m needs history since 2026-11-24T09:55:30Z, have 1m"
    )


def test_samples_at_every_interval_since_the_window_start_cover_it(now: datetime) -> None:
    # The tick at exactly now - 5m is outside the window; the one interval later is the oldest.
    result = availability(now, ups_at(now, range(30, 300, 30)))
    assert (result.status, result.value, result.volume) == (MeasurementStatus.OK, 1.0, 10.0)


def test_the_oldest_sample_may_be_at_most_one_interval_into_the_window(now: datetime) -> None:
    assert availability(now, ups_at(now, [270, 180, 90])).status is MeasurementStatus.OK
    late = availability(now, ups_at(now, [269, 180, 90]))
    assert late.status is MeasurementStatus.ERROR
    assert late.detail == (
        "availability over 5m needs history since 2026-11-24T09:55:30Z, have 4m29s"
    )


def test_a_hole_longer_than_the_gap_bound_inside_the_window_is_not_covered(
    now: datetime,
) -> None:
    """A restart inside the window: samples on both sides, none in between."""
    exactly = availability(now, ups_at(now, [270, 180, 90]))  # holes of 90s = the bound
    assert exactly.status is MeasurementStatus.OK
    hole = availability(now, ups_at(now, [270, 240, 60, 30]))
    assert hole.status is MeasurementStatus.ERROR
    assert hole.detail == (
        "availability over 5m has a hole of 3m between 2026-11-24T09:56:00Z"
        " and 2026-11-24T09:59:00Z (more than 1m30s)"
    )
    stale = availability(now, ups_at(now, [270, 240, 210]))  # nothing since 3m30s ago
    assert stale.status is MeasurementStatus.ERROR
    assert "has a hole of 3m30s" in stale.detail


def test_observations_outside_the_window_do_not_cover_it(now: datetime) -> None:
    result = availability(now, ups_at(now, [600, 480, 360]))
    assert result.status is MeasurementStatus.ERROR
    assert result.detail.endswith("have 0s")


def test_a_window_no_longer_than_the_interval_is_covered_by_the_current_check(
    now: datetime,
) -> None:
    result = availability(now, [], window=timedelta(seconds=30), up=0.0)
    assert (result.status, result.value, result.volume) == (MeasurementStatus.OK, 0.0, 1.0)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(1, 400), max_size=20, unique=True),
    st.sampled_from([1, 10, 30, 60]),
    st.sampled_from([30, 120, 300]),
)
def test_property_availability_counts_only_when_its_window_is_covered(
    seconds_ago: list[int], interval_s: int, window_s: int
) -> None:
    now = T0
    interval = timedelta(seconds=interval_s)
    window = timedelta(seconds=window_s)
    bound = max(3 * interval, timedelta(seconds=10))
    result = availability(now, ups_at(now, seconds_ago), window=window, interval=interval)
    inside = sorted({now - timedelta(seconds=s) for s in seconds_ago if s < window_s} | {now})
    covered = inside[0] <= now - window + interval and all(
        b - a <= bound for a, b in itertools.pairwise(inside)
    )
    assert (result.status is MeasurementStatus.OK) == covered
    assert result.extra == {"up": 1.0}  # recorded either way, so coverage builds up


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["tick", "late", "gap"]), min_size=1, max_size=40), st.data())
def test_property_an_uncovered_availability_window_never_yields_go(
    steps: list[str], data: st.DataObject
) -> None:
    """The probe, the engine and the history together, as the sampler runs them: random
    late samples and gaps (restarts); go only when the latest sample's window is covered."""
    gate = Gate(
        name="portal",
        interval="30s",
        steady_for=1,
        probes={"health": HttpConfig(type="http", url="http://portal/health")},
        criteria=[
            Criterion(
                name="availability",
                probe="health",
                metric="availability",
                window="2m",
                go="> 99%",
            )
        ],
    )
    criterion = gate.criteria[0]
    samples: list[Sample] = []
    at = T0
    for step in steps:
        if samples:
            at += {
                "tick": INTERVAL,
                "late": timedelta(seconds=data.draw(st.integers(31, 90))),
                "gap": timedelta(seconds=data.draw(st.integers(91, 3600))),
            }[step]
        past = [m for s in samples for r in s.results if (m := r.as_measurement())]
        measurement = availability(at, past, window=criterion.window or FIVE_MINUTES)
        samples.append(Sample(at, (judge(criterion, measurement),)))
        verdict = decide(gate, samples)
        inside = [s.evaluated_at for s in samples if at - s.evaluated_at < timedelta(minutes=2)]
        covered = inside[0] <= at - timedelta(seconds=90) and all(
            b - a <= timedelta(seconds=90) for a, b in itertools.pairwise(inside)
        )
        if not covered:
            assert verdict.decision is not Decision.GO
            assert verdict.reasons[0].startswith("availability: availability over 2m ")
        else:
            assert verdict.decision is Decision.GO  # the honest case goes


def test_check_query() -> None:
    assert HttpProbe.check_query(ProbeQuery(metric="up")) == []
    assert [f for f, _ in HttpProbe.check_query(ProbeQuery())] == ["metric"]
    assert [f for f, _ in HttpProbe.check_query(ProbeQuery(metric="availability"))] == ["window"]
    assert [f for f, _ in HttpProbe.check_query(ProbeQuery(metric="up", query="x"))] == ["query"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"expect_value": "UP"}, "expect_value needs json_path"),
        ({"expect_status": [700]}, "not an HTTP status code"),
        ({"url": "ftp://x"}, "String should match pattern"),
    ],
)
def test_config_problems(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HttpConfig.model_validate({"type": "http", "url": "http://h/health", **options})
