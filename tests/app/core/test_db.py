"""The unit of work, ``Database.session``: its end survives a cancelled task."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from sqlalchemy import event, text

from app.core.db import Database, after_commit, on_rollback


async def test_a_task_cancelled_while_its_session_ends_returns_the_connection_cleanly(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A loop stopped at shutdown may be cancelled while its session hands the connection
    back; the pool's rollback must still run, not be cut off (which the pool logs as an
    error with a traceback, and which leaves the connection invalidated)."""
    db = Database(database_url)
    started = asyncio.Event()
    resets: list[bool] = []

    async def work() -> None:
        async with db.session() as session:
            await session.execute(text("SELECT 1"))
            started.set()
            await asyncio.Event().wait()  # cancelled here, inside the session

    task = asyncio.create_task(work())

    def cancel_once(_dbapi: Any, _record: Any, state: Any) -> None:
        resets.append(state.transaction_was_reset)
        task.cancel()  # a second cancel, delivered at the pool's own rollback

    await started.wait()
    event.listen(db.engine.sync_engine.pool, "reset", cancel_once)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.pool")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    event.remove(db.engine.sync_engine.pool, "reset", cancel_once)
    assert resets, "the connection was never handed back"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    async with db.session() as session:  # and the pool still serves
        assert (await session.execute(text("SELECT 1"))).scalar() == 1
    await db.dispose()


async def test_a_task_cancelled_while_its_commit_hands_the_connection_back_keeps_the_commit(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The retention sweep stopped at shutdown: the cancellation arrives after the
    database committed, while the pool resets the connection. The commit stands (its
    after-commit actions run, not the rollback ones), the connection is handed back
    cleanly, and the task still ends cancelled."""
    db = Database(database_url)
    hooks: list[str] = []

    async def work() -> None:
        async with db.session() as session:
            await session.execute(text("SELECT 1"))
            after_commit(session, lambda: hooks.append("committed"))
            on_rollback(session, lambda: hooks.append("rolled back"))

    task = asyncio.create_task(work())
    cancelled: list[bool] = []

    def cancel_once(_dbapi: Any, _record: Any, _state: Any) -> None:
        if not cancelled:
            cancelled.append(task.cancel())

    event.listen(db.engine.sync_engine.pool, "reset", cancel_once)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.pool")
    with pytest.raises(asyncio.CancelledError):
        await task
    event.remove(db.engine.sync_engine.pool, "reset", cancel_once)
    assert cancelled == [True]
    assert hooks == ["committed"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    await db.dispose()
