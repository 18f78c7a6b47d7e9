"""Running checks on leases, with two or three ``CheckRunner``s sharing one database (on
SQLite and PostgreSQL): each check is sampled by exactly one replica, a replica that
lost a check's lease writes nothing for it, another replica resumes the check with its
samples, sign-offs and long-polls work from any replica, and a graceful stop hands the
checks over at once.

Each replica has its own ``Database`` (its own pool), catalog and probes. On PostgreSQL
each has its own ``PostgresBus``; on SQLite they share one in-process bus, the way one
process's parts would. Lease loops are stepped by hand unless a test needs them running.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
from sqlalchemy import select

from app.checks import repository as repo
from app.checks import service as services
from app.checks.runner import CheckRunner
from app.checks.schemas import CheckRequest, SignoffRequest
from app.coordination.bus import Bus, LocalBus, PostgresBus
from app.coordination.leases import LeaseHolder
from app.core.auth import Principal
from app.core.clock import ManualClock, SystemClock
from app.core.db import Database, EventRow, SampleRow
from app.core.problems import Forbidden
from app.gates.catalog import GateCatalog
from app.observability import metrics
from app.observability.notify import Notifier
from tests.app.conftest import SIGNED
from tests.app.coordination.test_leases import FakeMonotonic, stored, until_expired_by_the_database
from tests.app.fakes import ProbeBench

PIPELINE = Principal(name="ci", role="pipeline")
APPROVER = Principal(name="alice", role="approver")
ADMIN = Principal(name="root", role="admin")
WAIT_S = 10.0  # bound of every poll for something another task does


async def until(
    condition: Callable[[], Awaitable[bool] | bool], *, seconds: float = WAIT_S
) -> None:
    """Poll a condition (database writes run in threads) with a bounded deadline."""
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {seconds}s")
        await asyncio.sleep(0.01)


class Monotonic(Protocol):
    def __call__(self) -> float: ...


@dataclass
class Replica:
    name: str
    db: Database
    catalog: GateCatalog
    bench: ProbeBench
    leases: LeaseHolder
    bus: Bus
    runner: CheckRunner
    monotonic: Monotonic
    clock: ManualClock
    probe_calls: dict[str, int] = field(default_factory=dict)

    def calls(self, probe: str) -> int:
        return sum(len(p.calls) for p in self.bench.built if p.name == probe)

    async def create(self, gate: str = "portal", key: str | None = None) -> dict[str, Any]:
        async with self.db.session() as session:
            body, _ = await services.create_check(
                session,
                self.catalog,
                self.runner,
                self.clock,
                gate_name=gate,
                request=CheckRequest(version="1.0"),
                idempotency_key=key,
                principal=PIPELINE,
            )
        return body

    async def sign(self, check_id: str, signoff: str, principal: Principal) -> None:
        async with self.db.session() as session:
            await services.add_signoff(
                session,
                self.catalog,
                self.runner,
                self.clock,
                check_id=check_id,
                request=SignoffRequest(signoff=signoff),
                principal=principal,
            )

    async def read(self, check_id: str) -> dict[str, Any]:
        async with self.db.session() as session:
            return await services.get_check(session, check_id, now=self.clock.now())


Factory = Callable[..., Awaitable[list[Replica]]]


@pytest.fixture
async def replicas(
    database_url: str, gates_dir: Path, clock: ManualClock
) -> AsyncIterator[Factory]:
    made: list[Replica] = []
    buses: list[Bus] = []
    postgres = database_url.startswith("postgresql")

    async def make(
        count: int,
        *,
        ttl: timedelta = timedelta(seconds=15),
        real_time: bool = False,
        deaf: frozenset[int] = frozenset(),
    ) -> list[Replica]:
        """``count`` replicas; those in ``deaf`` get a bus that never listens."""
        shared = LocalBus()
        group: list[Replica] = []
        for index in range(count):
            name = "abc"[index]
            db = Database(database_url)
            bench = ProbeBench()
            catalog = GateCatalog(gates_dir=gates_dir, probe_builder=bench)
            catalog.load_files()
            monotonic: Monotonic = time.monotonic if real_time else FakeMonotonic()
            leases = LeaseHolder(db, owner=name, ttl=ttl, clock=SystemClock(), monotonic=monotonic)
            if index in deaf:
                bus = LocalBus()  # never started: it hears nothing
            elif postgres:
                bus = PostgresBus(database_url, clock=SystemClock())
            else:
                bus = shared
            runner = CheckRunner(
                db, catalog, notifier=Notifier(clock=clock), clock=clock, leases=leases, bus=bus
            )
            group.append(Replica(name, db, catalog, bench, leases, bus, runner, monotonic, clock))
        hearing = [r.bus for i, r in enumerate(group) if i not in deaf]
        for bus in {id(b): b for b in hearing}.values():
            buses.append(bus)
            await bus.start()
        await until(lambda: all(bus.listening for bus in hearing))
        for replica in group:
            await replica.runner.start()
        made.extend(group)
        return group

    yield make
    for replica in made:
        await replica.runner.stop()
        await replica.leases.stop(release=False)
    for bus in buses:
        await bus.stop()
    for replica in made:
        await replica.catalog.aclose()
        await replica.db.dispose()


async def owner_of(group: list[Replica], check_id: str) -> Replica:
    """The one replica running the check (waits until one does)."""
    await until(lambda: any(r.runner.is_running(check_id) for r in group))
    owners = [r for r in group if r.runner.is_running(check_id)]
    assert len(owners) == 1, [r.name for r in owners]
    return owners[0]


async def sample_rows(db: Database, check_id: str) -> list[SampleRow]:
    async with db.session() as session:
        return list(
            await session.scalars(
                select(SampleRow).where(SampleRow.check_id == check_id).order_by(SampleRow.id)
            )
        )


async def event_kinds(db: Database, check_id: str) -> list[str]:
    async with db.session() as session:
        found = await session.scalars(
            select(EventRow.kind).where(EventRow.check_id == check_id).order_by(EventRow.id)
        )
        return list(found)


async def has_samples(db: Database, check_id: str, count: int) -> bool:
    return len(await sample_rows(db, check_id)) >= count


async def final_state(replica: Replica, check_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {}

    async def ended() -> bool:
        body.update(await replica.read(check_id))
        return body["state"] != "running"

    await until(ended)
    return body


async def test_a_check_is_sampled_by_exactly_one_of_two_replicas(
    replicas: Factory, clock: ManualClock
) -> None:
    group = await replicas(2)
    for replica in group:
        replica.bench.latest("p").answer = 0.97  # below go, above rollback: it keeps going
    check = (await group[1].create())["id"]
    owner = await owner_of(group, check)
    await until(lambda: has_samples(owner.db, check, 1))
    for tick in range(2, 5):
        for replica in group:
            await replica.leases.step()  # the other's claim finds the lease held
        await until(lambda: clock.sleepers >= 1)
        await clock.advance(10)
        await until(lambda n=tick: has_samples(owner.db, check, n))  # type: ignore[misc]
    await owner_of(group, check)  # still the same single owner
    others = [r for r in group if r is not owner]
    assert (owner.calls("p"), [r.calls("p") for r in others]) == (4, [0])

    # A replica starting while the check runs claims it only if its lease is free.
    late = (await replicas(1))[0]
    await late.leases.step()
    await until(lambda: clock.sleepers >= 1)
    await clock.advance(10)
    await until(lambda: has_samples(owner.db, check, 5))
    assert (owner.calls("p"), late.calls("p")) == (5, 0)
    assert not late.runner.is_running(check)
    assert len(await sample_rows(owner.db, check)) == 5


async def test_a_paused_owner_is_taken_over_and_its_late_write_is_refused(
    replicas: Factory, clock: ManualClock
) -> None:
    """The owner stops renewing (its monotonic clock stands still, as under SIGSTOP) and
    its lease expires in the database; the other replica resumes the check with the
    sample it already had. The paused owner then wakes and samples, believing its lease
    still holds: its fenced write is refused, so the check ends once, on the new owner."""
    group = await replicas(2, ttl=timedelta(seconds=3))
    check = (await group[0].create())["id"]  # portal: interval 10s, steady_for 2
    owner = await owner_of(group, check)
    other = next(r for r in group if r is not owner)
    await until(lambda: has_samples(owner.db, check, 1))  # t=0, by the owner
    first = (await sample_rows(owner.db, check))[0].id

    await until_expired_by_the_database(other.db, "check", check)
    other.bench.latest("p").hang()  # the new owner's first sample waits (see below)
    await other.leases.step()
    await until(lambda: other.runner.is_running(check))
    assert owner.runner.is_running(check)  # the paused owner has not noticed anything

    await until(lambda: clock.sleepers >= 2)  # both loops wait for t=10
    await clock.advance(10)
    # The old owner samples (a go: its second passing sample) and tries to write it.
    await until(lambda: not owner.runner.is_running(check))
    assert owner.calls("p") == 2
    assert [s.id for s in await sample_rows(owner.db, check)] == [first]

    other.bench.latest("p").release()
    final = await final_state(other, check)
    assert final["decision"] == "go" and final["decided_by"] == "engine"
    rows = await sample_rows(other.db, check)
    assert len(rows) == 2 and rows[0].id == first
    assert final["deciding_samples"] == [first, rows[1].id]  # the prior sample counted
    kinds = await event_kinds(other.db, check)
    assert kinds.count("final") == 1 and kinds.count("sample") == 2


async def test_a_lost_lease_stops_the_checks_loop_at_once(replicas: Factory) -> None:
    group = await replicas(2)
    check = (await group[0].create())["id"]
    owner = await owner_of(group, check)
    await until(lambda: has_samples(owner.db, check, 1))
    assert metrics.REGISTRY.get_sample_value("gonogo_checks_running", {"gate": "portal"}) == 1
    task = owner.runner._runs[check].task
    assert isinstance(owner.monotonic, FakeMonotonic)
    owner.monotonic.t += 15  # its local deadline passes: it must stop acting
    owner.leases.expire_local()
    assert not owner.runner.is_running(check)
    await until(lambda: task is not None and task.done())
    assert metrics.REGISTRY.get_sample_value("gonogo_checks_running", {"gate": "portal"}) == 0


async def test_a_signoff_through_another_replica_reaches_the_owner_which_decides_go(
    replicas: Factory,
) -> None:
    group = await replicas(2)
    check = (await group[0].create("signed"))["id"]  # steady_for 1, needs uat and cso
    owner = await owner_of(group, check)
    other = next(r for r in group if r is not owner)
    await until(lambda: has_samples(owner.db, check, 1))  # t=0: passing, not signed off
    assert (await owner.read(check))["state"] == "running"

    await other.sign(check, "uat", APPROVER)
    await other.sign(check, "cso", ADMIN)
    # No clock advance: only the owner hearing of the sign-offs can decide now.
    final = await final_state(other, check)
    assert final["decision"] == "go" and final["decided_by"] == "engine"
    assert not owner.runner.is_running(check) and not other.runner.is_running(check)
    assert (await event_kinds(owner.db, check)).count("final") == 1

    async def released() -> bool:  # the ended check's lease is given back
        return not (await stored(owner.db, "check"))[check][2]

    await until(released)
    assert owner.leases.held("check") == []


async def test_a_long_poll_on_a_third_replica_returns_when_the_check_ends_on_its_owner(
    replicas: Factory, clock: ManualClock
) -> None:
    group = await replicas(3)
    check = (await group[0].create())["id"]
    owner = await owner_of(group, check)
    waiter = next(r for r in group if r is not owner)
    await until(lambda: has_samples(owner.db, check, 1))
    started = clock.now()
    poll = asyncio.create_task(waiter.runner.wait_final(check, 50))
    await until(lambda: check in waiter.runner._watchers)
    await asyncio.sleep(0.05)
    assert not poll.done()  # the check runs elsewhere: the waiter keeps waiting

    await until(lambda: clock.sleepers >= 1)
    await clock.advance(10)  # the owner's second sample: go
    await asyncio.wait_for(poll, WAIT_S)
    assert clock.now() - started == timedelta(seconds=10)  # well before its 50s bound
    body = await waiter.read(check)
    assert body["state"] == "final" and body["decision"] == "go"


async def test_a_long_poll_whose_bus_cannot_listen_re_reads_every_couple_of_seconds(
    replicas: Factory, clock: ManualClock
) -> None:
    group = await replicas(2, deaf=frozenset({1}))
    owner, waiter = group  # the deaf replica never hears of the check, so never claims it
    check = (await owner.create())["id"]
    assert await owner_of(group, check) is owner
    assert not waiter.bus.listening
    await until(lambda: has_samples(owner.db, check, 1))
    poll = asyncio.create_task(waiter.runner.wait_final(check, 50))
    await until(lambda: clock.sleepers >= 2)  # the owner's loop and the waiter's re-read
    await clock.advance(10)
    await final_state(owner, check)  # ended at t=10; the waiter heard nothing
    ended_at = clock.now()
    while not poll.done() and clock.now() - ended_at <= timedelta(seconds=4):
        await until(lambda: poll.done() or clock.sleepers >= 1)
        await clock.advance(0.5)
        await asyncio.sleep(0.05)  # the re-read runs in a thread
    await asyncio.wait_for(poll, WAIT_S)
    assert clock.now() - ended_at <= timedelta(seconds=4)  # not the 40s left of its bound


async def test_a_graceful_stop_releases_check_leases_and_another_replica_takes_over(
    replicas: Factory,
) -> None:
    ttl = timedelta(seconds=9)  # renew period 3s: a takeover by expiry takes > 6s
    group = await replicas(2, ttl=ttl, real_time=True)
    for replica in group:
        replica.bench.latest("p").answer = 0.97
        replica.leases.start()
    check = (await group[0].create())["id"]
    owner = await owner_of(group, check)
    other = next(r for r in group if r is not owner)
    await until(lambda: has_samples(owner.db, check, 1))

    stopped = time.monotonic()
    await owner.runner.stop()
    lease_owner, _, live = (await stored(owner.db, "check"))[check]
    assert not live or lease_owner == other.name  # released at once
    await until(lambda: other.runner.is_running(check), seconds=ttl.total_seconds())
    took = time.monotonic() - stopped
    assert took < ttl.total_seconds() / 3 + 1.5, f"takeover took {took:.1f}s"


async def test_one_idempotency_key_raced_on_two_replicas_gives_one_check(
    postgres_url: str, gates_dir: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two replicas (two ``Database``s) create a check with the same key at the same
    instant: both looked the key up and found nothing; the unique constraint lets one
    insert win, and the other answers as a retry with the same check."""
    real_add = repo.add_check
    both_looked = asyncio.Barrier(2)

    async def add_check(*args: Any, **kwargs: Any) -> None:
        await both_looked.wait()  # neither inserts before both have looked the key up
        await real_add(*args, **kwargs)

    monkeypatch.setattr(repo, "add_check", add_check)
    dbs = [Database(postgres_url), Database(postgres_url)]
    catalogs = [GateCatalog(gates_dir=gates_dir, probe_builder=ProbeBench()) for _ in dbs]
    runners = []
    try:
        for db, catalog in zip(dbs, catalogs, strict=True):
            catalog.load_files()
            runners.append(CheckRunner(db, catalog, notifier=Notifier(clock=clock), clock=clock))

        async def create(index: int) -> tuple[dict[str, Any], bool]:
            async with dbs[index].session() as session:
                return await services.create_check(
                    session,
                    catalogs[index],
                    runners[index],
                    clock,
                    gate_name="portal",
                    request=CheckRequest(version="1.0"),
                    idempotency_key="run-42",
                    principal=PIPELINE,
                )

        (first, made_first), (second, made_second) = await asyncio.wait_for(
            asyncio.gather(create(0), create(1)), WAIT_S
        )
        assert first["id"] == second["id"]
        assert sorted([made_first, made_second]) == [False, True]
        async with dbs[0].session() as session:
            rows = await repo.checks(session, gate="portal")
        assert [r.id for r in rows] == [first["id"]]
    finally:
        for db in dbs:
            await db.dispose()
        for catalog in catalogs:
            await catalog.aclose()


async def test_a_check_created_on_a_replica_is_held_by_it_from_the_commit(
    replicas: Factory,
) -> None:
    group = await replicas(2)
    check = (await group[1].create())["id"]
    assert group[1].runner.is_running(check)  # no claim round trip, no other owner
    assert not group[0].runner.is_running(check)
    lease_owner, epoch, live = (await stored(group[1].db, "check"))[check]
    assert (lease_owner, epoch, live) == ("b", 1, True)


async def test_a_lease_inserted_in_a_transaction_that_rolls_back_does_not_exist(
    replicas: Factory,
) -> None:
    (replica,) = await replicas(1)
    with pytest.raises(RuntimeError):
        async with replica.db.session() as session:
            await replica.leases.claim_new(session, "check", "never-committed")
            raise RuntimeError("the creating request failed")
    assert replica.leases.held("check") == []
    assert "never-committed" not in await stored(replica.db, "check")


async def test_a_signoff_on_a_replica_with_a_newer_gate_version_follows_the_pinned_one(
    replicas: Factory, gates_dir: Path
) -> None:
    """The replica receiving the sign-off does not run the check and has a newer version
    of the gate (no ``uat``, ``cso`` for approvers): the pinned version still says who
    must sign what."""
    group = await replicas(2)
    owner, other = group
    check = (await owner.create("signed"))["id"]
    await until(lambda: has_samples(owner.db, check, 1))
    pinned = (await owner.read(check))["gate_version"]
    lowered = SIGNED.replace(
        "  - {id: uat, description: UAT signed off, role: approver}\n", ""
    ).replace("role: admin", "role: approver")
    (gates_dir / "signed.yaml").write_text(lowered)
    assert list((await other.catalog.areload_files()).replaced) == ["signed"]

    with pytest.raises(Forbidden):
        await other.sign(check, "cso", APPROVER)
    await other.sign(check, "uat", APPROVER)
    await other.sign(check, "cso", ADMIN)
    final = await final_state(owner, check)
    assert final["decision"] == "go" and final["gate_version"] == pinned
    newer = other.catalog.get("signed")
    assert newer is not None and newer.version != pinned
