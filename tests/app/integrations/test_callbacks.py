"""The door outbox on its own: a claimed row is sent by one process only, a lapsed claim
is taken over, a running check's answer waits, and the backoff is bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import update

from app.core.clock import ManualClock
from app.core.db import (
    CALLBACK_DELIVERED,
    CALLBACK_WAITING,
    FINAL,
    RUNNING,
    CheckRow,
    Database,
    DoorCallbackRow,
)
from app.integrations.callbacks import (
    CLAIM_TTL_S,
    MAX_BACKOFF_S,
    CallbackOutbox,
    backoff,
    comment,
    enqueue,
)
from tests.conftest import T0


class SlowSender:
    """Records each send; holds every send until released, so two processes overlap."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.release = asyncio.Event()

    async def send(self, target: Mapping[str, Any], check: CheckRow, text: str) -> None:
        self.sent.append(check.id)
        await self.release.wait()

    async def aclose(self) -> None:
        return None


def _check(check_id: str, state: str) -> CheckRow:
    return CheckRow(
        id=check_id,
        gate="portal",
        version="1.4.3",
        environment="production",
        stage=None,
        vars={},
        meta={},
        state=state,
        decision="go" if state == FINAL else None,
        verdict={"decision": "go", "reasons": ["all criteria pass"]},
        deciding_samples=[],
        created_at=T0,
        created_by="github",
        deadline=T0 + timedelta(minutes=30),
        timeout_s=1800.0,
        decided_at=T0 if state == FINAL else None,
        decided_by="engine" if state == FINAL else None,
        gate_version="v1",
    )


async def _seed(db: Database, check_id: str, state: str) -> None:
    async with db.session() as session:
        session.add(_check(check_id, state))
        await session.flush()
        await enqueue(
            session,
            door="github",
            key=f"delivery-{check_id}",
            check_id=check_id,
            target={"callback_url": "x"},
            now=T0,
        )


async def _states(db: Database) -> list[str]:
    from sqlalchemy import select

    async with db.session() as session:
        return list((await session.scalars(select(DoorCallbackRow.state))).all())


async def test_two_processes_send_a_row_once(database_url: str) -> None:
    clock = ManualClock(T0)
    db = Database(database_url)
    try:
        await _seed(db, "c1", FINAL)
        sender_a, sender_b = SlowSender(), SlowSender()
        a = CallbackOutbox(db, clock=clock, senders={"github": sender_a}, public_url=None)
        b = CallbackOutbox(db, clock=clock, senders={"github": sender_b}, public_url=None)
        first = asyncio.ensure_future(a.run_due())
        while not sender_a.sent:  # a holds the claim and is sending
            await asyncio.sleep(0.01)
        await b.run_due()  # b finds the row claimed
        assert sender_b.sent == []
        sender_a.release.set()
        await first
        assert await _states(db) == [CALLBACK_DELIVERED]
    finally:
        await db.dispose()


async def test_a_lapsed_claim_is_taken_over(database_url: str) -> None:
    clock = ManualClock(T0)
    db = Database(database_url)
    try:
        await _seed(db, "c1", FINAL)
        async with db.session() as session:  # a process that died while sending
            await session.execute(
                update(DoorCallbackRow).values(
                    claimed_by="gone:1", claimed_until=T0 + timedelta(seconds=CLAIM_TTL_S)
                )
            )
        sender = SlowSender()
        sender.release.set()
        outbox = CallbackOutbox(db, clock=clock, senders={"github": sender}, public_url=None)
        assert await outbox.run_due() > 0  # no busy loop while another process holds it
        assert sender.sent == []
        await clock.advance(CLAIM_TTL_S + 1)
        await outbox.run_due()
        assert sender.sent == ["c1"]
        assert await _states(db) == [CALLBACK_DELIVERED]
    finally:
        await db.dispose()


async def test_a_running_checks_answer_waits(database_url: str) -> None:
    clock = ManualClock(T0)
    db = Database(database_url)
    try:
        await _seed(db, "c1", RUNNING)
        sender = SlowSender()
        sender.release.set()
        outbox = CallbackOutbox(db, clock=clock, senders={"github": sender}, public_url=None)
        await outbox.run_due()
        assert sender.sent == []
        assert await _states(db) == [CALLBACK_WAITING]
    finally:
        await db.dispose()


def test_the_backoff_doubles_up_to_its_bound() -> None:
    assert [backoff(n) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert backoff(30) == MAX_BACKOFF_S


def test_a_comment_is_bounded_and_keeps_its_link() -> None:
    check = _check("c1", FINAL)
    check.verdict = {"reasons": ["x" * 5000]}
    text = comment(check, public_url="https://gonogo.example.org")
    assert len(text) <= 1000
    assert text.endswith("https://gonogo.example.org/api/v1/checks/c1")
