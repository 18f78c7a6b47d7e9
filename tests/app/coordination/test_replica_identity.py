"""Each replica's identity and lease TTL: ``GONOGO_REPLICA_ID`` (default hostname and pid)
and ``GONOGO_LEASE_TTL`` (default 15s, at least 1s), validated with messages naming the
variable; the replica id on every log line and in ``/readyz``."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import structlog

from app.core.clock import ManualClock
from app.core.logging import configure_logging
from app.core.settings import SettingsError, load_settings, reserved_variables
from tests.app.conftest import Service, open_service
from tests.app.fakes import ProbeBench


def test_the_lease_ttl_defaults_to_15s_and_takes_a_duration_of_at_least_1s(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().lease_ttl == timedelta(seconds=15)
    monkeypatch.setenv("GONOGO_LEASE_TTL", "1s")
    assert load_settings().lease_ttl == timedelta(seconds=1)
    monkeypatch.setenv("GONOGO_LEASE_TTL", "1m30s")
    assert load_settings().lease_ttl == timedelta(seconds=90)
    for bad, why in (("999ms", "at least 1s"), ("15", "bad duration"), ("soon", "bad duration")):
        monkeypatch.setenv("GONOGO_LEASE_TTL", bad)
        with pytest.raises(SettingsError, match=f"GONOGO_LEASE_TTL: .*{why}"):
            load_settings()


def test_the_replica_id_defaults_to_hostname_and_pid_and_may_be_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = load_settings().replica_id
    assert default.endswith(f"-{os.getpid()}")
    assert default == f"{socket.gethostname()}-{os.getpid()}"
    monkeypatch.setenv("GONOGO_REPLICA_ID", "gonogo-7d9f-abcde")
    assert load_settings().replica_id == "gonogo-7d9f-abcde"
    for bad in ("", "two words", "-leading", "x" * 129, "pod\n1"):
        monkeypatch.setenv("GONOGO_REPLICA_ID", bad)
        with pytest.raises(SettingsError, match="GONOGO_REPLICA_ID: must be 1-128 characters"):
            load_settings()


def test_no_gate_may_read_the_new_settings_through_an_env_field() -> None:
    assert {"GONOGO_LEASE_TTL", "GONOGO_REPLICA_ID"} <= reserved_variables()


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("json", stream=stream, level=logging.DEBUG, replica="pod-a")
    try:
        yield stream
    finally:
        root = logging.getLogger()
        for handler in list(root.handlers):
            if getattr(handler, "_gonogo", False):
                root.removeHandler(handler)
        structlog.reset_defaults()


def test_every_log_line_names_the_replica(captured_logs: io.StringIO) -> None:
    structlog.get_logger("gonogo.test").info("from structlog", gate="g")
    logging.getLogger("uvicorn.error").warning("from the standard library")
    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["from structlog", "from the standard library"]
    assert [line["replica"] for line in lines] == ["pod-a", "pod-a"]


async def test_readyz_names_the_replica(
    database_url: str, gates_dir: Path, clock: ManualClock, bench: ProbeBench
) -> None:
    app, lifespan = await open_service(
        database_url, gates_dir, clock, bench, replica_id="replica-b"
    )
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gonogo.test") as client:
            ready = await client.get("/readyz")
    finally:
        await lifespan.__aexit__(None, None, None)
    assert ready.status_code == 200, ready.text
    assert ready.json()["replica"] == "replica-b"


async def test_readyz_names_the_replica_also_when_not_ready(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service.app.state.db, "reached", False)

    async def unreachable() -> bool:
        return False

    monkeypatch.setattr(service.app.state.db, "ping", unreachable)
    answer = await service.client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["replica"] == service.app.state.settings.replica_id
