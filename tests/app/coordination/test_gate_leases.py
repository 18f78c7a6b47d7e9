"""What the gate scheduler relies on from the lease holder: presence, shares, bounded stops."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from app.coordination.leases import LeaseHolder
from app.core.clock import SystemClock
from app.core.db import Database


async def test_a_graceful_stop_that_cannot_reach_the_database_does_not_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'gonogo.db'}")
    holder = LeaseHolder(db, owner="a", ttl=timedelta(seconds=0.3), clock=SystemClock())
    never = asyncio.Event()

    async def unanswered(*_args: Any, **_kwargs: Any) -> None:
        await never.wait()

    monkeypatch.setattr(holder, "release", unanswered)
    started = time.monotonic()
    await asyncio.wait_for(holder.stop(release=True), timeout=5)
    assert time.monotonic() - started < 1.0  # one renew period (0.1 s), not forever
    await db.dispose()


async def test_replicas_are_counted_from_presence_rows_and_a_release_ends_presence(
    database_url: str,
) -> None:
    dbs = [Database(database_url) for _ in range(3)]
    holders = [
        LeaseHolder(db, owner=f"r{i}", ttl=timedelta(seconds=30), clock=SystemClock())
        for i, db in enumerate(dbs)
    ]
    try:
        for holder in holders:
            holder.want("gate", candidates=lambda: [f"g{i}" for i in range(6)], limit=lambda: 2)
        for holder in holders:
            await holder.step()
        assert [h.replicas for h in holders] == [1, 2, 3]  # each counts those before it
        await holders[0].step()
        assert holders[0].replicas == 3  # a replica holding nothing yet is counted too
        assert sorted(len(h.held("gate")) for h in holders) == [2, 2, 2]
        assert all(lease.kind == "gate" for h in holders for lease in h.held())

        await holders[2].stop(release=True)
        assert await holders[0].announce() == 2

        # A negative limit gives that many leases back.
        holders[1].want("gate", candidates=lambda: [f"g{i}" for i in range(6)], limit=lambda: -1)
        await holders[1].step()
        assert len(holders[1].held("gate")) == 1
    finally:
        for holder, db in zip(holders, dbs, strict=True):
            await holder.stop(release=False)
            await db.dispose()
