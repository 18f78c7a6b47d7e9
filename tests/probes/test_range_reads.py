"""Range reads (``measure_range``) against local fakes in each vendor's wire format:
Prometheus ``/api/v1/query_range``, Datadog ``/api/v1/query`` with ``from``/``to``, New
Relic NRQL ``TIMESERIES`` with ``SINCE … UNTIL``; errors, and secrets echoed back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from probes.base import Measurement, MeasurementStatus, ProbeContext, ProbeQuery, Series
from probes.datadog import DatadogConfig, DatadogProbe
from probes.newrelic import NewRelicConfig, NewRelicProbe
from probes.prometheus import PrometheusConfig, PrometheusProbe
from tests.fakes import Reply, example
from tests.fakes.datadog import API_KEY, APP_KEY, DatadogFake, series
from tests.fakes.newrelic import ACCOUNT_ID, NewRelicFake
from tests.fakes.newrelic import API_KEY as NR_KEY
from tests.fakes.prometheus import ERROR_STATUS, PrometheusFake, prom_number, prom_time

START = datetime(2026, 11, 24, 9, 50, tzinfo=UTC)
END = START + timedelta(minutes=10)
STEP = timedelta(seconds=30)
TOKEN = "prom-token-abcdef0123456789"


class PrometheusRangeFake(PrometheusFake):
    """``GET /api/v1/query_range`` as documented: a matrix of series whose ``values`` are
    ``[unix time, "value"]`` pairs at start, start + step, ... end; errors in the envelope."""

    def __init__(self) -> None:
        super().__init__()
        self.matrices: dict[str, list[Sequence[float]] | str] = {}

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
        answer = self.matrices.get(params["query"], [])
        if isinstance(answer, str):
            return self._error("execution", answer)
        result = []
        for index, values in enumerate(answer):
            points = [
                [prom_time(start + i * step), prom_number(v)]
                for i, v in enumerate(values)
                if start + i * step <= end
            ]
            result.append({"metric": {"instance": f"10.0.0.{index}:9100"}, "values": points})
        return Reply(json={"status": "success", "data": {"resultType": "matrix", "result": result}})


@pytest.fixture
async def prom() -> AsyncIterator[PrometheusRangeFake]:
    fake = PrometheusRangeFake()
    async with fake.serving():
        yield fake


def prometheus(url: str, **options: Any) -> PrometheusProbe:
    config = PrometheusConfig.model_validate(
        {"type": "prometheus", "url": url, "timeout": 2, "retries": 0, **options}
    )
    return PrometheusProbe(config, name="prom")


async def read(probe: Any, query: ProbeQuery) -> Series | Measurement:
    try:
        answer: Series | Measurement = await probe.measure_range(
            query, ProbeContext(now=END), START, END, STEP
        )
        return answer
    finally:
        await probe.aclose()


async def test_prometheus_reads_query_range_with_start_end_and_step(
    prom: PrometheusRangeFake,
) -> None:
    prom.matrices["latency"] = [[0.1 + i / 1000 for i in range(21)]]
    answer = await read(prometheus(prom.url), ProbeQuery(query="latency"))
    assert isinstance(answer, Series)
    assert len(answer.points) == 21
    assert answer.points[0] == (START, 0.1)
    assert answer.points[-1][0] == END
    seen = prom.requests[0]
    assert seen.path == "/api/v1/query_range"
    assert (float(seen.param("start") or 0), float(seen.param("end") or 0)) == (
        START.timestamp(),
        END.timestamp(),
    )
    assert seen.param("step") == "30"


async def test_prometheus_documented_matrix_example_needs_reduce(
    prom: PrometheusRangeFake,
) -> None:
    """The docs' own query_range body, served verbatim: two series."""
    prom.script(Reply(json=example("prometheus_query_range_matrix.json")))
    several = await read(prometheus(prom.url), ProbeQuery(query="up"))
    assert isinstance(several, Measurement) and "2 series returned" in several.detail
    prom.script(Reply(json=example("prometheus_query_range_matrix.json")))
    combined = await read(prometheus(prom.url), ProbeQuery(query="up", reduce="min"))
    assert isinstance(combined, Series)
    assert combined.values == (0.0, 0.0, 1.0)
    assert combined.points[0][0] == datetime.fromtimestamp(1435781430.781, UTC)


async def test_prometheus_range_several_series_without_reduce_is_an_error(
    prom: PrometheusRangeFake,
) -> None:
    prom.matrices["up"] = [[1.0] * 5, [0.0] * 5]
    answer = await read(prometheus(prom.url), ProbeQuery(query="up"))
    assert isinstance(answer, Measurement) and answer.status is MeasurementStatus.ERROR
    assert "2 series returned" in answer.detail
    summed = await read(prometheus(prom.url), ProbeQuery(query="up", reduce="sum"))
    assert isinstance(summed, Series) and summed.values == (1.0,) * 5


@pytest.mark.parametrize(
    ("matrix", "status", "said"),
    [
        ([], MeasurementStatus.NO_DATA, "range query returned no series"),
        ([[0.1, float("nan"), 0.1]], MeasurementStatus.ERROR, "is nan, not a finite number"),
        ([[0.1, float("inf")]], MeasurementStatus.ERROR, "not a finite number"),
        ("expanding series: unknown", MeasurementStatus.ERROR, "execution: expanding series"),
    ],
    ids=["empty matrix", "NaN point", "Inf point", "execution error"],
)
async def test_prometheus_range_unusable_answers(
    prom: PrometheusRangeFake, matrix: Any, status: MeasurementStatus, said: str
) -> None:
    prom.matrices["q"] = matrix
    answer = await read(prometheus(prom.url), ProbeQuery(query="q"))
    assert isinstance(answer, Measurement)
    assert answer.status is status
    assert said in answer.detail


async def test_prometheus_range_warnings_are_inconclusive_unless_accepted(
    prom: PrometheusRangeFake,
) -> None:
    body = {
        "status": "success",
        "warnings": ["remote read failed for one shard"],
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {}, "values": [[1767436620, "1"], [1767436650, "2"]]}],
        },
    }
    prom.script(Reply(json=body))
    answer = await read(prometheus(prom.url), ProbeQuery(query="q"))
    assert isinstance(answer, Measurement) and "partial answer" in answer.detail
    prom.script(Reply(json=body))
    accepted = await read(prometheus(prom.url, accept_warnings=True), ProbeQuery(query="q"))
    assert isinstance(accepted, Series) and accepted.values == (1.0, 2.0)


async def test_prometheus_range_error_echoing_the_token_is_scrubbed(
    prom: PrometheusRangeFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GONOGO_PROBE_PROM_TOKEN", TOKEN)
    prom.script(
        Reply(
            status=ERROR_STATUS["bad_data"],
            json={"status": "error", "errorType": "bad_data", "error": f"bad token {TOKEN}"},
        )
    )
    probe = prometheus(prom.url, token_env="GONOGO_PROBE_PROM_TOKEN")
    answer = await read(probe, ProbeQuery(query="q"))
    assert isinstance(answer, Measurement) and answer.status is MeasurementStatus.ERROR
    assert "bad_data: bad token ***" in answer.detail
    assert TOKEN not in answer.detail
    assert prom.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"


async def test_prometheus_range_retries_a_503_then_reads(prom: PrometheusRangeFake) -> None:
    prom.matrices["q"] = [[1.0, 2.0]]
    prom.script(Reply(status=503, body=b"Service Unavailable", content_type="text/plain"))
    answer = await read(prometheus(prom.url, retries=1), ProbeQuery(query="q"))
    assert isinstance(answer, Series) and answer.values == (1.0, 2.0)
    assert len(prom.requests) == 2


# -- Datadog ---------------------------------------------------------------------------------


@pytest.fixture
async def dd(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[DatadogFake]:
    monkeypatch.setenv("DD_API_KEY", API_KEY)
    monkeypatch.setenv("DD_APP_KEY", APP_KEY)
    fake = DatadogFake()
    async with fake.serving():
        yield fake


def datadog(url: str) -> DatadogProbe:
    config = DatadogConfig.model_validate(
        {
            "type": "datadog",
            "url": url,
            "api_key_env": "DD_API_KEY",
            "app_key_env": "DD_APP_KEY",
            "timeout": 2.0,
            "retries": 0,
        }
    )
    return DatadogProbe(config, name="dd")


async def test_datadog_reads_from_to_and_drops_null_points(dd: DatadogFake) -> None:
    q = "avg:trace.http.request.duration{version:v2}"
    end_ms = END.timestamp() * 1000
    dd.set_series(q, [series([0.2, None, 0.3, 0.25], end_ms=end_ms - 60_000, interval_s=60)])
    answer = await read(datadog(dd.url), ProbeQuery(query=q))
    assert isinstance(answer, Series), answer
    assert answer.values == (0.2, 0.3, 0.25)
    assert all(START <= at <= END for at, _ in answer.points)
    seen = dd.requests[0]
    assert (seen.param("from"), seen.param("to")) == (
        str(int(START.timestamp())),
        str(int(END.timestamp())),
    )


async def test_datadog_range_empty_forbidden_and_grouped(dd: DatadogFake) -> None:
    empty = await read(datadog(dd.url), ProbeQuery(query="avg:nothing{*}"))
    assert isinstance(empty, Measurement) and empty.status is MeasurementStatus.NO_DATA
    dd.script(dd.forbidden())
    forbidden = await read(datadog(dd.url), ProbeQuery(query="avg:x{*}"))
    assert isinstance(forbidden, Measurement)
    assert "forbidden" in forbidden.detail.lower() and "api_key_env DD_API_KEY" in forbidden.detail
    assert API_KEY not in forbidden.detail
    end_ms = END.timestamp() * 1000 - 60_000
    dd.set_series(
        "avg:x{*} by {host}",
        [
            series([1.0, 3.0], scope="host:a", end_ms=end_ms),
            series([3.0, 5.0], scope="host:b", end_ms=end_ms),
        ],
    )
    grouped = await read(datadog(dd.url), ProbeQuery(query="avg:x{*} by {host}", reduce="avg"))
    assert isinstance(grouped, Series) and grouped.values == (2.0, 4.0)


async def test_datadog_range_echoed_key_is_scrubbed(dd: DatadogFake) -> None:
    dd.script(Reply(status=400, json={"errors": [f"bad key {APP_KEY}"]}))
    answer = await read(datadog(dd.url), ProbeQuery(query="avg:x{*}"))
    assert isinstance(answer, Measurement)
    assert APP_KEY not in answer.detail and "***" in answer.detail


# -- New Relic -------------------------------------------------------------------------------


@pytest.fixture
async def nr(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[NewRelicFake]:
    monkeypatch.setenv("NEW_RELIC_API_KEY", NR_KEY)
    fake = NewRelicFake()
    async with fake.serving():
        yield fake


def newrelic(url: str) -> NewRelicProbe:
    config = NewRelicConfig.model_validate(
        {
            "type": "newrelic",
            "url": url,
            "account_id": ACCOUNT_ID,
            "api_key_env": "NEW_RELIC_API_KEY",
            "timeout": 2.0,
            "retries": 0,
        }
    )
    return NewRelicProbe(config, name="nr")


NRQL = "SELECT percentile(duration, 95) FROM Transaction WHERE appVersion = 'v2'"
SENT = (
    f"{NRQL} SINCE {int(START.timestamp() * 1000)} UNTIL {int(END.timestamp() * 1000)}"
    " TIMESERIES 30 SECONDS"
)


def bucket(begin: datetime, value: float | None) -> dict[str, Any]:
    return {
        "beginTimeSeconds": int(begin.timestamp()),
        "endTimeSeconds": int(begin.timestamp()) + 30,
        "percentile.duration": {"95": value},
    }


async def test_newrelic_adds_since_until_timeseries_and_reads_each_bucket(
    nr: NewRelicFake,
) -> None:
    nr.set_rows(SENT, [bucket(START + STEP * i, 0.2 + i / 100) for i in range(20)])
    answer = await read(newrelic(nr.url), ProbeQuery(query=NRQL))
    assert isinstance(answer, Series), answer
    assert len(answer.points) == 20 and answer.points[0] == (START, 0.2)
    assert nr.sent_variables()["nrql"] == SENT  # a variable, never spliced into the document
    assert NRQL not in json.loads(nr.requests[0].body)["query"]


async def test_newrelic_range_null_buckets_are_left_out_and_all_null_is_no_data(
    nr: NewRelicFake,
) -> None:
    nr.set_rows(SENT, [bucket(START, None), bucket(START + STEP, 0.3)])
    answer = await read(newrelic(nr.url), ProbeQuery(query=NRQL))
    assert isinstance(answer, Series) and answer.values == (0.3,)
    nr.set_rows(SENT, [bucket(START, None)])
    empty = await read(newrelic(nr.url), ProbeQuery(query=NRQL))
    assert isinstance(empty, Measurement) and empty.status is MeasurementStatus.NO_DATA


async def test_newrelic_range_refuses_several_series(nr: NewRelicFake) -> None:
    """FACET rows are one series per facet in one list; pooled, a regressing facet would
    be diluted by the healthy ones."""
    rows = [
        {**bucket(START + STEP * i, value), "facet": facet}
        for facet, value in (("eu", 0.2), ("us", 2.0))
        for i in range(10)
    ]
    nr.set_rows(SENT, rows)
    answer = await read(newrelic(nr.url), ProbeQuery(query=NRQL))
    assert isinstance(answer, Measurement), answer
    assert answer.status is MeasurementStatus.ERROR
    assert "several series (FACET)" in answer.detail
    nr.set_rows(SENT, [bucket(START, 0.2), bucket(START, 0.3)])  # the same bucket twice
    assert isinstance(await read(newrelic(nr.url), ProbeQuery(query=NRQL)), Measurement)


async def test_newrelic_range_refuses_a_query_with_its_own_time_clauses(nr: NewRelicFake) -> None:
    answer = await read(newrelic(nr.url), ProbeQuery(query=f"{NRQL} SINCE 1 hour ago"))
    assert isinstance(answer, Measurement) and "its own SINCE clause" in answer.detail
    assert not nr.requests
    quoted = "SELECT count(*) FROM Transaction WHERE name = 'since when'"
    nr.set_rows(quoted + SENT[len(NRQL) :], [])
    assert isinstance(await read(newrelic(nr.url), ProbeQuery(query=quoted)), Measurement)
    assert nr.requests  # a word inside a string literal is not a clause


async def test_newrelic_range_errors_and_bad_key_are_inconclusive(nr: NewRelicFake) -> None:
    nr.script(Reply(json=example("newrelic_error.json")))
    syntax = await read(newrelic(nr.url), ProbeQuery(query=NRQL))
    assert isinstance(syntax, Measurement) and "NRQL Syntax Error" in syntax.detail
    nr.script(nr.bad_api_key())
    bad_key = await read(newrelic(nr.url), ProbeQuery(query=NRQL))
    assert isinstance(bad_key, Measurement) and "check api_key_env" in bad_key.detail
    nr.set_rows(SENT, [{"count": 3}])
    untimed = await read(newrelic(nr.url), ProbeQuery(query=NRQL))
    assert isinstance(untimed, Measurement) and "not a TIMESERIES row" in untimed.detail


async def test_newrelic_range_echoed_key_is_scrubbed(nr: NewRelicFake) -> None:
    nr.script(
        Reply(status=401, json={"errors": [{"message": f"key {NR_KEY} is bad"}]}),
    )
    answer = await read(newrelic(nr.url), ProbeQuery(query=NRQL))
    assert isinstance(answer, Measurement)
    assert NR_KEY not in answer.detail and "***" in answer.detail
