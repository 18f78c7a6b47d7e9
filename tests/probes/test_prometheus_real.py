"""The prometheus probe against a real Prometheus server scraping a local target.

Needs the ``prometheus`` binary (Debian package ``prometheus``); skipped without it,
except in CI (CI=true), where its absence is a failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, generate_latest

from gates.engine import CriterionOutcome, CriterionResult
from gates.model import Gate
from gates.sampler import take_sample
from probes.base import MeasurementStatus, ProbeContext, ProbeQuery
from probes.prometheus import PrometheusConfig, PrometheusProbe
from tests.fakes.server import ThreadedServer
from tests.support import real_prometheus

pytestmark = pytest.mark.prometheus

READY_DEADLINE = 30.0
CONDITION_DEADLINE = 40.0
TWO_SERIES = 'vector(1) or label_replace(vector(2), "copy", "yes", "", "")'
ERROR_RATE = (
    'sum(rate(http_requests_total{code=~"5.."}[15s])) / sum(rate(http_requests_total[15s]))'
)


@dataclass
class Target:
    """The scraped service: a counter of requests by status code."""

    requests: Counter
    url: str


@dataclass
class RealPrometheus:
    url: str
    target: Target


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    registry = CollectorRegistry()
    requests = Counter(
        "http_requests", "Requests served, by status code", ["code"], registry=registry
    )

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain")

    # Both series exist from the start, as a real service's would once it has served
    # both kinds: a missing 5xx series would make the ratio an empty result, not 0.
    requests.labels(code="200")
    requests.labels(code="503")
    app = web.Application()
    app.router.add_get("/metrics", metrics)
    with ThreadedServer(app) as server:
        yield Target(requests, server.url)


@pytest.fixture(scope="module")
def prometheus(
    target: Target, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealPrometheus]:
    with real_prometheus(tmp_path_factory.mktemp("prometheus"), target.url) as url:
        yield RealPrometheus(url, target)


@pytest.fixture
async def probe(prometheus: RealPrometheus) -> AsyncIterator[PrometheusProbe]:
    config = PrometheusConfig(type="prometheus", url=prometheus.url, timeout=5, retries=1)
    built = PrometheusProbe(config, name="prom")
    yield built
    await built.aclose()


class Traffic:
    """Serves simulated requests to the target's counter until stopped."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.error_share = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Traffic:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()

    async def _run(self) -> None:
        while True:
            errors = round(100 * self.error_share)
            self.target.requests.labels(code="200").inc(100 - errors)
            if errors:
                self.target.requests.labels(code="503").inc(errors)
            await asyncio.sleep(0.1)  # the pace of simulated traffic, not synchronisation


async def wait_for_outcome(
    gate: Gate, probe: PrometheusProbe, wanted: Callable[[CriterionResult], bool]
) -> CriterionResult:
    deadline = time.monotonic() + CONDITION_DEADLINE
    last: CriterionResult | None = None
    while time.monotonic() < deadline:
        sample = await take_sample(gate, {"prom": probe}, now=datetime.now(UTC), values={})
        last = sample.results[0]
        if wanted(last):
            return last
        await asyncio.sleep(0.5)  # the next scrape must land before the value can move
    pytest.fail(f"condition not reached within {CONDITION_DEADLINE}s; last: {last}")


async def test_error_rate_moves_from_pass_to_fail(
    prometheus: RealPrometheus, probe: PrometheusProbe
) -> None:
    gate = Gate.model_validate(
        {
            "name": "real-prometheus",
            "probes": {"prom": probe.config},
            "criteria": [
                {"name": "error-rate", "probe": "prom", "query": ERROR_RATE, "go": "< 1%"}
            ],
        }
    )
    async with Traffic(prometheus.target) as traffic:
        passing = await wait_for_outcome(gate, probe, lambda r: r.outcome is CriterionOutcome.PASS)
        assert passing.value == 0.0
        traffic.error_share = 0.2
        failing = await wait_for_outcome(gate, probe, lambda r: r.outcome is CriterionOutcome.FAIL)
    assert failing.value is not None and 0.01 <= failing.value <= 0.2


async def test_real_errors_and_empty_results(probe: PrometheusProbe) -> None:
    ctx = ProbeContext(now=datetime.now(UTC))
    broken = await probe.measure(ProbeQuery(query="sum("), ctx)
    assert broken.status is MeasurementStatus.ERROR
    assert broken.detail.startswith('prometheus: bad_data: invalid parameter "query"')
    assert "(HTTP 400 bad request)" in broken.detail
    empty = await probe.measure(ProbeQuery(query="no_such_metric_anywhere"), ctx)
    assert (empty.status, empty.detail) == (
        MeasurementStatus.NO_DATA,
        "prometheus: query returned no series",
    )
    several = await probe.measure(ProbeQuery(query=TWO_SERIES), ctx)
    assert several.status is MeasurementStatus.ERROR
    assert "series returned; set reduce" in several.detail
    answer = await probe.measure(ProbeQuery(query="scalar(vector(42))"), ctx)
    assert (answer.status, answer.value) == (MeasurementStatus.OK, 42.0)
