"""Replicas starting together migrate once: concurrent upgrades of one PostgreSQL each
succeed, and leave the schema at head."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from subprocess import STDOUT

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from app.core.db import Base
from app.core.migrate import MIGRATION_LOCK_KEY, alembic_config, upgrade_database
from tests.app.conftest import POSTGRES_ENV, reset_postgres
from tests.support import in_ci

pytestmark = pytest.mark.postgres

REPLICAS = 3
MIGRATE_WITHIN_S = 120
WAIT_S = 10.0
GONOGO = str(Path(sys.executable).with_name("gonogo"))


@pytest.fixture
async def empty_postgres() -> str:
    url = os.environ.get(POSTGRES_ENV, "")
    if not url:
        if in_ci():
            pytest.fail(f"{POSTGRES_ENV} is not set; CI=true, so PostgreSQL must be tested")
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV}")
    await reset_postgres(url)
    return url


def test_replicas_migrating_one_postgresql_together_each_succeed_at_head(
    empty_postgres: str, tmp_path: Path
) -> None:
    """``gonogo migrate`` in several processes at once, as replicas starting together."""
    environment = {**os.environ, "GONOGO_DATABASE_URL": empty_postgres}
    logs = [tmp_path / f"migrate-{n}.log" for n in range(REPLICAS)]
    processes = [
        subprocess.Popen([GONOGO, "migrate"], env=environment, stdout=log.open("wb"), stderr=STDOUT)
        for log in logs
    ]
    codes = [process.wait(MIGRATE_WITHIN_S) for process in processes]
    assert codes == [0] * REPLICAS, "\n".join(log.read_text() for log in logs)
    assert all("database is up to date" in log.read_text() for log in logs)

    head = ScriptDirectory.from_config(alembic_config(empty_postgres)).get_current_head()
    versions, tables = asyncio.run(_schema(empty_postgres))
    assert versions == [head]
    assert tables == set(Base.metadata.tables) | {"alembic_version"}


async def _schema(url: str) -> tuple[list[str], set[str]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            found = await connection.execute(text("SELECT version_num FROM alembic_version"))
            versions = list(found.scalars().all())
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    return versions, tables


async def test_an_upgrade_waits_for_the_migration_lock_another_replica_holds(
    empty_postgres: str,
) -> None:
    """While one replica holds the lock (here: the test), another's upgrade waits for it and
    changes nothing; once the lock is free it upgrades to head."""
    engine = create_async_engine(empty_postgres)
    try:
        async with engine.connect() as holder:
            await holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            upgrade = asyncio.create_task(upgrade_database(empty_postgres))
            give_up = asyncio.get_running_loop().time() + WAIT_S
            while not await _waiting_for_the_lock(holder):
                assert not upgrade.done(), upgrade
                if asyncio.get_running_loop().time() > give_up:
                    pytest.fail(f"no upgrade waited for the migration lock within {WAIT_S}s")
                await asyncio.sleep(0.05)
            tables = await holder.run_sync(lambda c: set(inspect(c).get_table_names()))
            assert tables == set()
            await holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
            await holder.commit()
            await asyncio.wait_for(upgrade, WAIT_S)
    finally:
        await engine.dispose()
    versions, tables = await _schema(empty_postgres)
    assert len(versions) == 1 and "leases" in tables


async def _waiting_for_the_lock(connection: AsyncConnection) -> bool:
    found = await connection.execute(
        text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND pid <> pg_backend_pid()"
        )
    )
    await connection.commit()
    return bool(found.scalar())
