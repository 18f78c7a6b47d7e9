"""The json probe: one number at a dotted path of any JSON API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from probes.base import Measurement, MeasurementStatus, ProbeContext, ProbeQuery
from probes.json_api import JsonConfig, JsonProbe
from probes.registry import probe_type
from tests.fakes.jsonapi import JsonApiFake

DOCUMENT: dict[str, Any] = {
    "data": {"registration_rate": 0.42, "count": "17", "flag": True, "gone": None},
    "items": [{"value": 3}, {"value": "1e-3"}],
    "odd": "12 apples",
}


@pytest.fixture
async def api() -> AsyncIterator[JsonApiFake]:
    fake = JsonApiFake(DOCUMENT)
    async with fake.serving():
        yield fake


async def measure(url: str, path: str, now: datetime, **options: object) -> Measurement:
    config = JsonConfig.model_validate({"type": "json", "url": url, "retries": 0, **options})
    probe = JsonProbe(config, name="adoption")
    try:
        return await probe.measure(ProbeQuery(path=path), ProbeContext(now=now))
    finally:
        await probe.aclose()


def test_registered_under_its_entry_point() -> None:
    assert probe_type("json") is JsonProbe


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("data.registration_rate", 0.42),
        ("data.count", 17.0),
        ("items.0.value", 3.0),
        ("items.1.value", 0.001),
    ],
)
async def test_numbers_and_numeric_strings(
    api: JsonApiFake, now: datetime, path: str, value: float
) -> None:
    result = await measure(api.url + "/stats", path, now)
    assert (result.status, result.value) == (MeasurementStatus.OK, value)
    assert api.requests[0].path == "/stats"


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("data.flag", "json: data.flag is a boolean (true), not a number"),
        ("data.gone", "json: data.gone is null, not a number"),
        ("data", "json: data is an object, not a number"),
        ("items", "json: items is a list, not a number"),
        ("odd", "json: odd is str '12 apples', not a number"),
        ("data.missing", "json: data.missing not found: no 'missing' in data"),
        ("items.5.value", "json: items.5.value not found: no '5' in items"),
    ],
)
async def test_non_numbers_are_errors_naming_the_path(
    api: JsonApiFake, now: datetime, path: str, detail: str
) -> None:
    result = await measure(api.url, path, now)
    assert (result.status, result.value, result.detail) == (MeasurementStatus.ERROR, None, detail)


async def test_bearer_token_and_headers(
    api: JsonApiFake, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GONOGO_TEST_JSON_TOKEN", "jt")
    api.require_authorization("Bearer jt")
    result = await measure(
        api.url,
        "data.registration_rate",
        now,
        token_env="GONOGO_TEST_JSON_TOKEN",
        headers={"X-Tenant": "caresync"},
    )
    assert result.value == 0.42
    assert api.requests[0].headers["X-Tenant"] == "caresync"


def test_check_query() -> None:
    assert JsonProbe.check_query(ProbeQuery(path="items.0.value")) == []
    assert [f for f, _ in JsonProbe.check_query(ProbeQuery())] == ["path"]
    assert [f for f, _ in JsonProbe.check_query(ProbeQuery(path="a..b"))] == ["path"]
