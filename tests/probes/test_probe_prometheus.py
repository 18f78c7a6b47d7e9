"""The prometheus probe against a fake speaking the documented /api/v1/query format."""

from __future__ import annotations

import base64
import math
from collections.abc import AsyncIterator
from datetime import datetime

import pytest

from probes.base import MeasurementStatus, ProbeContext, ProbeQuery
from probes.client import MissingSecret
from probes.prometheus import PrometheusConfig, PrometheusProbe
from probes.registry import probe_type
from tests.fakes import Reply, example
from tests.fakes.prometheus import PrometheusFake, failed, scalar, vector

Q = "sum(rate(http_requests_total[5m]))"


@pytest.fixture
async def prom() -> AsyncIterator[PrometheusFake]:
    fake = PrometheusFake(prefix="/prom")
    async with fake.serving():
        yield fake


def make_probe(url: str, **options: object) -> PrometheusProbe:
    config = PrometheusConfig.model_validate(
        {"type": "prometheus", "url": url, "timeout": 2, "retries": 1, **options}
    )
    return PrometheusProbe(config, name="prom")


async def measure(
    probe: PrometheusProbe, now: datetime, query: str = Q, reduce: str | None = None
) -> tuple[MeasurementStatus, float | None, str]:
    try:
        result = await probe.measure(
            ProbeQuery.model_validate({"query": query, "reduce": reduce}),
            ProbeContext(now=now),
        )
    finally:
        await probe.aclose()
    return result.status, result.value, result.detail


def test_registered_under_its_entry_point() -> None:
    assert probe_type("prometheus") is PrometheusProbe


async def test_one_series_gives_its_value_and_sends_the_sample_time(
    prom: PrometheusFake, now: datetime
) -> None:
    prom.results[Q] = vector(0.0125)
    status, value, _ = await measure(make_probe(prom.url + "/prom"), now)
    assert (status, value) == (MeasurementStatus.OK, 0.0125)
    seen = prom.requests[0]
    assert seen.path == "/prom/api/v1/query"
    assert seen.param("query") == Q
    assert float(seen.param("time") or 0) == now.timestamp()


async def test_scalar_result(prom: PrometheusFake, now: datetime) -> None:
    prom.results["scalar(42)"] = scalar(42)
    assert await measure(make_probe(prom.url + "/prom"), now, "scalar(42)") == (
        MeasurementStatus.OK,
        42.0,
        "",
    )


async def test_captured_examples(prom: PrometheusFake, now: datetime) -> None:
    """The vendor's own bodies, served verbatim."""
    cases = {
        "prometheus_query_scalar.json": (MeasurementStatus.OK, 42.0),
        "prometheus_query_empty_vector.json": (MeasurementStatus.NO_DATA, None),
        "prometheus_query_vector.json": (MeasurementStatus.ERROR, None),  # two series
        "prometheus_query_range_matrix.json": (MeasurementStatus.ERROR, None),
        "prometheus_query_string.json": (MeasurementStatus.ERROR, None),
    }
    for name, expected in cases.items():
        prom.script(Reply(json=example(name)))
        status, value, detail = await measure(make_probe(prom.url + "/prom"), now)
        assert (status, value) == expected, (name, detail)


async def test_several_series_need_reduce(prom: PrometheusFake, now: datetime) -> None:
    prom.results[Q] = vector(0.5, 0.25, 0.75)
    status, value, detail = await measure(make_probe(prom.url + "/prom"), now)
    assert (status, value) == (MeasurementStatus.ERROR, None)
    assert detail == "prometheus: 3 series returned; set reduce: min|max|sum|avg"


@pytest.mark.parametrize(
    ("reduce", "expected"), [("min", 0.25), ("max", 0.75), ("sum", 1.5), ("avg", 0.5)]
)
async def test_reduce_combines_series(
    prom: PrometheusFake, now: datetime, reduce: str, expected: float
) -> None:
    prom.results[Q] = vector(0.5, 0.25, 0.75)
    status, value, detail = await measure(make_probe(prom.url + "/prom"), now, reduce=reduce)
    assert (status, value) == (MeasurementStatus.OK, expected)
    assert detail == f"{reduce} of 3 series"


async def test_empty_vector_is_no_data(prom: PrometheusFake, now: datetime) -> None:
    prom.results[Q] = vector()
    assert await measure(make_probe(prom.url + "/prom"), now) == (
        MeasurementStatus.NO_DATA,
        None,
        "prometheus: query returned no series",
    )


@pytest.mark.parametrize(("value", "spelled"), [(math.nan, "NaN"), (math.inf, "+Inf")])
async def test_nan_and_inf_are_errors(
    prom: PrometheusFake, now: datetime, value: float, spelled: str
) -> None:
    prom.results[Q] = vector(value)
    status, _, detail = await measure(make_probe(prom.url + "/prom"), now)
    assert status is MeasurementStatus.ERROR
    assert detail == f"prometheus: query returned {spelled}, not a number"


async def test_nan_among_reduced_series_is_an_error(prom: PrometheusFake, now: datetime) -> None:
    prom.results[Q] = vector(0.5, math.nan)
    status, _, _ = await measure(make_probe(prom.url + "/prom"), now, reduce="max")
    assert status is MeasurementStatus.ERROR


@pytest.mark.parametrize(
    ("error_type", "message", "http"),
    [
        ("bad_data", 'invalid parameter "query": 1:5: parse error: unclosed left parenthesis', 400),
        ("execution", "multiple matches for labels: many-to-one matching must be explicit", 422),
        ("timeout", "query timed out in expression evaluation", 503),
    ],
)
async def test_error_envelopes_say_type_and_message(
    prom: PrometheusFake, now: datetime, error_type: str, message: str, http: int
) -> None:
    prom.results[Q] = failed(error_type, message)
    status, _, detail = await measure(make_probe(prom.url + "/prom"), now)
    assert status is MeasurementStatus.ERROR
    assert detail.startswith(f"prometheus: {error_type}: {message} (HTTP {http}")
    # 503 is retried (once here), 4xx never.
    assert len(prom.requests) == (2 if http == 503 else 1)


async def test_error_status_with_http_200_is_still_an_error(
    prom: PrometheusFake, now: datetime
) -> None:
    prom.script(Reply(json=example("prometheus_query_error_internal.json")))
    status, _, detail = await measure(make_probe(prom.url + "/prom"), now)
    assert (status, detail) == (MeasurementStatus.ERROR, "prometheus: internal: TSDB not ready")


async def test_bearer_token_from_env(
    prom: PrometheusFake, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GONOGO_TEST_PROM_TOKEN", "tok-123")
    prom.require_authorization("Bearer tok-123")
    prom.results[Q] = vector(2)
    status, value, _ = await measure(
        make_probe(prom.url + "/prom", token_env="GONOGO_TEST_PROM_TOKEN"), now
    )
    assert (status, value) == (MeasurementStatus.OK, 2.0)


async def test_wrong_token_names_the_variable_not_the_value(
    prom: PrometheusFake, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GONOGO_TEST_PROM_TOKEN", "wrong-secret")
    prom.require_authorization("Bearer right")
    status, _, detail = await measure(
        make_probe(prom.url + "/prom", token_env="GONOGO_TEST_PROM_TOKEN"), now
    )
    assert status is MeasurementStatus.ERROR
    assert detail == "prometheus: HTTP 401 unauthorized; check token_env GONOGO_TEST_PROM_TOKEN"
    assert "wrong-secret" not in detail
    assert len(prom.requests) == 1


async def test_basic_auth(
    prom: PrometheusFake, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GONOGO_TEST_PROM_PASSWORD", "pw")
    prom.require_authorization("Basic " + base64.b64encode(b"grafana:pw").decode())
    prom.results[Q] = vector(3)
    probe = make_probe(
        prom.url + "/prom", username="grafana", password_env="GONOGO_TEST_PROM_PASSWORD"
    )
    assert (await measure(probe, now))[:2] == (MeasurementStatus.OK, 3.0)


def test_a_missing_secret_variable_fails_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GONOGO_TEST_ABSENT", raising=False)
    with pytest.raises(MissingSecret, match="token_env: environment variable GONOGO_TEST_ABSENT"):
        make_probe("http://127.0.0.1:9", token_env="GONOGO_TEST_ABSENT")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"token_env": "A", "username": "u", "password_env": "B"}, "either token_env"),
        ({"username": "u"}, "needs both username and password_env"),
        ({"url": "prometheus:9090"}, "String should match pattern"),
        ({"token_env": "not a name"}, "String should match pattern"),
    ],
)
def test_config_problems(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PrometheusConfig.model_validate({"type": "prometheus", "url": "http://p:9090", **options})


def test_check_query() -> None:
    assert PrometheusProbe.check_query(ProbeQuery(query="up")) == []
    assert PrometheusProbe.check_query(ProbeQuery()) == [
        ("query", "a prometheus criterion needs query: (a PromQL expression)")
    ]
    assert [f for f, _ in PrometheusProbe.check_query(ProbeQuery(query="up", reduce="last"))] == [
        "reduce"
    ]
    assert [f for f, _ in PrometheusProbe.check_query(ProbeQuery(query="up", metric="x"))] == [
        "metric"
    ]


# -- answers of the wrong kind -------------------------------------------------------------------


def _vector_of(value: object, *, at: object = 1767436620) -> dict[str, object]:
    return {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [at, value]}]},
    }


@pytest.mark.parametrize(
    ("value", "shape"),
    [
        (True, "a boolean"),
        (False, "a boolean"),
        (0.5, "a number (0.5), not a string"),
        (1, "a number (1), not a string"),
        (None, "null"),
        ({"v": "1"}, "an object"),
        (["1"], "a list"),
        ("1_000", "'1_000' is not a number as Prometheus writes one"),
        ("0x10", "'0x10'"),
        (" 1", "' 1'"),
        ("1 ", "'1 '"),
        ("", "''"),
        ("infinity", "'infinity'"),
        ("Infinity", "'Infinity'"),
        ("inf", "'inf'"),
        ("nan", "'nan'"),
        ("1e", "'1e'"),
        ("١", "'١'"),  # an Arabic-Indic digit, which float() reads as 1
    ],
)
async def test_a_sample_value_of_the_wrong_kind_is_an_error_naming_its_shape(
    prom: PrometheusFake, now: datetime, value: object, shape: str
) -> None:
    prom.script(Reply(json=_vector_of(value)))
    status, number, detail = await measure(make_probe(prom.url + "/prom"), now)
    assert (status, number) == (MeasurementStatus.ERROR, None)
    assert shape in detail, detail


@pytest.mark.parametrize(
    ("at", "shape"), [("1767436620", "a string"), (True, "a boolean"), (None, "null")]
)
async def test_a_sample_time_that_is_not_a_number_is_an_error(
    prom: PrometheusFake, now: datetime, at: object, shape: str
) -> None:
    prom.script(Reply(json=_vector_of("1", at=at)))
    status, _, detail = await measure(make_probe(prom.url + "/prom"), now)
    assert status is MeasurementStatus.ERROR
    assert f"sample time is {shape}" in detail


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", 1.0), ("-0.25", -0.25), ("+3", 3.0), (".5", 0.5), ("1e+06", 1e6), ("2.5E-3", 0.0025)],
)
async def test_decimal_and_exponent_spellings_are_numbers(
    prom: PrometheusFake, now: datetime, text: str, expected: float
) -> None:
    prom.script(Reply(json=_vector_of(text)))
    status, value, _ = await measure(make_probe(prom.url + "/prom"), now)
    assert (status, value) == (MeasurementStatus.OK, expected)


@pytest.mark.parametrize("text", ["NaN", "+Inf", "-Inf"])
async def test_the_documented_non_finite_spellings_are_read_and_refused(
    prom: PrometheusFake, now: datetime, text: str
) -> None:
    prom.script(Reply(json=_vector_of(text)))
    status, _, detail = await measure(make_probe(prom.url + "/prom"), now)
    assert status is MeasurementStatus.ERROR
    assert f"query returned {text}, not a number" in detail


# -- warnings and infos ---------------------------------------------------------------------------


def _warned(**notes: object) -> dict[str, object]:
    return {**_vector_of("0.001"), **notes}


async def test_warnings_make_an_answer_inconclusive_and_are_quoted(
    prom: PrometheusFake, now: datetime
) -> None:
    prom.script(Reply(json=_warned(warnings=["remote read: store eu-2 unavailable"])))
    status, value, detail = await measure(make_probe(prom.url + "/prom"), now)
    assert (status, value) == (MeasurementStatus.ERROR, None)
    assert "partial answer" in detail
    assert "remote read: store eu-2 unavailable" in detail
    assert "accept_warnings: true" in detail


async def test_accept_warnings_judges_the_value_and_keeps_the_warnings_in_the_detail(
    prom: PrometheusFake, now: datetime
) -> None:
    prom.script(Reply(json=_warned(warnings=["shard 3 timed out"])))
    status, value, detail = await measure(make_probe(prom.url + "/prom", accept_warnings=True), now)
    assert (status, value) == (MeasurementStatus.OK, 0.001)
    assert "warnings: shard 3 timed out" in detail


async def test_infos_are_quoted_and_change_nothing(prom: PrometheusFake, now: datetime) -> None:
    prom.script(Reply(json=_warned(infos=['metric might not be a counter: "x"'])))
    status, value, detail = await measure(make_probe(prom.url + "/prom"), now)
    assert (status, value) == (MeasurementStatus.OK, 0.001)
    assert 'infos: metric might not be a counter: "x"' in detail


async def test_warnings_are_added_to_an_error_answer_too(
    prom: PrometheusFake, now: datetime
) -> None:
    body = {"status": "success", "data": {"resultType": "vector", "result": []}}
    prom.script(Reply(json={**body, "warnings": ["store eu-2 unavailable"]}))
    status, _, detail = await measure(make_probe(prom.url + "/prom"), now)
    assert status is MeasurementStatus.NO_DATA
    assert "store eu-2 unavailable" in detail


def test_accept_warnings_is_a_strict_boolean() -> None:
    with pytest.raises(ValueError, match="accept_warnings"):
        PrometheusConfig.model_validate(
            {"type": "prometheus", "url": "http://p:9090", "accept_warnings": "yes"}
        )
