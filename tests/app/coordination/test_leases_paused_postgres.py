"""A holder whose PostgreSQL stops answering (every server process SIGSTOPped: connections
hang, nothing is answered) announces its leases lost by its local deadline, before they
can expire in the database; once the database answers again another replica takes them
over with a newer epoch and the old holder's writes are refused.

The cluster is the throwaway one of ``tests/app/test_database_faults.py``; the clocks are
real here, since the database's timeouts are real time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy.exc import DBAPIError

from app.coordination.leases import LeaseHolder, LeaseLost, fence
from app.core import db as db_module
from app.core.clock import SystemClock
from app.core.db import Database
from app.core.migrate import upgrade_database
from tests.app.coordination.test_leases import stored, until_expired_by_the_database
from tests.app.test_database_faults import Cluster

pytestmark = pytest.mark.postgres

TTL = timedelta(seconds=3)
MARGIN_S = TTL.total_seconds() * 0.2
LOST_WITHIN_S = 10.0


@pytest.fixture
async def databases(
    pg_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Database, Database]]:
    # Short timeouts, so calls to the stopped server fail within a second.
    for name in ("CONNECT_TIMEOUT_S", "COMMAND_TIMEOUT_S", "POOL_TIMEOUT_S"):
        monkeypatch.setattr(db_module, name, 1.0)
    await upgrade_database(pg_cluster.url)
    first, second = Database(pg_cluster.url), Database(pg_cluster.url)
    try:
        yield first, second
    finally:
        await first.dispose()
        await second.dispose()


async def test_a_holder_cut_off_by_a_paused_postgresql_stops_before_its_lease_expires(
    databases: tuple[Database, Database], pg_cluster: Cluster
) -> None:
    db_a, db_b = databases
    a = LeaseHolder(db_a, owner="a", ttl=TTL, clock=SystemClock())
    lost = asyncio.Event()
    lost_at: list[float] = []

    def on_change(event: object) -> None:
        if getattr(event, "change", "") == "lost":
            lost_at.append(time.monotonic())
            lost.set()

    a.subscribe(on_change)
    [old] = await a.claim("gate", ["g1"])
    a.start()
    try:
        pg_cluster.freeze()
        try:
            deadline = a.deadline("gate", "g1")  # no renewal can succeed from here on
            assert deadline is not None
            await asyncio.wait_for(lost.wait(), LOST_WITHIN_S)
            # Announced at its local deadline, before the database could expire it
            # (at least ``MARGIN_S`` later, counted from the same renewal's start).
            assert deadline <= lost_at[0] < deadline + MARGIN_S
            assert not a.still_mine("gate", "g1")
        finally:
            pg_cluster.thaw()

        await until_expired_by_the_database(db_b, "gate", "g1")
        b = LeaseHolder(db_b, owner="b", ttl=TTL, clock=SystemClock())
        [new] = await b.claim("gate", ["g1"])
        assert new.epoch == old.epoch + 1
        with pytest.raises(LeaseLost):
            async with db_a.session() as session:
                await fence(session, old)
        assert (await stored(db_b))["g1"][:2] == ("b", new.epoch)
    finally:
        await a.stop(release=False)


async def test_a_fenced_transaction_left_open_does_not_block_the_takeover_for_long(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A holder paused between its fence and its commit (SIGSTOP, a long pause) leaves
    its transaction open, with the lease row locked: a claim skips locked rows, so no
    replica could take the lease over until the holder woke. PostgreSQL ends such a
    session after ``IDLE_IN_TRANSACTION_S``, and the lease can be taken again."""
    monkeypatch.setattr(db_module, "IDLE_IN_TRANSACTION_S", 1.0)
    short = timedelta(seconds=1)
    db_a, db_b = Database(postgres_url), Database(postgres_url)
    a = LeaseHolder(db_a, owner="a", ttl=short, clock=SystemClock(), margin=timedelta(0))
    b = LeaseHolder(db_b, owner="b", ttl=short, clock=SystemClock(), margin=timedelta(0))
    try:
        [old] = await a.claim("gate", ["g1"])
        paused = db_a.sessions()
        await fence(paused, old)  # the row is locked until this transaction ends
        await until_expired_by_the_database(db_b, "gate", "g1")
        started = time.monotonic()
        taken: list[object] = []
        while not taken:
            taken = list(await b.claim("gate", ["g1"]))
            assert time.monotonic() - started < 10.0, "the open transaction kept its lock"
            await asyncio.sleep(0.1)  # bounded poll: the server's timer ends the session
        [new] = taken
        assert getattr(new, "epoch", 0) == old.epoch + 1
        with pytest.raises(DBAPIError):  # its session was ended by the server
            await paused.commit()
        await paused.close()
    finally:
        await db_a.dispose()
        await db_b.dispose()
