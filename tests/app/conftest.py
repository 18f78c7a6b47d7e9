"""Fixtures for the service tests: a migrated database (SQLite file and PostgreSQL), a
manual clock, scripted probes, and the app behind an httpx client."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.clock import ManualClock
from app.core.migrate import upgrade_database
from app.core.settings import load_settings
from app.main import create_app
from tests.app.fakes import ProbeBench
from tests.conftest import T0
from tests.support import in_ci

POSTGRES_ENV = "GONOGO_TEST_POSTGRES_URL"
TOKENS = {
    "viewer": "viewer-secret-0001",
    "pipeline": "pipeline-secret-0002",
    "approver": "approver-secret-0003",
    "admin": "admin-secret-0004",
}
TOKEN_NAMES = {"viewer": "vera", "pipeline": "ci", "approver": "alice", "admin": "root"}
TOKENS_SETTING = ",".join(f"{TOKEN_NAMES[r]}:{r}:{s}" for r, s in TOKENS.items())

PORTAL = """\
description: test gate
interval: 10s
steady_for: 2
rollback_after: 2
timeout: 60s
probes:
  p: {type: constant, value: 1}
criteria:
  - {name: availability, probe: p, go: "> 99%", rollback: "< 95%"}
"""

SIGNED = """\
interval: 10s
steady_for: 1
timeout: 120s
probes:
  q: {type: constant, value: 1}
criteria:
  - {name: availability, probe: q, go: "> 99%"}
signoffs:
  - {id: uat, description: UAT signed off, role: approver}
  - {id: cso, description: Clinical safety officer, role: admin}
"""


async def reset_postgres(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database built by ``alembic upgrade head`` (never ``create_all``)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'gonogo.db'}"
    else:
        url = os.environ.get(POSTGRES_ENV, "")
        if not url:
            if in_ci():
                pytest.fail(f"{POSTGRES_ENV} is not set; CI=true, so PostgreSQL must be tested")
            pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} (e.g. postgresql+asyncpg://...)")
        await reset_postgres(url)
    await upgrade_database(url)
    return url


@pytest.fixture
async def postgres_url() -> str:
    """LISTEN/NOTIFY across replicas is PostgreSQL's (SQLite serves one process)."""
    url = os.environ.get(POSTGRES_ENV, "")
    if not url:
        if in_ci():
            pytest.fail(f"{POSTGRES_ENV} is not set; CI=true, so PostgreSQL must be tested")
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} (e.g. postgresql+asyncpg://...)")
    await reset_postgres(url)
    await upgrade_database(url)
    return url


@pytest.fixture
def gates_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "gates"
    directory.mkdir()
    (directory / "portal.yaml").write_text(PORTAL)
    (directory / "signed.yaml").write_text(SIGNED)
    return directory


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def bench() -> ProbeBench:
    return ProbeBench()


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    clock: ManualClock
    bench: ProbeBench
    database_url: str

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKENS[role]}"}

    async def get(self, path: str, role: str = "viewer", **kwargs: Any) -> httpx.Response:
        return await self.client.get(path, headers=self.headers(role), **kwargs)

    async def post(self, path: str, role: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers(role), **kwargs.pop("headers", {})}
        return await self.client.post(path, headers=headers, **kwargs)

    def probe(self, name: str) -> Any:
        return self.bench.latest(name)

    async def start_check(self, gate: str = "portal", **body: Any) -> dict[str, Any]:
        response = await self.post(
            f"/api/v1/gates/{gate}/checks", "pipeline", json={"version": "1.0", **body}
        )
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    async def check(self, check_id: str) -> dict[str, Any]:
        response = await self.get(f"/api/v1/checks/{check_id}")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def sample_count(self, check_id: str) -> int:
        response = await self.get(f"/api/v1/checks/{check_id}/events")
        return sum(1 for e in response.json()["items"] if e["kind"] == "sample")

    async def until(
        self, condition: Callable[[], Awaitable[bool]], *, seconds: float = 10.0
    ) -> None:
        """Poll a real condition with a bounded deadline (database writes run in threads)."""
        deadline = time.monotonic() + seconds
        while not await condition():
            if time.monotonic() > deadline:
                pytest.fail(f"condition not met within {seconds}s")
            await asyncio.sleep(0.01)

    async def quiet(self) -> None:
        """Wait until every sampling loop (one per gate, one per running check, and the
        retention sweep) is asleep on the clock, so advancing it skips no tick."""
        state = self.app.state

        async def asleep() -> bool:
            expected = len(state.catalog.all()) + len(state.checks.running_checks()) + 1
            return self.clock.sleepers >= expected

        await self.until(asleep)

    async def advance(self, seconds: float) -> None:
        await self.quiet()
        await self.clock.advance(seconds)

    async def samples_reach(self, check_id: str, count: int) -> None:
        async def reached() -> bool:
            return await self.sample_count(check_id) >= count

        await self.until(reached)

    async def final(self, check_id: str) -> dict[str, Any]:
        found: dict[str, Any] = {}

        async def ended() -> bool:
            found.update(await self.check(check_id))
            return found["state"] != "running"

        await self.until(ended)
        return found


async def open_service(
    database_url: str,
    gates_dir: Path,
    clock: ManualClock,
    bench: ProbeBench,
    **settings: Any,
) -> tuple[FastAPI, Any]:
    app = create_app(
        load_settings(
            database_url=database_url,
            gates_dir=gates_dir,
            tokens=settings.pop("tokens", TOKENS_SETTING),
            **settings,
        ),
        clock=clock,
        probe_builder=bench,
    )
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    return app, lifespan


@pytest.fixture
async def service(
    database_url: str, gates_dir: Path, clock: ManualClock, bench: ProbeBench
) -> AsyncIterator[Service]:
    app, lifespan = await open_service(database_url, gates_dir, clock, bench)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gonogo.test") as client:
            yield Service(app, client, clock, bench, database_url)
    finally:
        await lifespan.__aexit__(None, None, None)
