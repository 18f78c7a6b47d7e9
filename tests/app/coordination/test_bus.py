"""The bus delivers at commit, never on rollback, to every replica; it refuses payloads
PostgreSQL would refuse; and it listens again after losing its connection."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text

from app.coordination.bus import MAX_PAYLOAD, Bus, PostgresBus, bus_for
from app.core.clock import SystemClock
from app.core.db import Database

pytestmark = pytest.mark.asyncio


class Inbox:
    def __init__(self) -> None:
        self.payloads: list[str] = []
        self._arrived = asyncio.Event()

    def __call__(self, payload: str) -> None:
        self.payloads.append(payload)
        self._arrived.set()

    async def wait_for(self, count: int, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while len(self.payloads) < count:
                self._arrived.clear()
                await self._arrived.wait()


async def _started(bus: Bus, inbox: Inbox, channel: str = "decisions") -> Bus:
    bus.subscribe(channel, inbox)
    await bus.start()
    async with asyncio.timeout(10):
        while not bus.listening:
            await asyncio.sleep(0.01)
    return bus


async def test_a_message_arrives_at_commit_and_never_on_rollback(database_url: str) -> None:
    db = Database(database_url)
    inbox = Inbox()
    bus = await _started(bus_for(db, clock=SystemClock()), inbox)
    try:
        with pytest.raises(RuntimeError):
            async with db.session() as session:
                await bus.publish(session, "decisions", "rolled-back")
                raise RuntimeError("the writer's fence refused")
        async with db.session() as session:
            await bus.publish(session, "decisions", "portal")
            await bus.publish(session, "other", "not for this inbox")
        await inbox.wait_for(1)
        # A rolled-back message can only have arrived before the committed one.
        assert inbox.payloads == ["portal"]
    finally:
        await bus.stop()
        await db.dispose()


async def test_a_payload_postgresql_would_refuse_is_refused_before_sending(
    database_url: str,
) -> None:
    db = Database(database_url)
    bus = bus_for(db, clock=SystemClock())
    try:
        async with db.session() as session:
            with pytest.raises(ValueError, match="send ids and read the rows"):
                await bus.publish(session, "decisions", "x" * (MAX_PAYLOAD + 1))
            with pytest.raises(ValueError, match="bad bus channel"):
                await bus.publish(session, "decisions; DROP", "x")
    finally:
        await db.dispose()


async def test_every_replica_hears_a_message(postgres_url: str) -> None:
    database_url = postgres_url
    dbs = [Database(database_url) for _ in range(3)]
    inboxes = [Inbox() for _ in dbs]
    buses = [
        await _started(bus_for(db, clock=SystemClock()), inbox)
        for db, inbox in zip(dbs, inboxes, strict=True)
    ]
    try:
        async with dbs[0].session() as session:
            await buses[0].publish(session, "decisions", "portal")
        for inbox in inboxes:
            await inbox.wait_for(1)
            assert inbox.payloads == ["portal"]
    finally:
        for bus in buses:
            await bus.stop()
        for db in dbs:
            await db.dispose()


async def test_a_lost_connection_is_listened_again_with_a_catch_up(postgres_url: str) -> None:
    database_url = postgres_url
    db = Database(database_url)
    inbox = Inbox()
    name = f"gonogo-bus-test-{uuid.uuid4().hex[:8]}"
    bus = PostgresBus(
        database_url,
        clock=SystemClock(),
        keepalive=0.1,
        first_backoff=0.05,
        application_name=name,
    )
    catch_ups = Inbox()
    bus.on_connected(lambda: catch_ups("caught up"))
    await _started(bus, inbox)
    try:
        await catch_ups.wait_for(1)
        async with db.session() as session:
            await session.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = :name"
                ),
                {"name": name},
            )
        await catch_ups.wait_for(2)
        assert bus.connections >= 2
        async with asyncio.timeout(10):
            while not bus.listening:
                await asyncio.sleep(0.01)
        async with db.session() as session:
            await bus.publish(session, "decisions", "after the reconnect")
        await inbox.wait_for(1)
        assert inbox.payloads == ["after the reconnect"]
    finally:
        await bus.stop()
        await db.dispose()
