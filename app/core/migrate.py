"""Applying the Alembic migrations from code (``gonogo serve``, ``gonogo migrate``, tests).

On PostgreSQL the upgrade runs under a transaction-level advisory lock, so replicas
starting together migrate once: the first takes the lock and upgrades; the others wait
for its commit, then find the database at head and do nothing. SQLite serves one
process (``app/coordination/single_process.py``) and needs no lock.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import migrations

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent


# The advisory lock key every gonogo replica takes around its upgrade (any fixed 64-bit
# number no other application on the database uses; this one spells "gonogo_m").
MIGRATION_LOCK_KEY = 0x676F6E6F676F5F6D


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


async def upgrade_database(database_url: str, revision: str = "head") -> None:
    """Bring the database at ``database_url`` to ``revision`` (default: the newest)."""
    config = alembic_config(database_url)
    engine = create_async_engine(database_url, poolclass=pool.NullPool)

    def upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    try:
        async with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Held until this transaction (the whole upgrade) commits or rolls back.
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            await connection.run_sync(upgrade)
    finally:
        await engine.dispose()
