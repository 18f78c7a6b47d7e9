"""The datadog probe against a local fake speaking Datadog's ``/api/v1/query`` format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gates.loader import check_gate_text
from probes.base import MeasurementStatus, ProbeContext, ProbeQuery
from probes.client import MissingSecret
from probes.datadog import DatadogConfig, DatadogProbe, read_query_response
from probes.registry import probe_type
from tests.fakes import Reply, example
from tests.fakes.datadog import API_KEY, APP_KEY, DatadogFake, series

QUERY = "avg:system.cpu.idle{*}"


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DD_API_KEY", API_KEY)
    monkeypatch.setenv("DD_APP_KEY", APP_KEY)


@pytest.fixture
async def fake() -> AsyncIterator[DatadogFake]:
    served = DatadogFake()
    async with served.serving():
        yield served


def make_probe(url: str, **overrides: Any) -> DatadogProbe:
    config = DatadogConfig.model_validate(
        {
            "type": "datadog",
            "url": url,
            "api_key_env": "DD_API_KEY",
            "app_key_env": "DD_APP_KEY",
            "timeout": 2.0,
            "retries": 0,
            **overrides,
        }
    )
    return DatadogProbe(config, name="dd")


@pytest.fixture
async def probe(keys: None, fake: DatadogFake) -> AsyncIterator[DatadogProbe]:
    built = make_probe(fake.url)
    yield built
    await built.aclose()


def q(**fields: Any) -> ProbeQuery:
    return ProbeQuery(**{"query": QUERY, **fields})


# -- the request -----------------------------------------------------------------------------


async def test_the_captured_series_gives_its_last_point_and_the_request_is_documented(
    probe: DatadogProbe, fake: DatadogFake
) -> None:
    captured = example("datadog_query.json")
    fake.set_series(QUERY, captured["series"])
    now = datetime.fromtimestamp(captured["to_date"] / 1000, UTC)  # when it was captured

    measurement = await probe.measure(q(), ProbeContext(now=now))

    assert measurement.status is MeasurementStatus.OK
    assert measurement.value == pytest.approx(94.35738808949789)
    assert "2021-06-16T12:40:00Z" in measurement.detail  # the last point's time
    [seen] = fake.requests
    assert (seen.method, seen.path) == ("GET", "/api/v1/query")
    headers = {name.lower(): value for name, value in seen.headers.items()}
    assert headers["dd-api-key"] == API_KEY
    assert headers["dd-application-key"] == APP_KEY
    assert seen.param("query") == QUERY
    assert seen.param("to") == str(int(now.timestamp()))
    assert seen.param("from") == str(int((now - timedelta(minutes=5)).timestamp()))
    assert "api_key" not in dict(seen.query)  # keys go in headers, never the URL


async def test_window_sets_from(probe: DatadogProbe, fake: DatadogFake, now: datetime) -> None:
    fake.set_points(QUERY, [1.0])
    await probe.measure(q(window=timedelta(hours=1)), ProbeContext(now=now))
    assert fake.requests[0].param("from") == str(int(now.timestamp()) - 3600)


def test_default_url_comes_from_the_site() -> None:
    base = {"type": "datadog", "api_key_env": "A", "app_key_env": "B"}
    assert DatadogConfig.model_validate(base).base_url() == "https://api.datadoghq.com"
    eu = DatadogConfig.model_validate({**base, "site": "datadoghq.eu"})
    assert eu.base_url() == "https://api.datadoghq.eu"
    proxied = DatadogConfig.model_validate({**base, "url": "http://proxy:8080/dd"})
    assert proxied.base_url() == "http://proxy:8080/dd"


def test_registered_under_its_entry_point() -> None:
    assert probe_type("datadog") is DatadogProbe


# -- values ------------------------------------------------------------------------------------


async def test_trailing_null_points_are_skipped(
    probe: DatadogProbe, fake: DatadogFake, now: datetime
) -> None:
    fake.set_points(QUERY, [5.0, 7.5, None])
    measurement = await probe.measure(q(), ProbeContext(now=now))
    assert (measurement.status, measurement.value) == (MeasurementStatus.OK, 7.5)


# -- the age of the last point -----------------------------------------------------------------


def _one_series(now: datetime, *, age_s: float, interval_s: int = 60) -> dict[str, Any]:
    end_ms = now.timestamp() * 1000 - age_s * 1000
    return {"status": "ok", "series": [series([3.0], end_ms=end_ms, interval_s=interval_s)]}


@pytest.mark.parametrize(
    ("interval_s", "age_s", "fresh"),
    [
        (60, 0, True),
        (60, 120, True),  # 2 x the interval
        (60, 121, False),
        (10, 60, True),  # never less than a minute
        (10, 61, False),
        (300, 600, True),
        (300, 601, False),
        (300, 86_400, False),  # a series that stopped reporting a day ago
    ],
)
def test_a_last_point_older_than_twice_the_interval_or_a_minute_is_stale(
    now: datetime, interval_s: int, age_s: float, fresh: bool
) -> None:
    body = _one_series(now, age_s=age_s, interval_s=interval_s)
    measurement = read_query_response(body, reduce=None, now=now)
    if fresh:
        assert (measurement.status, measurement.value) == (MeasurementStatus.OK, 3.0)
    else:
        assert measurement.status is MeasurementStatus.ERROR
        assert f"last point is {age_s:.0f} s old" in measurement.detail


def test_one_stale_series_makes_a_reduced_answer_inconclusive(now: datetime) -> None:
    end_ms = now.timestamp() * 1000
    body = {
        "status": "ok",
        "series": [
            series([0.0], scope="host:a", end_ms=end_ms - 30_000),
            series([9.0], scope="host:b", end_ms=end_ms - 3_600_000),
        ],
    }
    measurement = read_query_response(body, reduce="min", now=now)
    assert measurement.status is MeasurementStatus.ERROR
    assert "last point is 3600 s old (host:b" in measurement.detail


async def test_trailing_nulls_past_the_bound_leave_a_stale_point(
    probe: DatadogProbe, fake: DatadogFake, now: datetime
) -> None:
    fake.set_points(QUERY, [5.0, 7.5, None, None])  # reporting stopped 3 minutes ago
    measurement = await probe.measure(q(), ProbeContext(now=now))
    assert measurement.status is MeasurementStatus.ERROR
    assert "last point is 180 s old" in measurement.detail


async def test_all_null_points_is_no_data(
    probe: DatadogProbe, fake: DatadogFake, now: datetime
) -> None:
    fake.set_points(QUERY, [None, None])
    measurement = await probe.measure(q(), ProbeContext(now=now))
    assert measurement.status is MeasurementStatus.NO_DATA
    assert "null" in measurement.detail


async def test_no_series_is_no_data(probe: DatadogProbe, fake: DatadogFake, now: datetime) -> None:
    measurement = await probe.measure(q(query="avg:nothing{*}"), ProbeContext(now=now))
    assert measurement.status is MeasurementStatus.NO_DATA
    assert measurement.detail == "datadog: no series matched the query"


GROUPED = [
    series([1.0, 4.0], scope="host:a"),
    series([9.0, None], scope="host:b"),
    series([3.0, 2.0], scope="host:c"),
]


async def test_several_series_without_reduce_are_inconclusive_naming_the_count(
    probe: DatadogProbe, fake: DatadogFake, now: datetime
) -> None:
    fake.set_series(QUERY, GROUPED)
    measurement = await probe.measure(q(), ProbeContext(now=now))
    assert measurement.status is MeasurementStatus.ERROR
    assert "3 series (host:a, host:b, host:c)" in measurement.detail
    assert "reduce" in measurement.detail


@pytest.mark.parametrize(
    ("reduce", "expected"), [("min", 2.0), ("max", 9.0), ("sum", 15.0), ("avg", 5.0)]
)
async def test_reduce_combines_each_series_last_point(
    probe: DatadogProbe, fake: DatadogFake, now: datetime, reduce: str, expected: float
) -> None:
    fake.set_series(QUERY, GROUPED)
    measurement = await probe.measure(q(reduce=reduce), ProbeContext(now=now))
    assert (measurement.status, measurement.value) == (MeasurementStatus.OK, expected)


def test_reduce_last_takes_the_most_recent_point(now: datetime) -> None:
    end_ms = now.timestamp() * 1000
    body = {
        "status": "ok",
        "series": [series([1.0], end_ms=end_ms - 30_000), series([2.0], end_ms=end_ms - 60_000)],
    }
    assert read_query_response(body, reduce="last", now=now).value == 1.0


async def test_status_error_is_an_error_with_datadogs_message(
    probe: DatadogProbe, fake: DatadogFake, now: datetime
) -> None:
    fake.envelope_overrides = {"status": "error", "error": "Error parsing query: bad scope"}
    measurement = await probe.measure(q(), ProbeContext(now=now))
    assert measurement.status is MeasurementStatus.ERROR
    assert measurement.detail == "datadog: query failed: Error parsing query: bad scope"


@pytest.mark.parametrize(
    ("body", "cause"),
    [
        ([], "a JSON object was expected, got a list"),
        ({"status": "ok"}, "series is null, not a list"),
        ({"status": "ok", "series": [{"pointlist": "x"}]}, "pointlist is a string"),
        ({"status": "ok", "series": [{"pointlist": [[1.0]]}]}, "not [timestamp, value]"),
        ({"status": "ok", "series": [{"pointlist": [[1.0, "5"]]}]}, "non-numeric point"),
        ({"status": "ok", "series": [{"pointlist": [[1.0, float("nan")]]}]}, "not a finite"),
        ({"status": "ok", "series": [{"pointlist": [[1.0, float("inf")]]}]}, "not a finite"),
    ],
)
def test_bodies_of_the_wrong_shape_are_errors(body: Any, cause: str, now: datetime) -> None:
    measurement = read_query_response(body, reduce=None, now=now)
    assert measurement.status is MeasurementStatus.ERROR
    assert cause in measurement.detail


# -- auth and limits ---------------------------------------------------------------------------


async def test_wrong_key_is_forbidden_and_names_the_variables_not_the_secret(
    monkeypatch: pytest.MonkeyPatch, keys: None, fake: DatadogFake, now: datetime
) -> None:
    monkeypatch.setenv("DD_APP_KEY", "wrong-app-key-value")
    probe = make_probe(fake.url)
    try:
        measurement = await probe.measure(q(), ProbeContext(now=now))
    finally:
        await probe.aclose()
    assert measurement.status is MeasurementStatus.ERROR
    assert measurement.detail == (
        "datadog: HTTP 403 forbidden: check api_key_env DD_API_KEY"
        " and app_key_env DD_APP_KEY (Forbidden)"
    )
    assert "wrong-app-key-value" not in measurement.detail
    assert "wrong-app-key-value" not in repr(probe)
    assert len(fake.requests) == 1  # a 403 is not retried


def test_a_missing_key_variable_fails_the_build_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DD_API_KEY", API_KEY)
    monkeypatch.delenv("DD_APP_KEY", raising=False)
    with pytest.raises(MissingSecret, match="app_key_env: environment variable DD_APP_KEY"):
        make_probe("http://127.0.0.1:9")


async def test_rate_limit_is_retried_after_the_reset_header(
    keys: None, fake: DatadogFake, now: datetime
) -> None:
    probe = make_probe(fake.url, retries=1)
    fake.set_points(QUERY, [0.5])
    fake.script(fake.rate_limited(reset=0))
    try:
        measurement = await probe.measure(q(), ProbeContext(now=now))
    finally:
        await probe.aclose()
    assert (measurement.status, measurement.value) == (MeasurementStatus.OK, 0.5)
    assert len(fake.requests) == 2


# -- static checks -----------------------------------------------------------------------------


def test_check_query_wants_a_query_and_flags_keys_it_ignores() -> None:
    assert DatadogProbe.check_query(q()) == []
    assert [f for f, _ in DatadogProbe.check_query(ProbeQuery())] == ["query"]
    problems = DatadogProbe.check_query(q(metric="errors", path="a.b"))
    assert [f for f, _ in problems] == ["metric", "path"]


def test_a_gate_file_with_a_datadog_probe_validates_and_locates_problems() -> None:
    text = """\
probes:
  dd: {type: datadog, site: datadoghq.eu, api_key_env: GONOGO_PROBE_DD_API_KEY,
       app_key_env: GONOGO_PROBE_DD_APP_KEY}
criteria:
  - {name: errors, probe: dd, query: "sum:trace.http.request.errors{env:prod}", go: "< 5"}
  - {name: broken, probe: dd, metric: errors, go: "< 5"}
"""
    gate, problems = check_gate_text(text, name="g", source="g.yaml")
    assert gate is None
    assert sorted((p.line, p.message) for p in problems) == [
        (6, "a datadog criterion needs query: (e.g. avg:trace.http.errors{*})"),
        (6, "metric: is not used by the datadog probe type"),
    ]
    valid, none = check_gate_text(text.rsplit("  - {name: broken", 1)[0], name="g", source="g")
    assert none == []
    assert valid is not None
    assert isinstance(valid.probes["dd"], DatadogConfig)


async def test_an_error_body_echoing_a_key_is_scrubbed(
    probe: DatadogProbe, fake: DatadogFake, now: datetime
) -> None:
    fake.script(Reply(status=400, json={"errors": [f"unknown key {API_KEY}"]}))
    measurement = await probe.measure(q(), ProbeContext(now=now))
    assert measurement.detail == "datadog: HTTP 400 bad request (unknown key ***)"
