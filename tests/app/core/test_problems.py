"""Every request that meets a database outage gets a 503 problem, never a 500."""

from __future__ import annotations

import io
from typing import Any

import pytest
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.checks import repository as checks_repo
from tests.app.conftest import Service
from tests.app.test_secrets import captured_logs as captured_logs  # the fixture

OUTAGES = [
    OperationalError("INSERT INTO checks", {}, Exception("connection refused")),
    InterfaceError("INSERT INTO checks", {}, Exception("connection is closed")),
    PoolTimeout("QueuePool limit reached, connection timed out"),
    ConnectionResetError(104, "Connection reset by peer"),
    TimeoutError(),
]


@pytest.mark.parametrize("outage", OUTAGES, ids=lambda e: type(e).__name__)
async def test_a_database_outage_during_a_request_is_a_503_with_retry_after(
    service: Service,
    monkeypatch: pytest.MonkeyPatch,
    captured_logs: io.StringIO,
    outage: Exception,
) -> None:
    async def down(*_args: Any, **_kwargs: Any) -> Any:
        raise outage

    monkeypatch.setattr(checks_repo, "add_check", down)
    response = await service.post(
        "/api/v1/gates/portal/checks", "pipeline", json={"version": "1.0"}
    )
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["retry-after"] == "5"
    assert response.json()["detail"] == "the database is not answering; try again later"
    logs = captured_logs.getvalue()
    assert "database not answering" in logs
    assert f'"error_type": "{type(outage).__name__}"' in logs  # and its own words beside it
    assert "Traceback" not in logs and "unhandled error" not in logs
