"""The fault table for the datadog, newrelic and sentry probes.

Every row scripts a fault on the vendor's fake (or points the probe at a refused port or
an unresolvable name) and runs one sample through ``gates.sampler.take_sample`` and
``gates.engine.decide``: the criterion must be inconclusive with a reason naming the
cause, the decision ``no_go``, and no secret value anywhere in the verdict.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from gates.engine import CriterionOutcome, Decision
from tests.fakes import Reply, ScriptedFake, example
from tests.fakes.datadog import DatadogFake, rate_limit_headers, series
from tests.fakes.faults import (
    FAULT_RETRIES,
    FAULT_TOKEN_ENV,
    FAULT_TOKEN_VALUE,
    Fault,
    assert_fails_closed,
    common_faults,
    judge_fault,
    retried,
    shape_fault,
)
from tests.fakes.newrelic import NewRelicFake
from tests.fakes.sentry import SentryFake
from tests.fakes.sentry import rate_limit_headers as sentry_rate_limit_headers

APP_KEY_ENV = "GONOGO_FAULT_APP_KEY"
APP_KEY_VALUE = "fault-app-key-s3cret-value"
# The vendor rows replace these generic ones: each vendor has its own auth and limits.
_GENERIC_ONLY = {"http-401", "http-403", "http-429-retry-after"}


@dataclass(frozen=True)
class Row:
    fault: Fault
    criterion: dict[str, Any] = field(default_factory=dict)


def _common() -> list[Fault]:
    return [f for f in common_faults() if f.id not in _GENERIC_ONLY]


def _raw(fault_id: str, text: str, expect: str) -> Fault:
    """A 200 answer whose body is ``text`` as it is (NaN and Infinity literals included)."""
    return Fault(fault_id, expect, (Reply(body=text.encode(), content_type="application/json"),))


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAULT_TOKEN_ENV, FAULT_TOKEN_VALUE)
    monkeypatch.setenv(APP_KEY_ENV, APP_KEY_VALUE)


def _ids(rows: list[Row]) -> list[str]:
    return [row.fault.id for row in rows]


async def _serve(fake: ScriptedFake) -> AsyncIterator[ScriptedFake]:
    async with fake.serving():
        yield fake


def _assert_row(run: Any, row: Row) -> None:
    assert_fails_closed(run, row.fault)
    shown = json.dumps(run.verdict.as_dict())
    assert APP_KEY_VALUE not in shown, row.fault.id


# -- datadog -----------------------------------------------------------------------------------

DD_CRITERION = {"query": "avg:trace.http.request.errors{service:portal}", "go": "< 1"}
DD_AUTH_HINT = f"check api_key_env {FAULT_TOKEN_ENV} and app_key_env {APP_KEY_ENV}"


def _dd_body(items: list[dict[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = example("datadog_query_empty.json")
    body["series"] = items
    return body


DATADOG_ROWS = [
    *(Row(f) for f in _common()),
    Row(
        Fault(
            "http-429-ratelimit-reset",
            "rate limited (HTTP 429) after 2 tries (Rate limit of 600 requests",
            retried(
                Reply(
                    status=429,
                    json=example("datadog_error_429.json"),
                    headers=rate_limit_headers(reset=0),
                )
            ),
            min_requests=1 + FAULT_RETRIES,
        )
    ),
    Row(
        Fault(
            "http-429-reset-beyond-budget",
            "rate limited (HTTP 429); server asked to wait 30s, beyond the budget",
            (
                Reply(
                    status=429,
                    json=example("datadog_error_429.json"),
                    headers=rate_limit_headers(reset=30),
                ),
            ),
        )
    ),
    Row(
        Fault(
            "http-403-forbidden",
            f"HTTP 403 forbidden: {DD_AUTH_HINT} (Forbidden)",
            (Reply(status=403, json=example("datadog_error.json")),),
        )
    ),
    Row(
        Fault(
            "http-400-bad-query",
            "HTTP 400 bad request (Bad Request)",
            (Reply(status=400, json=example("datadog_error_400.json")),),
        )
    ),
    Row(shape_fault("wrong-shape-object", {"data": []}, "unexpected response: no status")),
    Row(shape_fault("wrong-shape-list", [1, 2], "a JSON object was expected, got a list")),
    Row(
        shape_fault(
            "wrong-shape-points", _dd_body([{"pointlist": [[1, "x"]]}]), "non-numeric point"
        )
    ),
    Row(
        shape_fault(
            "status-error",
            {"status": "error", "error": "Error parsing query"},
            "query failed: Error parsing query",
        )
    ),
    Row(shape_fault("empty-result", _dd_body([]), "no data: datadog: no series matched")),
    Row(shape_fault("null-points", _dd_body([series([None, None])]), "every point")),
    Row(
        _raw(
            "nan-point",
            '{"status":"ok","series":[{"scope":"*","pointlist":[[1000.0, NaN]]}]}',
            "value is nan, not a finite number",
        )
    ),
    Row(
        _raw(
            "inf-point",
            '{"status":"ok","series":[{"scope":"*","pointlist":[[1000.0, Infinity]]}]}',
            "value is inf, not a finite number",
        )
    ),
    Row(
        shape_fault(
            "several-series-without-reduce",
            _dd_body([series([1.0], scope="host:a"), series([2.0], scope="host:b")]),
            "2 series (host:a, host:b) where one was expected",
        )
    ),
]


@pytest.fixture
async def datadog() -> AsyncIterator[ScriptedFake]:
    async for fake in _serve(DatadogFake(api_key=FAULT_TOKEN_VALUE, app_key=APP_KEY_VALUE)):
        yield fake


def _datadog_config(url: str) -> dict[str, Any]:
    return {
        "type": "datadog",
        "url": url,
        "api_key_env": FAULT_TOKEN_ENV,
        "app_key_env": APP_KEY_ENV,
    }


@pytest.mark.parametrize("row", DATADOG_ROWS, ids=_ids(DATADOG_ROWS))
async def test_datadog_faults_fail_closed(row: Row, datadog: ScriptedFake, now: datetime) -> None:
    run = await judge_fault(
        row.fault,
        datadog,
        probe_config=_datadog_config,
        criterion={**DD_CRITERION, **row.criterion},
        now=now,
    )
    _assert_row(run, row)


# -- newrelic ----------------------------------------------------------------------------------

NR_CRITERION = {"query": "SELECT percentile(duration, 95) FROM Transaction", "go": "< 2s"}


def _nr_body(results: Any) -> dict[str, Any]:
    return {"data": {"actor": {"account": {"nrql": {"results": results}}}}}


NEWRELIC_ROWS = [
    *(Row(f) for f in _common()),
    Row(
        Fault(
            "http-429-concurrency",
            "rate limited (HTTP 429) after 2 tries",
            retried(Reply(status=429, body=b"")),
            min_requests=1 + FAULT_RETRIES,
        )
    ),
    Row(
        Fault(
            "too-many-requests-in-200",
            "NerdGraph error: some error (TOO_MANY_REQUESTS)",
            (Reply(json=example("newrelic_error_too_many_requests.json")),),
        )
    ),
    Row(
        Fault(
            "http-401-bad-api-key",
            "HTTP 401 unauthorized: Bad API Key or no API Key provided (BAD_API_KEY)"
            f" — check api_key_env {FAULT_TOKEN_ENV}",
            (Reply(status=401, json=example("newrelic_error_bad_api_key.json")),),
        )
    ),
    Row(
        Fault(
            "nrql-syntax-error",
            "NRQL Syntax Error: Error at line 1 position 8",
            (Reply(json=example("newrelic_error.json")),),
        )
    ),
    Row(
        shape_fault(
            "wrong-shape-no-results",
            {"data": {"actor": None}},
            "unexpected response: no data.actor.account.nrql.results",
        )
    ),
    Row(shape_fault("wrong-shape-results", _nr_body({"count": 1}), "results is an object")),
    Row(shape_fault("wrong-shape-row", _nr_body([{"name": "x"}]), "no numeric field")),
    Row(shape_fault("empty-result", _nr_body([]), "no data: newrelic: the NRQL query returned")),
    Row(shape_fault("null-value", _nr_body([{"percentile.duration": {"95": None}}]), "is null")),
    Row(
        _raw(
            "nan-value",
            '{"data":{"actor":{"account":{"nrql":{"results":[{"count": NaN}]}}}}}',
            "count is nan, not a finite number",
        )
    ),
    Row(
        _raw(
            "inf-value",
            '{"data":{"actor":{"account":{"nrql":{"results":[{"count": -Infinity}]}}}}}',
            "count is -inf, not a finite number",
        )
    ),
    Row(
        shape_fault(
            "several-rows-without-reduce",
            _nr_body([{"facet": "a", "count": 1}, {"facet": "b", "count": 2}]),
            "2 result rows where one was expected",
        )
    ),
]


@pytest.fixture
async def newrelic() -> AsyncIterator[ScriptedFake]:
    async for fake in _serve(NewRelicFake(api_key=FAULT_TOKEN_VALUE)):
        yield fake


def _newrelic_config(url: str) -> dict[str, Any]:
    return {"type": "newrelic", "url": url, "account_id": 1, "api_key_env": FAULT_TOKEN_ENV}


@pytest.mark.parametrize("row", NEWRELIC_ROWS, ids=_ids(NEWRELIC_ROWS))
async def test_newrelic_faults_fail_closed(row: Row, newrelic: ScriptedFake, now: datetime) -> None:
    run = await judge_fault(
        row.fault,
        newrelic,
        probe_config=_newrelic_config,
        criterion={**NR_CRITERION, **row.criterion},
        now=now,
    )
    _assert_row(run, row)


# -- sentry ------------------------------------------------------------------------------------

NEW_ISSUES = {"metric": "new_issues", "params": {"query": "level:fatal"}, "go": "== 0"}
CRASH_FREE = {"metric": "crash_free_rate", "params": {"release": "1.0"}, "go": "> 99%"}
EVENTS = {"metric": "events", "go": "< 10"}


def _sessions(groups: Any) -> dict[str, Any]:
    body: dict[str, Any] = example("sentry_sessions_empty.json")
    body["groups"] = groups
    return body


SENTRY_ROWS = [
    *(Row(f, NEW_ISSUES) for f in _common()),
    Row(
        Fault(
            "http-429-sentry-headers",
            "rate limited (HTTP 429) after 2 tries: You are attempting to use this endpoint",
            retried(
                Reply(
                    status=429,
                    json=example("sentry_error_429.json"),
                    content_type="text/html; charset=utf-8",
                    headers=sentry_rate_limit_headers(remaining=0),
                )
            ),
            min_requests=1 + FAULT_RETRIES,
        ),
        NEW_ISSUES,
    ),
    Row(
        Fault(
            "http-401-invalid-token",
            f"HTTP 401 unauthorized: Invalid token — check token_env {FAULT_TOKEN_ENV}",
            (
                Reply(
                    status=401,
                    json=example("sentry_error_401.json"),
                    headers={"WWW-Authenticate": 'xBasic realm="api"'},
                ),
            ),
        ),
        NEW_ISSUES,
    ),
    Row(
        Fault(
            "http-403-permission",
            "You do not have permission to perform this action."
            f" — check token_env {FAULT_TOKEN_ENV}",
            (Reply(status=403, json=example("sentry_error_403.json")),),
        ),
        EVENTS,
    ),
    Row(
        Fault(
            "http-400-bad-search",
            "HTTP 400 bad request: Invalid search filter: foo",
            (Reply(status=400, json=example("sentry_error_400.json")),),
        ),
        NEW_ISSUES,
    ),
    Row(
        shape_fault("wrong-shape-issues", {"detail": "x"}, "the issue list is an object"),
        NEW_ISSUES,
    ),
    Row(shape_fault("wrong-shape-issue", [1], "issue [0] is a number"), NEW_ISSUES),
    Row(shape_fault("wrong-shape-stats", {"groups": {}}, "groups is an object"), EVENTS),
    Row(
        shape_fault("wrong-shape-totals", _sessions([{"by": {}}]), "groups[0] has no totals"),
        CRASH_FREE,
    ),
    Row(
        shape_fault("empty-result", _sessions([]), "no data: sentry: no sessions for release 1.0"),
        CRASH_FREE,
    ),
    Row(
        shape_fault("null-groups", _sessions(None), "no sessions for release 1.0"),
        CRASH_FREE,
    ),
    Row(
        shape_fault(
            "null-rate",
            _sessions([{"by": {}, "totals": {"crash_free_rate(session)": None}}]),
            "no crash-free rate for release 1.0",
        ),
        CRASH_FREE,
    ),
    Row(
        _raw(
            "nan-rate",
            '{"groups":[{"by":{},"totals":{"crash_free_rate(session)": NaN}}]}',
            "crash_free_rate(session) is nan",
        ),
        CRASH_FREE,
    ),
    Row(
        _raw(
            "inf-events",
            '{"groups":[{"by":{},"totals":{"sum(quantity)": Infinity}}]}',
            "value is inf, not a finite number",
        ),
        EVENTS,
    ),
]


@pytest.fixture
async def sentry() -> AsyncIterator[ScriptedFake]:
    async for fake in _serve(SentryFake(token=FAULT_TOKEN_VALUE)):
        yield fake


def _sentry_config(url: str) -> dict[str, Any]:
    # A numeric project: no id lookup, so each scripted reply answers the metric's request.
    return {
        "type": "sentry",
        "url": url,
        "org": "acme",
        "project": "2",
        "token_env": FAULT_TOKEN_ENV,
    }


@pytest.mark.parametrize("row", SENTRY_ROWS, ids=_ids(SENTRY_ROWS))
async def test_sentry_faults_fail_closed(row: Row, sentry: ScriptedFake, now: datetime) -> None:
    run = await judge_fault(
        row.fault, sentry, probe_config=_sentry_config, criterion=row.criterion, now=now
    )
    _assert_row(run, row)


# -- the healthy path through the same machinery, so the table can tell a fault apart -----------


async def test_a_healthy_answer_on_each_fake_is_a_pass(
    datadog: ScriptedFake, newrelic: ScriptedFake, sentry: ScriptedFake, now: datetime
) -> None:
    healthy = Fault("healthy", "")
    assert isinstance(datadog, DatadogFake)
    datadog.set_points(DD_CRITERION["query"], [0.5])
    assert isinstance(newrelic, NewRelicFake)
    newrelic.account_id = 1
    newrelic.set_rows(NR_CRITERION["query"], [{"percentile.duration": {"95": 0.8}}])
    assert isinstance(sentry, SentryFake)
    sentry.org = "acme"
    sentry.set_release("1.0", 0.999, 500)

    runs = [
        await judge_fault(
            healthy, datadog, probe_config=_datadog_config, criterion=DD_CRITERION, now=now
        ),
        await judge_fault(
            healthy, newrelic, probe_config=_newrelic_config, criterion=NR_CRITERION, now=now
        ),
        await judge_fault(
            healthy, sentry, probe_config=_sentry_config, criterion=NEW_ISSUES, now=now
        ),
        await judge_fault(
            healthy, sentry, probe_config=_sentry_config, criterion=CRASH_FREE, now=now
        ),
    ]
    assert [r.result.outcome for r in runs] == [CriterionOutcome.PASS] * 4, runs
    assert [r.verdict.decision for r in runs] == [Decision.GO] * 4
    assert [r.result.value for r in runs] == [0.5, 0.8, 0.0, 0.999]
