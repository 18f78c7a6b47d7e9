"""The alertmanager probe against a fake speaking the documented /api/v2/alerts format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import pytest

from probes.alertmanager import AlertmanagerConfig, AlertmanagerProbe
from probes.base import Measurement, MeasurementStatus, ProbeContext, ProbeQuery
from probes.registry import probe_type
from tests.fakes import Reply, example
from tests.fakes.alertmanager import AlertmanagerFake, alert

MATCHERS = ('alertname=~"SecurityBreach|DataCorruption"', 'environment="production"')


@pytest.fixture
async def am() -> AsyncIterator[AlertmanagerFake]:
    fake = AlertmanagerFake()
    async with fake.serving():
        yield fake


async def measure(url: str, now: datetime, matchers: tuple[str, ...] = MATCHERS) -> Measurement:
    config = AlertmanagerConfig.model_validate(
        {"type": "alertmanager", "url": url, "timeout": 2, "retries": 0}
    )
    probe = AlertmanagerProbe(config, name="alerts")
    try:
        return await probe.measure(ProbeQuery(matchers=matchers), ProbeContext(now=now))
    finally:
        await probe.aclose()


def test_registered_under_its_entry_point() -> None:
    assert probe_type("alertmanager") is AlertmanagerProbe


async def test_counts_matching_active_alerts_and_sends_each_matcher(
    am: AlertmanagerFake, now: datetime
) -> None:
    am.alerts = [
        alert("SecurityBreach", environment="production"),
        alert("DataCorruption", environment="production"),
        alert("DataCorruption", environment="staging"),
        alert("HighLatency", environment="production"),
    ]
    result = await measure(am.url, now)
    assert (result.status, result.value) == (MeasurementStatus.OK, 2.0)
    assert result.detail == "2 firing: DataCorruption, SecurityBreach"
    seen = am.requests[0]
    assert seen.params("filter") == list(MATCHERS)
    assert (seen.param("active"), seen.param("silenced"), seen.param("inhibited")) == (
        "true",
        "false",
        "false",
    )


async def test_silenced_and_inhibited_alerts_do_not_count(
    am: AlertmanagerFake, now: datetime
) -> None:
    am.alerts = [
        alert("SecurityBreach", environment="production", state="suppressed", silenced_by=("s",)),
        alert("DataCorruption", environment="production", state="suppressed", inhibited_by=("x",)),
    ]
    result = await measure(am.url, now)
    assert (result.status, result.value) == (MeasurementStatus.OK, 0.0)


async def test_silenced_alerts_are_excluded_even_if_the_server_returns_them(
    am: AlertmanagerFake, now: datetime
) -> None:
    # The captured example: one active Watchdog, one silenced (suppressed) alert.
    am.script(Reply(json=example("alertmanager_alerts.json")))
    result = await measure(am.url, now, ('alertname=~".+"',))
    assert (result.value, result.detail) == (1.0, "1 firing: Watchdog")
    lying = example("alertmanager_alerts.json")
    lying[0]["status"]["state"] = "active"  # silencedBy still set
    am.script(Reply(json=lying))
    assert (await measure(am.url, now, ('alertname=~".+"',))).value == 1.0


async def test_no_alert_is_a_real_zero_not_no_data(am: AlertmanagerFake, now: datetime) -> None:
    am.script(Reply(json=example("alertmanager_alerts_empty.json")))
    result = await measure(am.url, now)
    assert (result.status, result.value) == (MeasurementStatus.OK, 0.0)
    assert result.detail == "no matching alert firing"


async def test_bad_matcher_surfaces_the_servers_text(am: AlertmanagerFake, now: datetime) -> None:
    result = await measure(am.url, now, ("foo!bar",))
    assert result.status is MeasurementStatus.ERROR
    assert result.detail == "alertmanager: HTTP 400 bad request: bad matcher format: foo!bar"


async def test_422_message_is_shown(am: AlertmanagerFake, now: datetime) -> None:
    am.script(Reply(status=422, json=example("alertmanager_error_bad_param.json")))
    result = await measure(am.url, now)
    assert result.detail == (
        'alertmanager: HTTP 422 unprocessable entity: active in query must be of type bool: "maybe"'
    )


async def test_an_object_instead_of_a_list_is_an_error(am: AlertmanagerFake, now: datetime) -> None:
    am.script(Reply(json={"status": "success", "data": []}))
    result = await measure(am.url, now)
    assert result.status is MeasurementStatus.ERROR
    assert "not a list of alerts" in result.detail


def test_check_query() -> None:
    assert AlertmanagerProbe.check_query(ProbeQuery(matchers=MATCHERS)) == []
    assert [f for f, _ in AlertmanagerProbe.check_query(ProbeQuery())] == ["matchers"]
    problems = AlertmanagerProbe.check_query(
        ProbeQuery(matchers=('{alertname="X"}', "nonsense"), query="up")
    )
    assert [f for f, _ in problems] == ["matchers.0", "matchers.1", "query"]
