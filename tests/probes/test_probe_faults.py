"""The fault table: whatever a source does wrong, the gate says no_go with the cause.

Every row goes through ``gates.sampler.take_sample`` and ``gates.engine.decide`` with
``steady_for: 1``, so one passing sample would be ``go``: the healthy row of each type
proves the harness can say go, and every fault row must not.
(Pieces shared with other probe types' fault tables live in ``tests.fakes.faults``.)
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

from gates.engine import CriterionOutcome, Decision
from tests.fakes.alertmanager import AlertmanagerFake
from tests.fakes.faults import (
    FAULT_TOKEN_ENV,
    FAULT_TOKEN_VALUE,
    Fault,
    assert_fails_closed,
    common_faults,
    judge_fault,
    shape_fault,
)
from tests.fakes.health import HealthFake
from tests.fakes.jsonapi import JsonApiFake
from tests.fakes.prometheus import PrometheusFake, vector

PROMETHEUS_ROWS = [
    *common_faults(),
    shape_fault(
        "wrong-shape",
        {"status": "success", "data": {"resultType": "vector", "result": {}}},
        "vector result is not a list",
    ),
    shape_fault("not-an-envelope", ["up"], "not a Prometheus API envelope"),
    shape_fault(
        "empty-result",
        {"status": "success", "data": {"resultType": "vector", "result": []}},
        "no series",
    ),
    shape_fault(
        "nan",
        {
            "status": "success",
            "data": {
                "resultType": "vector",
                "result": [{"metric": {}, "value": [1767436620, "NaN"]}],
            },
        },
        "returned NaN",
    ),
    shape_fault(
        "inf",
        {"status": "success", "data": {"resultType": "scalar", "result": [1767436620, "+Inf"]}},
        "returned +Inf",
    ),
    shape_fault(
        "several-series",
        {
            "status": "success",
            "data": {
                "resultType": "vector",
                "result": [
                    {"metric": {"i": "1"}, "value": [1767436620, "0.1"]},
                    {"metric": {"i": "2"}, "value": [1767436620, "0.2"]},
                ],
            },
        },
        "2 series returned; set reduce",
    ),
]
ALERTMANAGER_ROWS = [
    *common_faults(),
    shape_fault("wrong-shape", {"data": []}, "not a list of alerts"),
]
JSON_ROWS = [
    *common_faults(),
    shape_fault("wrong-shape", {"other": {"value": 1}}, "data.rate not found"),
    shape_fault("empty-result", {}, "data.rate not found"),
    shape_fault("nan", {"data": {"rate": "NaN"}}, "not a finite number"),
    shape_fault("inf", {"data": {"rate": math.inf}}, "not a finite number"),
    shape_fault("null", {"data": {"rate": None}}, "data.rate is null"),
]
# The health probe reads any body; without a usable "status" it is down.
# A health check reads any status as an answer, so a 429 is not retried there.
HTTP_ROWS = [
    *(
        replace(row, min_requests=1) if row.id == "http-429-retry-after" else row
        for row in common_faults(invalid_json_expect="status not found")
    ),
    shape_fault("wrong-shape", ["UP"], "status not found"),
    shape_fault("empty-result", {}, "status not found"),
]


def prometheus_config(url: str) -> dict[str, Any]:
    return {"type": "prometheus", "url": url, "token_env": FAULT_TOKEN_ENV}


def alertmanager_config(url: str) -> dict[str, Any]:
    return {"type": "alertmanager", "url": url, "token_env": FAULT_TOKEN_ENV}


def json_config(url: str) -> dict[str, Any]:
    return {"type": "json", "url": url + "/stats", "token_env": FAULT_TOKEN_ENV}


def http_config(url: str) -> dict[str, Any]:
    return {
        "type": "http",
        "url": url + "/actuator/health",
        "token_env": FAULT_TOKEN_ENV,
        "json_path": "status",
        "expect_value": "UP",
    }


PROMETHEUS_CRITERION = {"query": "sum(rate(errors[5m]))", "go": "< 1%"}
ALERTMANAGER_CRITERION = {"matchers": ['alertname="SecurityBreach"'], "go": "== 0"}
JSON_CRITERION = {"path": "data.rate", "go": "> 10%"}
LATENCY_CRITERION = {"metric": "latency", "go": "< 2s"}
UP_CRITERION = {"metric": "up", "go": "== 1"}


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAULT_TOKEN_ENV, FAULT_TOKEN_VALUE)


@pytest.fixture
async def prometheus() -> AsyncIterator[PrometheusFake]:
    fake = PrometheusFake()
    fake.default = vector(0.001)
    async with fake.serving():
        yield fake


@pytest.fixture
async def alertmanager() -> AsyncIterator[AlertmanagerFake]:
    fake = AlertmanagerFake()
    async with fake.serving():
        yield fake


@pytest.fixture
async def json_api() -> AsyncIterator[JsonApiFake]:
    fake = JsonApiFake({"data": {"rate": 0.42}})
    async with fake.serving():
        yield fake


@pytest.fixture
async def health() -> AsyncIterator[HealthFake]:
    fake = HealthFake("spring-up")
    async with fake.serving():
        yield fake


def ids(rows: list[Fault]) -> list[str]:
    return [row.id for row in rows]


async def test_healthy_sources_can_say_go(
    prometheus: PrometheusFake,
    alertmanager: AlertmanagerFake,
    json_api: JsonApiFake,
    health: HealthFake,
    now: datetime,
) -> None:
    healthy: list[tuple[Any, Callable[[str], dict[str, Any]], dict[str, Any]]] = [
        (prometheus, prometheus_config, PROMETHEUS_CRITERION),
        (alertmanager, alertmanager_config, ALERTMANAGER_CRITERION),
        (json_api, json_config, JSON_CRITERION),
        (health, http_config, LATENCY_CRITERION),
        (health, http_config, UP_CRITERION),
    ]
    for fake, config, criterion in healthy:
        run = await judge_fault(
            Fault("healthy", ""), fake, probe_config=config, criterion=criterion, now=now
        )
        assert run.verdict.decision is Decision.GO, (config, run.result)


@pytest.mark.parametrize("fault", PROMETHEUS_ROWS, ids=ids(PROMETHEUS_ROWS))
async def test_prometheus_faults(fault: Fault, prometheus: PrometheusFake, now: datetime) -> None:
    run = await judge_fault(
        fault, prometheus, probe_config=prometheus_config, criterion=PROMETHEUS_CRITERION, now=now
    )
    assert_fails_closed(run, fault)


@pytest.mark.parametrize("fault", ALERTMANAGER_ROWS, ids=ids(ALERTMANAGER_ROWS))
async def test_alertmanager_faults(
    fault: Fault, alertmanager: AlertmanagerFake, now: datetime
) -> None:
    run = await judge_fault(
        fault,
        alertmanager,
        probe_config=alertmanager_config,
        criterion=ALERTMANAGER_CRITERION,
        now=now,
    )
    assert_fails_closed(run, fault)


@pytest.mark.parametrize("fault", JSON_ROWS, ids=ids(JSON_ROWS))
async def test_json_faults(fault: Fault, json_api: JsonApiFake, now: datetime) -> None:
    run = await judge_fault(
        fault, json_api, probe_config=json_config, criterion=JSON_CRITERION, now=now
    )
    assert_fails_closed(run, fault)


@pytest.mark.parametrize("fault", HTTP_ROWS, ids=ids(HTTP_ROWS))
async def test_http_latency_faults(fault: Fault, health: HealthFake, now: datetime) -> None:
    run = await judge_fault(
        fault, health, probe_config=http_config, criterion=LATENCY_CRITERION, now=now
    )
    assert_fails_closed(run, fault)


@pytest.mark.parametrize("fault", HTTP_ROWS, ids=ids(HTTP_ROWS))
async def test_http_up_faults_are_down(fault: Fault, health: HealthFake, now: datetime) -> None:
    """For ``up`` a fault is a measured 0 (see probes.http), so the criterion fails.
    (The engine's reason for a fail is the comparison; the cause is in the probe's
    detail, checked in test_probe_http.)"""
    run = await judge_fault(
        fault, health, probe_config=http_config, criterion=UP_CRITERION, now=now
    )
    assert run.result.value == 0.0
    assert_fails_closed(run, fault, outcome=CriterionOutcome.FAIL)


def test_every_type_has_the_whole_common_table() -> None:
    required = {
        "connection-refused",
        "dns-failure",
        "timeout",
        "http-500",
        "http-502-html",
        "http-429-retry-after",
        "http-401",
        "http-403",
        "invalid-json",
        "body-over-10-mib",
        "wrong-shape",
    }
    for rows in (PROMETHEUS_ROWS, ALERTMANAGER_ROWS, JSON_ROWS, HTTP_ROWS):
        assert required <= set(ids(rows))
    assert {"empty-result", "nan", "inf", "several-series"} <= set(ids(PROMETHEUS_ROWS))
