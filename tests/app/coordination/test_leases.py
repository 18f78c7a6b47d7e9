"""Leases on SQLite and PostgreSQL: claim, renew, expiry on the database's clock, fencing,
release, holders racing for the same leases, and the local deadline that stops a holder
cut off from the database before its leases can expire for anyone else."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from app.coordination.leases import (
    LEASES,
    Lease,
    LeaseEvent,
    LeaseHolder,
    LeaseKey,
    LeaseLost,
    _db_now,
    fence,
)
from app.core.clock import ManualClock, SystemClock
from app.core.db import Database, GateVersionRow
from app.observability import metrics
from tests.conftest import T0

TTL = timedelta(seconds=15)
WAIT_S = 10.0  # bound of every poll of the database's clock


class FakeMonotonic:
    """A monotonic clock a test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def following(clock: ManualClock) -> Callable[[], float]:
    """A monotonic clock that moves with ``clock``."""
    return lambda: (clock.now() - T0).total_seconds()


def metric(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def open_db(database_url: str) -> AsyncIterator[Callable[[], Database]]:
    """Databases on the same url, one per holder (each its own pool), disposed after."""
    opened: list[Database] = []

    def make() -> Database:
        db = Database(database_url)
        opened.append(db)
        return db

    yield make
    for db in opened:
        await db.dispose()


def holder(db: Database, owner: str, ttl: timedelta = TTL, **kwargs: Any) -> LeaseHolder:
    kwargs.setdefault("clock", SystemClock())
    return LeaseHolder(db, owner=owner, ttl=ttl, **kwargs)


async def stored(db: Database, kind: str = "gate") -> dict[str, tuple[str | None, int, bool]]:
    """Each lease of ``kind``: owner, epoch, and whether it holds by the database's clock."""
    dialect = db.engine.dialect.name
    holds = LEASES.c.expires_at > _db_now(dialect)
    async with db.session() as session:
        rows = (
            await session.execute(
                select(LEASES.c.id, LEASES.c.owner, LEASES.c.epoch, holds).where(
                    LEASES.c.kind == kind
                )
            )
        ).all()
    return {id: (owner, epoch, bool(live)) for id, owner, epoch, live in rows}


async def until_expired_by_the_database(db: Database, kind: str, id: str) -> None:
    """Poll the database's own clock, bounded, until the lease has expired there."""
    give_up = time.monotonic() + WAIT_S
    while (await stored(db, kind))[id][2]:
        if time.monotonic() > give_up:
            pytest.fail(f"lease {kind} {id} did not expire by the database clock in {WAIT_S}s")
        await asyncio.sleep(0.05)


def statements(db: Database) -> list[str]:
    """Every statement sent on ``db`` from now on."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    return seen


async def test_claim_inserts_new_ids_and_wins_free_leases_up_to_the_limit(
    open_db: Callable[[], Database],
) -> None:
    a, b = holder(open_db(), "a"), holder(open_db(), "b")
    won_a = await a.claim("gate", ["g1", "g2", "g3"], limit=2)
    assert len(won_a) == 2 and all(lease.epoch == 1 for lease in won_a)
    won_b = await b.claim("gate", ["g1", "g2", "g3"], limit=2)
    assert [lease.id for lease in won_b] == sorted({"g1", "g2", "g3"} - {x.id for x in won_a})
    assert await b.claim("gate", ["g1", "g2", "g3"]) == []  # nothing free is left
    rows = await stored(a._db)
    assert {id: owner for id, (owner, _, _) in rows.items()} == {
        **{lease.id: "a" for lease in won_a},
        **{lease.id: "b" for lease in won_b},
    }
    assert all(live for _, _, live in rows.values())
    assert all(a.still_mine("gate", lease.id) for lease in won_a)
    assert not a.still_mine("gate", won_b[0].id)
    assert await stored(a._db, "check") == {}  # kinds are apart


async def test_claim_without_candidates_takes_any_free_lease_of_its_kind(
    open_db: Callable[[], Database],
) -> None:
    a, b = holder(open_db(), "a"), holder(open_db(), "b")
    await a.claim("gate", ["g1", "g2"])
    await a.claim("check", ["c1"])
    await a.release()
    won = await b.claim("gate")
    assert sorted(lease.id for lease in won) == ["g1", "g2"]
    assert [lease.epoch for lease in won] == [2, 2]  # a new tenure: a new epoch
    assert (await stored(b._db, "check"))["c1"][0] == "a"  # released, not claimed


async def test_renew_is_one_statement_and_extends_every_lease_on_the_database_clock(
    open_db: Callable[[], Database],
) -> None:
    db = open_db()
    a = holder(db, "a")
    await a.claim("gate", ["g1", "g2"])
    await a.claim("check", ["c1"])
    before = {lease.key: lease.expires_at for lease in a.held()}
    sent = statements(db)
    held = await a.renew()
    assert len(sent) == 1 and sent[0].lstrip().upper().startswith("UPDATE LEASES")
    assert held == {LeaseKey("gate", "g1"), LeaseKey("gate", "g2"), LeaseKey("check", "c1")}
    after = {lease.key: lease.expires_at for lease in a.held()}
    assert all(after[key] is not None and after[key] >= before[key] for key in before)  # type: ignore[operator]


async def test_an_expired_lease_is_taken_over_with_a_newer_epoch_and_its_old_holder_loses_it(
    open_db: Callable[[], Database],
) -> None:
    a = holder(open_db(), "a", ttl=timedelta(seconds=1))
    b = holder(open_db(), "b")
    events: list[LeaseEvent] = []
    a.subscribe(events.append)
    [first] = await a.claim("gate", ["g1"])
    assert await b.claim("gate", ["g1"]) == []  # held: not free for b
    takeovers = metric("gonogo_lease_takeovers_total", kind="gate")

    await until_expired_by_the_database(a._db, "gate", "g1")
    [second] = await b.claim("gate", ["g1"])
    assert (second.owner, second.epoch) == ("b", first.epoch + 1)
    assert metric("gonogo_lease_takeovers_total", kind="gate") == takeovers + 1
    assert await a.renew() == set()
    assert [(e.change, e.lease.epoch) for e in events] == [("won", 1), ("lost", 1)]
    assert not a.still_mine("gate", "g1")
    assert (await stored(b._db))["g1"] == ("b", 2, True)


async def test_a_write_fenced_by_a_stale_epoch_is_refused_and_writes_nothing(
    open_db: Callable[[], Database],
) -> None:
    a = holder(open_db(), "a", ttl=timedelta(seconds=1))
    b = holder(open_db(), "b")
    [old] = await a.claim("gate", ["g1"])
    await until_expired_by_the_database(a._db, "gate", "g1")
    [new] = await b.claim("gate", ["g1"])

    def row(version: str) -> GateVersionRow:
        return GateVersionRow(gate="g1", version=version, text="x", created_at=datetime.now(UTC))

    with pytest.raises(LeaseLost, match="epoch 1 lost"):
        async with a._db.session() as session:
            await fence(session, old)  # a's own view: its lease, epoch 1
            session.add(row("stale"))
    with pytest.raises(LeaseLost):
        async with a._db.session() as session:
            session.add(row("stale-local"))
            await a.fence(session, "gate", "g1")  # refused without asking the database
    async with b._db.session() as session:
        assert await b.fence(session, "gate", "g1") == new
        session.add(row("fresh"))
    async with b._db.session() as session:
        versions = (await session.execute(select(GateVersionRow.version))).scalars().all()
    assert versions == ["fresh"]

    # An expired lease that nobody took yet also refuses its old holder's writes.
    c = holder(open_db(), "c", ttl=timedelta(seconds=1))
    [lease] = await c.claim("gate", ["g2"])
    await until_expired_by_the_database(c._db, "gate", "g2")
    with pytest.raises(LeaseLost):
        async with c._db.session() as session:
            await fence(session, lease)
    # Claimed again by the same replica, the old tenure's writes are still refused.
    [again] = await c.claim("gate", ["g2"])
    assert again.epoch == lease.epoch + 1
    with pytest.raises(LeaseLost):
        async with c._db.session() as session:
            await fence(session, lease)
            session.add(row("old-tenure"))
    async with c._db.session() as session:
        versions = (await session.execute(select(GateVersionRow.version))).scalars().all()
    assert versions == ["fresh"]


# Row locks are PostgreSQL's; on SQLite the fence holds the one write lock instead.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_fenced_transaction_keeps_others_from_claiming_but_not_its_holder_renewing(
    open_db: Callable[[], Database],
) -> None:
    db_a = open_db()
    a = holder(db_a, "a", ttl=timedelta(seconds=1))
    b = holder(open_db(), "b")
    [lease] = await a.claim("gate", ["g1"])
    async with db_a.session() as session:
        await fence(session, lease)
        assert await asyncio.wait_for(a.renew(), WAIT_S) == {lease.key}
        await until_expired_by_the_database(b._db, "gate", "g1")
        assert await b.claim("gate", ["g1"]) == []  # locked by the fence: skipped
        session.add(GateVersionRow(gate="g1", version="v", text="x", created_at=datetime.now(UTC)))
    [taken] = await b.claim("gate", ["g1"])
    assert taken.epoch == lease.epoch + 1


async def test_release_frees_leases_at_once_and_is_no_takeover(
    open_db: Callable[[], Database],
) -> None:
    a, b = holder(open_db(), "a"), holder(open_db(), "b")
    await a.claim("gate", ["g1", "g2", "g3"])
    await a.release([LeaseKey("gate", "g1")])
    assert not a.still_mine("gate", "g1") and a.still_mine("gate", "g2")
    takeovers = metric("gonogo_lease_takeovers_total", kind="gate")
    assert [lease.id for lease in await b.claim("gate", ["g1", "g2", "g3"])] == ["g1"]

    sent = statements(a._db)
    await a.release()
    assert len(sent) == 1
    assert a.held() == []
    assert sorted(lease.id for lease in await b.claim("gate", ["g1", "g2", "g3"])) == ["g2", "g3"]
    assert metric("gonogo_lease_takeovers_total", kind="gate") == takeovers
    assert {owner for owner, _, _ in (await stored(b._db)).values()} == {"b"}


ROUNDS = 25
IDS = [f"g{n:02d}" for n in range(20)]


async def test_two_holders_racing_for_the_same_leases_each_lease_is_won_by_exactly_one(
    open_db: Callable[[], Database],
) -> None:
    a, b = holder(open_db(), "a"), holder(open_db(), "b")
    # Open each pool's connection first: two SQLite connections opening at the same
    # instant can collide on their start-up pragmas, which is not what this test is about.
    for db in (a._db, b._db):
        async with db.session() as session:
            await session.execute(select(1))
    for round in range(ROUNDS):
        candidates = None if round % 3 == 2 else IDS  # also "any free lease"
        limit = None if round % 2 else 15
        won_a, won_b = await asyncio.gather(
            a.claim("gate", candidates, limit), b.claim("gate", candidates, limit)
        )
        ids_a, ids_b = {x.id for x in won_a}, {x.id for x in won_b}
        assert ids_a.isdisjoint(ids_b), f"round {round}: both won {ids_a & ids_b}"
        assert ids_a | ids_b == set(IDS), f"round {round}"
        owners = {id: owner for id, (owner, _, _) in (await stored(a._db)).items()}
        assert owners == {**dict.fromkeys(ids_a, "a"), **dict.fromkeys(ids_b, "b")}
        await asyncio.gather(a.release(), b.release())


async def test_the_local_deadline_counts_from_before_the_renewal_was_sent(
    open_db: Callable[[], Database],
) -> None:
    """A slow renewal shortens the time the holder may act: the deadline is the instant the
    statement was sent plus the TTL minus the margin, not the instant its answer came."""
    db = open_db()
    monotonic = FakeMonotonic()
    a = holder(db, "a", monotonic=monotonic, margin=timedelta(seconds=3))
    await a.claim("gate", ["g1"])
    assert a.deadline("gate", "g1") == monotonic.t + 12

    def slow(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE LEASES SET EXPIRES_AT"):
            monotonic.t += 2.0  # the answer takes 2 s

    event.listen(db.engine.sync_engine, "before_cursor_execute", slow)
    monotonic.t += 5
    sent_at = monotonic.t
    assert await a.renew() == {LeaseKey("gate", "g1")}
    assert a.deadline("gate", "g1") == sent_at + 12
    monotonic.t = sent_at + 11.999
    assert a.still_mine("gate", "g1")
    monotonic.t = sent_at + 12
    assert not a.still_mine("gate", "g1")
    assert a.held() == []
    with pytest.raises(LeaseLost):
        async with db.session() as session:
            await a.fence(session, "gate", "g1")
    # It stopped by itself while the database still has the lease as its own.
    assert (await stored(db))["g1"] == ("a", 1, True)


async def test_a_claim_answered_after_its_own_deadline_is_given_back(
    open_db: Callable[[], Database],
) -> None:
    db = open_db()
    monotonic = FakeMonotonic()
    a = holder(db, "a", monotonic=monotonic)

    def slow(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "picked" in statement:
            monotonic.t += TTL.total_seconds()  # the answer took a whole TTL

    event.listen(db.engine.sync_engine, "before_cursor_execute", slow)
    assert await a.claim("gate", ["g1"]) == []
    assert a.held() == []
    event.remove(db.engine.sync_engine, "before_cursor_execute", slow)
    b = holder(open_db(), "b")
    assert [lease.epoch for lease in await b.claim("gate", ["g1"])] == [2]  # free at once


async def _until(condition: Callable[[], bool], what: str) -> None:
    give_up = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > give_up:
            pytest.fail(f"{what}: not within {WAIT_S}s")
        await asyncio.sleep(0.005)


async def test_a_holder_whose_renewals_fail_stops_before_its_leases_can_expire(
    open_db: Callable[[], Database],
) -> None:
    db = open_db()
    clock = ManualClock(T0)
    a = holder(db, "a", clock=clock, monotonic=following(clock), margin=timedelta(seconds=3))
    lost_at: list[float] = []
    a.subscribe(lambda e: lost_at.append(following(clock)()) if e.change == "lost" else None)
    await a.claim("gate", ["g1", "g2"])
    failures = metric("gonogo_lease_renew_failures_total")

    def refuse(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            raise ConnectionResetError("the database went away")

    event.listen(db.engine.sync_engine, "before_cursor_execute", refuse)
    a.start()
    try:
        for step, renewals in ((0.0, 1), (5.0, 2), (5.0, 3), (1.999, 3)):
            await clock.advance(step)
            await _until(
                lambda n=renewals: metric("gonogo_lease_renew_failures_total") == failures + n,
                f"renewal failure {renewals}",
            )
            await _until(lambda: clock.sleepers == 1, "the loop asleep")
            assert a.still_mine("gate", "g1") and lost_at == []
        await clock.advance(0.001)  # t = 12 s = TTL - margin: the local deadline
        await _until(lambda: len(lost_at) == 2, "both leases announced lost")
        assert lost_at == [12.0, 12.0]
        assert not a.still_mine("gate", "g1") and not a.still_mine("gate", "g2")
        # By the database's clock the leases still hold: it stopped before they expired.
        event.remove(db.engine.sync_engine, "before_cursor_execute", refuse)
        assert all(live for _, _, live in (await stored(db)).values())
    finally:
        await a.stop(release=False)


async def test_the_loop_claims_what_it_wants_renews_and_releases_at_a_graceful_stop(
    open_db: Callable[[], Database],
) -> None:
    clock = ManualClock(T0)
    db = open_db()
    a = holder(db, "a", clock=clock, monotonic=following(clock))
    events: list[LeaseEvent] = []
    a.subscribe(events.append)
    wanted = ["g1", "g2", "g3"]
    a.want("gate", lambda: wanted, limit=2)
    a.start()
    try:
        await _until(lambda: len(a.held("gate")) == 2, "two leases claimed")
        before = {lease.id: lease.expires_at for lease in a.held()}
        await _until(lambda: clock.sleepers == 1, "the loop asleep")
        await clock.advance(5)  # one renewal period (TTL / 3)
        await _until(
            lambda: all(
                (x.expires_at or T0) > (before[x.id] or T0) for x in a.held() if x.id in before
            ),
            "renewed",
        )
        # The third is still wanted and still free: the next pass takes it.
        await _until(lambda: len(a.held("gate")) == 3, "the third claimed")
        assert metric("gonogo_gates_owned") == 3
    finally:
        await a.stop()
    assert [e.change for e in events] == ["won"] * 3 + ["lost"] * 3
    assert all(not live for _, _, live in (await stored(db)).values())
    b = holder(open_db(), "b")
    assert len(await b.claim("gate", wanted)) == 3  # at once, without waiting for expiry


def test_a_lease_names_its_tenure() -> None:
    lease = Lease("gate", "g1", "a", 3)
    assert lease.key == LeaseKey("gate", "g1")
    assert "epoch 3" in str(LeaseLost(lease, "expired"))


class SlowToCancelClock(ManualClock):
    """A clock whose sleepers, when cancelled, take until ``let_go`` is set to end."""

    def __init__(self) -> None:
        super().__init__(T0)
        self.cancelled = asyncio.Event()
        self.let_go = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        try:
            await super().sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled.set()
            await self.let_go.wait()
            raise


async def test_stopping_the_loop_while_it_puts_a_sleeper_away_still_stops_it(
    tmp_path: Path,
) -> None:
    """The loop cancels its sleeper when a step ends; a stop arriving just then must end
    the loop, not be taken for the sleeper's own cancellation and swallowed."""
    clock = SlowToCancelClock()
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}")
    a = holder(db, "a", clock=clock, monotonic=following(clock))
    step_done = asyncio.Event()

    async def step() -> None:
        await step_done.wait()

    work = asyncio.create_task(step())
    sleeping = asyncio.create_task(a._sleep_or(work, 100.0))
    await asyncio.sleep(0)
    step_done.set()
    await asyncio.wait_for(clock.cancelled.wait(), WAIT_S)  # putting the sleeper away
    sleeping.cancel()  # stop() arrives now
    clock.let_go.set()
    await asyncio.wait({sleeping}, timeout=WAIT_S)
    assert sleeping.cancelled()
    await db.dispose()
