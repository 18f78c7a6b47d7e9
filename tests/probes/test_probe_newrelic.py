"""The newrelic probe against a local fake speaking NerdGraph's NRQL format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from gates.loader import check_gate_text
from probes.base import MeasurementStatus, ProbeContext, ProbeQuery
from probes.client import MissingSecret
from probes.newrelic import NewRelicConfig, NewRelicProbe, read_nrql_response
from probes.registry import probe_type
from tests.fakes import Reply, example
from tests.fakes.newrelic import ACCOUNT_ID, API_KEY, NewRelicFake

NRQL = "SELECT count(*) FROM Transaction SINCE 1 HOUR AGO"


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEW_RELIC_API_KEY", API_KEY)


@pytest.fixture
async def fake() -> AsyncIterator[NewRelicFake]:
    served = NewRelicFake()
    async with served.serving():
        yield served


def make_probe(url: str, **overrides: Any) -> NewRelicProbe:
    config = NewRelicConfig.model_validate(
        {
            "type": "newrelic",
            "url": url,
            "account_id": ACCOUNT_ID,
            "api_key_env": "NEW_RELIC_API_KEY",
            "timeout": 2.0,
            "retries": 0,
            **overrides,
        }
    )
    return NewRelicProbe(config, name="nr")


@pytest.fixture
async def probe(api_key: None, fake: NewRelicFake) -> AsyncIterator[NewRelicProbe]:
    built = make_probe(fake.url)
    yield built
    await built.aclose()


def q(**fields: Any) -> ProbeQuery:
    return ProbeQuery(**{"query": NRQL, **fields})


async def test_the_tutorial_result_gives_its_count_and_nrql_travels_as_a_variable(
    probe: NewRelicProbe, fake: NewRelicFake, now: datetime
) -> None:
    rows = example("newrelic_nrql.json")["data"]["actor"]["account"]["nrql"]["results"]
    fake.set_rows(NRQL, rows)

    measurement = await probe.measure(q(), ProbeContext(now=now))

    assert (measurement.status, measurement.value) == (MeasurementStatus.OK, 1000.0)
    assert measurement.detail == "newrelic: count"
    [seen] = fake.requests
    assert (seen.method, seen.path) == ("POST", "/graphql")
    assert {k.lower(): v for k, v in seen.headers.items()}["api-key"] == API_KEY
    body = json.loads(seen.body)
    assert NRQL not in body["query"]  # never spliced into the GraphQL document
    assert body["variables"] == {"accountId": ACCOUNT_ID, "nrql": NRQL}


async def test_nrql_quotes_cannot_break_the_document(
    probe: NewRelicProbe, fake: NewRelicFake, now: datetime
) -> None:
    nrql = "SELECT count(*) FROM Transaction WHERE name = 'a\"b' SINCE 5 minutes ago"
    fake.set_rows(nrql, [{"count": 3}])
    measurement = await probe.measure(q(query=nrql), ProbeContext(now=now))
    assert measurement.value == 3.0
    assert fake.sent_variables()["nrql"] == nrql


def test_region_chooses_the_endpoint() -> None:
    base = {"type": "newrelic", "account_id": 1, "api_key_env": "K"}
    assert NewRelicConfig.model_validate(base).base_url() == "https://api.newrelic.com"
    eu = NewRelicConfig.model_validate({**base, "region": "eu"})
    assert eu.base_url() == "https://api.eu.newrelic.com"


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="region"):
        NewRelicConfig.model_validate(
            {"type": "newrelic", "account_id": 1, "api_key_env": "K", "region": "jp"}
        )
    with pytest.raises(ValueError, match="account_id"):
        NewRelicConfig.model_validate({"type": "newrelic", "api_key_env": "K"})


def test_registered_under_its_entry_point() -> None:
    assert probe_type("newrelic") is NewRelicProbe


@pytest.mark.parametrize(
    ("row", "field", "expected"),
    [
        ({"average.duration": 0.25}, None, 0.25),
        ({"percentile.duration": {"95": 1.2}}, None, 1.2),
        ({"percentile.duration": {"50": 0.3, "95": 1.2}}, "percentile.duration.95", 1.2),
        ({"count": 10, "average.duration": 0.4}, "average.duration", 0.4),
        ({"facet": "web", "count": 7}, None, 7.0),
        ({"beginTimeSeconds": 1, "endTimeSeconds": 2, "count": 5}, None, 5.0),
    ],
)
def test_the_value_is_the_first_numeric_field_or_field(
    row: dict[str, Any], field: str | None, expected: float, now: datetime
) -> None:
    body = {"data": {"actor": {"account": {"nrql": {"results": [row]}}}}}
    measurement = read_nrql_response(body, field=field, reduce=None, now=now)
    assert (measurement.status, measurement.value) == (MeasurementStatus.OK, expected)


async def test_no_rows_is_no_data(probe: NewRelicProbe, now: datetime) -> None:
    measurement = await probe.measure(q(query="SELECT count(*) FROM Nothing"), ProbeContext(now))
    assert measurement.status is MeasurementStatus.NO_DATA
    assert "no rows" in measurement.detail


async def test_a_null_aggregate_is_no_data(
    probe: NewRelicProbe, fake: NewRelicFake, now: datetime
) -> None:
    fake.set_rows(NRQL, [{"average.duration": None}])
    measurement = await probe.measure(q(), ProbeContext(now=now))
    assert measurement.status is MeasurementStatus.NO_DATA
    assert measurement.detail == "newrelic: average.duration is null"


async def test_several_rows_need_reduce(
    probe: NewRelicProbe, fake: NewRelicFake, now: datetime
) -> None:
    fake.set_rows(NRQL, [{"facet": "a", "count": 1}, {"facet": "b", "count": 4}])
    unreduced = await probe.measure(q(), ProbeContext(now=now))
    assert unreduced.status is MeasurementStatus.ERROR
    assert "2 result rows" in unreduced.detail
    reduced = await probe.measure(q(reduce="max"), ProbeContext(now=now))
    assert reduced.value == 4.0
    last = await probe.measure(q(reduce="last"), ProbeContext(now=now))
    assert last.value == 4.0


async def test_nrql_syntax_error_comes_back_with_its_message(
    probe: NewRelicProbe, now: datetime
) -> None:
    measurement = await probe.measure(q(query="SELEC * FORM Transaction"), ProbeContext(now))
    assert measurement.status is MeasurementStatus.ERROR
    assert measurement.detail == (
        "newrelic: NerdGraph error: NRQL Syntax Error: Error at line 1 position 8,"
        " unexpected 'FORM' (INVALID_INPUT)"
    )


async def test_too_many_requests_with_http_200_is_an_error(
    probe: NewRelicProbe, fake: NewRelicFake, now: datetime
) -> None:
    fake.script(fake.too_many_requests())
    measurement = await probe.measure(q(), ProbeContext(now=now))
    assert measurement.status is MeasurementStatus.ERROR
    assert "TOO_MANY_REQUESTS" in measurement.detail


async def test_a_bad_key_names_the_variable_never_the_value(
    monkeypatch: pytest.MonkeyPatch, fake: NewRelicFake, now: datetime
) -> None:
    monkeypatch.setenv("NEW_RELIC_API_KEY", "NRAK-WRONG-SECRET-VALUE")
    probe = make_probe(fake.url, retries=2)
    try:
        measurement = await probe.measure(q(), ProbeContext(now=now))
    finally:
        await probe.aclose()
    assert measurement.status is MeasurementStatus.ERROR
    assert measurement.detail == (
        "newrelic: HTTP 401 unauthorized: Bad API Key or no API Key provided (BAD_API_KEY)"
        " — check api_key_env NEW_RELIC_API_KEY"
    )
    assert "NRAK-WRONG-SECRET-VALUE" not in measurement.detail + repr(probe)
    assert len(fake.requests) == 1


def test_a_missing_key_variable_fails_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEW_RELIC_API_KEY", raising=False)
    with pytest.raises(MissingSecret, match="NEW_RELIC_API_KEY"):
        make_probe("http://127.0.0.1:9")


async def test_the_read_is_retried_after_a_server_error(
    api_key: None, fake: NewRelicFake, now: datetime
) -> None:
    probe = make_probe(fake.url, retries=1)
    fake.set_rows(NRQL, [{"count": 2}])
    fake.script(Reply(status=503, body=b"busy"))
    try:
        measurement = await probe.measure(q(), ProbeContext(now=now))
    finally:
        await probe.aclose()
    assert measurement.value == 2.0
    assert len(fake.requests) == 2


def test_check_query() -> None:
    assert NewRelicProbe.check_query(q(field="count")) == []
    assert [f for f, _ in NewRelicProbe.check_query(ProbeQuery())] == ["query"]
    assert [f for f, _ in NewRelicProbe.check_query(q(metric="x"))] == ["metric"]


def test_a_gate_file_with_a_newrelic_probe_validates_and_locates_problems() -> None:
    text = """\
probes:
  nr: {type: newrelic, region: eu, account_id: 1234567, api_key_env: GONOGO_PROBE_NEW_RELIC_API_KEY}
criteria:
  - name: p95
    probe: nr
    query: "SELECT percentile(duration, 95) FROM Transaction SINCE 5 minutes ago"
    go: "< 2s"
  - {name: windowed, probe: nr, query: "SELECT count(*) FROM Transaction", window: 5m, go: "> 0"}
"""
    gate, problems = check_gate_text(text, name="g", source="g.yaml")
    assert gate is None
    assert [(p.line, p.message) for p in problems] == [
        (8, "window: is not used by newrelic; say SINCE in the NRQL")
    ]
    bad_account = text.replace("account_id: 1234567", "account_id: abc")
    _, account_problems = check_gate_text(bad_account, name="g", source="g.yaml")
    assert any(p.line == 2 and "account_id" in str(p) for p in account_problems)
