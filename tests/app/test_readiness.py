"""``/readyz``: ready once the gates are loaded and the database was reached since start; a
later outage shows in its details (and in stale decisions), not as unreadiness."""

from __future__ import annotations

import pytest

from tests.app.conftest import Service


async def test_ready_once_the_database_was_reached_and_a_later_outage_shows_in_the_details(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = service.app.state.db
    assert db.reached  # start-up read the stored gates
    ready = await service.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] is True

    async def unreachable() -> bool:
        return False

    monkeypatch.setattr(db, "ping", unreachable)
    during = await service.client.get("/readyz")
    assert during.status_code == 200, during.text
    assert during.json()["status"] == "ready"
    assert during.json()["database"] is False
    assert "stale" in during.json()["detail"]


async def test_not_ready_before_the_database_was_ever_reached(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = service.app.state.db

    async def unreachable() -> bool:
        return False

    monkeypatch.setattr(db, "ping", unreachable)
    monkeypatch.setattr(db, "reached", False)
    answer = await service.client.get("/readyz")
    assert answer.status_code == 503
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "has not been reached since start" in answer.json()["detail"]
