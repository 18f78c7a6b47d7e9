"""The gate-versions migration upgrades and downgrades on SQLite and PostgreSQL, keeps the
rows already stored, and leaves a schema that matches the models (``alembic check``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import bindparam, inspect, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.db import UtcDateTime
from app.core.migrate import alembic_config, upgrade_database

INITIAL = "c5478c893a96"
GATE_VERSIONS = "5d1f0b7a93e2"


async def run(url: str, work: object) -> object:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.begin() as connection:
            return await connection.run_sync(work)  # type: ignore[arg-type]
    finally:
        await engine.dispose()


async def downgrade(url: str, revision: str) -> None:
    config = alembic_config(url)

    def down(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    await run(url, down)


async def alembic_check(url: str) -> None:
    """``alembic check``: raises when the models and the migrated schema differ."""
    config = alembic_config(url)

    def check(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.check(config)

    await run(url, check)


def schema(connection: Connection) -> dict[str, set[str]]:
    found = inspect(connection)
    return {t: {c["name"] for c in found.get_columns(t)} for t in found.get_table_names()}


@pytest.fixture
async def initial_database(database_url: str) -> str:
    """A database at the initial schema, with one check and one sample in it."""
    await downgrade(database_url, INITIAL)
    at = datetime(2026, 11, 24, 10, tzinfo=UTC)
    instant = bindparam("at", type_=UtcDateTime())

    def seed(connection: Connection) -> None:
        connection.execute(
            text(
                "INSERT INTO checks (id, gate, version, vars, metadata, state, verdict,"
                " deciding_samples, created_at, created_by, deadline, timeout_s)"
                " VALUES ('c1', 'portal', '1.0', '{}', '{}', 'running', '{}', '[]',"
                " :at, 'ci', :at, 60)"
            ).bindparams(instant),
            {"at": at},
        )
        connection.execute(
            text(
                "INSERT INTO samples (gate, check_id, evaluated_at, decision, body)"
                " VALUES ('portal', 'c1', :at, 'no_go', '{}')"
            ).bindparams(instant),
            {"at": at},
        )

    await run(database_url, seed)
    return database_url


async def test_the_migration_upgrades_and_downgrades(initial_database: str) -> None:
    url = initial_database
    before = await run(url, schema)
    assert isinstance(before, dict)
    assert "gate_versions" not in before
    assert "gate_version" not in before["checks"]

    await upgrade_database(url)
    after = await run(url, schema)
    assert isinstance(after, dict)
    assert after["gate_versions"] == {"gate", "version", "text", "created_at"}
    assert "gate_version" in after["checks"]
    assert "gate_version" in after["samples"]
    await alembic_check(url)

    def kept(connection: Connection) -> tuple[object, ...]:
        check = connection.execute(text("SELECT id, gate_version FROM checks")).one()
        sample = connection.execute(text("SELECT gate, gate_version FROM samples")).one()
        return (*check, *sample)

    # Rows from before keep their data; they have no version (such a check ends no_go).
    assert await run(url, kept) == ("c1", None, "portal", None)

    await downgrade(url, INITIAL)
    down = await run(url, schema)
    assert isinstance(down, dict)
    assert "gate_versions" not in down
    assert "gate_version" not in down["checks"]
    assert "gate_version" not in down["samples"]
    await upgrade_database(url, GATE_VERSIONS)
