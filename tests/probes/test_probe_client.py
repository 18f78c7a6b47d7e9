"""The shared probe HTTP client: retries, rate limits, caps, timeouts, secrets."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from probes.base import MeasurementStatus
from probes.client import (
    MAX_RETRY_WAIT,
    MissingSecret,
    ProbeFailure,
    SourceClient,
    retry_after_seconds,
    secret_from_env,
)
from tests.fakes import Reply
from tests.fakes.jsonapi import JsonApiFake
from tests.fakes.server import refused_port


class RecordedSleep:
    """Stands in for asyncio.sleep: records the pauses the client asks for."""

    def __init__(self) -> None:
        self.pauses: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)


@pytest.fixture
async def fake() -> AsyncIterator[JsonApiFake]:
    api = JsonApiFake({"ok": True})
    async with api.serving():
        yield api


@pytest.fixture
def sleep() -> RecordedSleep:
    return RecordedSleep()


def client_for(url: str, sleep: RecordedSleep, **kwargs: object) -> SourceClient:
    options: dict[str, object] = {"timeout": 2.0, "retries": 2, "sleep": sleep}
    options.update(kwargs)
    return SourceClient(base_url=url, **options)  # type: ignore[arg-type]


async def test_get_json_joins_a_base_with_a_path_prefix(
    fake: JsonApiFake, sleep: RecordedSleep
) -> None:
    fake.documents["/prom/api/v1/query"] = {"status": "success"}
    client = client_for(fake.url + "/prom", sleep)
    try:
        answer = await client.get_json("/api/v1/query", params={"query": "up"})
    finally:
        await client.aclose()
    assert answer.status_code == 200
    assert answer.json == {"status": "success"}
    assert fake.requests[0].path == "/prom/api/v1/query"
    assert fake.requests[0].param("query") == "up"


async def test_5xx_is_retried_then_succeeds(fake: JsonApiFake, sleep: RecordedSleep) -> None:
    fake.script(Reply(status=500, body=b"oops"), Reply(status=502, body=b"<html>bad</html>"))
    client = client_for(fake.url, sleep)
    try:
        answer = await client.get_json("/x")
    finally:
        await client.aclose()
    assert answer.json == {"ok": True}
    assert len(fake.requests) == 3
    assert len(sleep.pauses) == 2
    assert all(0 <= pause <= 2.0 for pause in sleep.pauses)


async def test_5xx_every_time_gives_up_after_the_retries(
    fake: JsonApiFake, sleep: RecordedSleep
) -> None:
    fake.script(*[Reply(status=503, body=b"Service Unavailable")] * 5)
    client = client_for(fake.url, sleep)
    with pytest.raises(ProbeFailure) as failure:
        await client.get_json("/x")
    await client.aclose()
    assert failure.value.detail == "HTTP 503 service unavailable after 3 tries"
    assert failure.value.status is MeasurementStatus.ERROR
    assert failure.value.http_status == 503
    assert failure.value.body == "Service Unavailable"
    assert len(fake.requests) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_other_4xx_are_never_retried(
    fake: JsonApiFake, sleep: RecordedSleep, status: int
) -> None:
    fake.script(Reply(status=status, json={"error": "no"}))
    client = client_for(fake.url, sleep)
    with pytest.raises(ProbeFailure) as failure:
        await client.get_json("/x")
    await client.aclose()
    assert len(fake.requests) == 1
    assert failure.value.http_status == status
    assert failure.value.body == {"error": "no"}
    assert failure.value.detail.startswith(f"HTTP {status}")


async def test_401_and_403_say_unauthorized_and_forbidden(
    fake: JsonApiFake, sleep: RecordedSleep
) -> None:
    fake.script(Reply(status=401, body=b"Unauthorized\n"), Reply(status=403, json={}))
    client = client_for(fake.url, sleep)
    details = []
    for _ in range(2):
        with pytest.raises(ProbeFailure) as failure:
            await client.get_json("/x")
        details.append(failure.value.detail)
    await client.aclose()
    assert details == ["HTTP 401 unauthorized", "HTTP 403 forbidden"]


async def test_429_honours_retry_after_seconds(fake: JsonApiFake, sleep: RecordedSleep) -> None:
    fake.script(Reply(status=429, json={"errors": ["Rate limit"]}, headers={"Retry-After": "3"}))
    client = client_for(fake.url, sleep)
    answer = await client.get_json("/x")
    await client.aclose()
    assert answer.json == {"ok": True}
    assert sleep.pauses == [3.0]


async def test_429_honours_datadog_ratelimit_reset(fake: JsonApiFake, sleep: RecordedSleep) -> None:
    fake.script(Reply(status=429, json={"errors": ["x"]}, headers={"X-RateLimit-Reset": "1"}))
    client = client_for(fake.url, sleep)
    await client.get_json("/x")
    await client.aclose()
    assert sleep.pauses == [1.0]


async def test_retry_after_is_capped(fake: JsonApiFake, sleep: RecordedSleep) -> None:
    fake.script(Reply(status=429, headers={"Retry-After": "3600"}))
    client = client_for(fake.url, sleep, timeout=5.0)
    await client.get_json("/x")
    await client.aclose()
    assert sleep.pauses == [MAX_RETRY_WAIT]


async def test_retry_after_beyond_the_budget_gives_up_at_once(
    fake: JsonApiFake, sleep: RecordedSleep
) -> None:
    # timeout 1s x 3 tries + 2 x 2s backoff = 7s budget: a 10s wait cannot fit.
    fake.script(Reply(status=429, headers={"Retry-After": "60"}))
    client = client_for(fake.url, sleep, timeout=1.0)
    with pytest.raises(ProbeFailure) as failure:
        await client.get_json("/x")
    await client.aclose()
    assert sleep.pauses == []
    assert len(fake.requests) == 1
    assert failure.value.detail.startswith("rate limited (HTTP 429)")
    assert "wait 60s" in failure.value.detail


async def test_429_every_time_ends_rate_limited(fake: JsonApiFake, sleep: RecordedSleep) -> None:
    fake.script(*[Reply(status=429, headers={"Retry-After": "1"})] * 5)
    client = client_for(fake.url, sleep)
    with pytest.raises(ProbeFailure) as failure:
        await client.get_json("/x")
    await client.aclose()
    assert failure.value.detail == "rate limited (HTTP 429) after 3 tries"
    assert sleep.pauses == [1.0, 1.0]


def test_retry_after_reads_an_http_date() -> None:
    now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert retry_after_seconds({"retry-after": later}, now=now) == 7.0
    assert retry_after_seconds({"retry-after": "soon"}, now=now) is None
    assert retry_after_seconds({}, now=now) is None
    assert retry_after_seconds({"retry-after": "-4"}, now=now) == 0.0


async def test_connection_refused_is_retried_and_named(sleep: RecordedSleep) -> None:
    client = client_for(f"http://127.0.0.1:{refused_port()}", sleep)
    with pytest.raises(ProbeFailure) as failure:
        await client.get_json("/x")
    await client.aclose()
    assert failure.value.detail == "connection refused after 3 tries"
    assert failure.value.status is MeasurementStatus.ERROR


async def test_unknown_host_is_named(sleep: RecordedSleep) -> None:
    client = client_for("http://gonogo-test.invalid", sleep, retries=0)
    with pytest.raises(ProbeFailure) as failure:
        await client.get_json("/x")
    await client.aclose()
    assert failure.value.detail == "cannot resolve host gonogo-test.invalid"


async def test_a_slow_answer_times_out(fake: JsonApiFake, sleep: RecordedSleep) -> None:
    fake.script(Reply(hang=True), Reply(hang=True))
    client = client_for(fake.url, sleep, timeout=0.2, retries=1)
    with pytest.raises(ProbeFailure) as failure:
        await client.get_json("/x")
    await client.aclose()
    assert failure.value.status is MeasurementStatus.TIMEOUT
    assert failure.value.detail == "timed out after 0.2s after 2 tries"


@pytest.mark.parametrize("declare_length", [True, False])
async def test_a_huge_body_is_cut_off_while_streaming(
    fake: JsonApiFake, sleep: RecordedSleep, declare_length: bool
) -> None:
    total = 64 * 1024 * 1024
    fake.script(Reply(stream_bytes=total, declare_length=declare_length))
    client = client_for(fake.url, sleep, max_body_bytes=256 * 1024, retries=0)
    tracemalloc.start()
    try:
        with pytest.raises(ProbeFailure) as failure:
            await client.get_json("/x")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await client.aclose()
    assert failure.value.detail == "response body larger than 262144 bytes"
    assert peak < 16 * 1024 * 1024
    assert fake.streamed_bytes < total


async def test_the_default_cap_is_10_mib(fake: JsonApiFake, sleep: RecordedSleep) -> None:
    fake.script(Reply(stream_bytes=11 * 1024 * 1024))
    client = client_for(fake.url, sleep, retries=0)
    with pytest.raises(ProbeFailure) as failure:
        await client.get_json("/x")
    await client.aclose()
    assert failure.value.detail == "response body larger than 10 MiB"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", "invalid JSON: Expecting value at char 0"),
        (b"<html>hi</html>", "invalid JSON: Expecting value at char 0"),
        (b'{"a": ', "invalid JSON: Expecting value at char 6"),
    ],
)
async def test_invalid_json_is_a_failure(
    fake: JsonApiFake, sleep: RecordedSleep, body: bytes, detail: str
) -> None:
    fake.script(Reply(body=body, content_type="application/json"))
    client = client_for(fake.url, sleep)
    with pytest.raises(ProbeFailure) as failure:
        await client.get_json("/x")
    await client.aclose()
    assert failure.value.detail == detail
    assert len(fake.requests) == 1


async def test_secrets_are_scrubbed_from_details_and_bodies(
    fake: JsonApiFake, sleep: RecordedSleep
) -> None:
    token = "s3cr3t-token-value"
    fake.script(Reply(status=400, json={"error": f"bad key {token}"}))
    client = client_for(
        fake.url, sleep, headers={"Authorization": f"Bearer {token}"}, secrets=[token]
    )
    with pytest.raises(ProbeFailure) as failure:
        await client.get_json("/x")
    fake.script(Reply(body=f"not json {token}".encode()))
    with pytest.raises(ProbeFailure) as invalid:
        await client.get_json("/x")
    await client.aclose()
    assert fake.requests[0].headers["Authorization"] == f"Bearer {token}"
    assert failure.value.body == {"error": "bad key ***"}
    assert token not in str(invalid.value.body)
    assert token not in repr(client)


async def test_post_json_sends_json_and_retries_only_when_idempotent(
    fake: JsonApiFake, sleep: RecordedSleep
) -> None:
    client = client_for(fake.url, sleep)
    fake.script(Reply(status=500))
    answer = await client.post_json("/graphql", json={"query": "{ a }"})
    fake.script(Reply(status=500))
    with pytest.raises(ProbeFailure):
        await client.post_json("/graphql", json={"query": "{ a }"}, idempotent=False)
    await client.aclose()
    assert answer.json == {"ok": True}
    assert [r.method for r in fake.requests] == ["POST", "POST", "POST"]
    assert json.loads(fake.requests[1].body) == {"query": "{ a }"}
    assert fake.requests[1].headers["Content-Type"] == "application/json"


async def test_raw_get_returns_any_status_without_retrying(
    fake: JsonApiFake, sleep: RecordedSleep
) -> None:
    fake.script(Reply(status=503, json={"status": "DOWN"}))
    client = client_for(fake.url, sleep)
    answer = await client.get(fake.url + "/actuator/health")
    await client.aclose()
    assert answer.status_code == 503
    assert answer.body == b'{"status": "DOWN"}'
    assert answer.elapsed > 0
    assert len(fake.requests) == 1
    assert fake.requests[0].path == "/actuator/health"


def test_secret_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GONOGO_TEST_TOKEN", "value")
    monkeypatch.delenv("GONOGO_TEST_ABSENT", raising=False)
    assert secret_from_env("GONOGO_TEST_TOKEN", field="token_env") == "value"
    assert secret_from_env(None, field="token_env") is None
    with pytest.raises(MissingSecret, match="token_env: environment variable GONOGO_TEST_ABSENT"):
        secret_from_env("GONOGO_TEST_ABSENT", field="token_env")
    with pytest.raises(ValueError):
        secret_from_env("GONOGO_TEST_ABSENT", field="token_env")


@pytest.mark.parametrize("auth", [("grafana", "pw"), httpx.BasicAuth("grafana", "pw")])
async def test_basic_auth_as_tuple_or_httpx_auth(
    fake: JsonApiFake, sleep: RecordedSleep, auth: tuple[str, str] | httpx.Auth
) -> None:
    fake.require_authorization("Basic Z3JhZmFuYTpwdw==")
    client = client_for(fake.url, sleep, auth=auth)
    answer = await client.get_json("/x")
    await client.aclose()
    assert answer.json == {"ok": True}
