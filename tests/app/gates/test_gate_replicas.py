"""Several schedulers on one database, as several replicas would run them: each gate is
sampled by exactly one, a stopped or silent one's gates are taken over, a write fenced
off stores nothing, every replica answers every gate's decision from memory, and a
takeover alone announces nothing."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select

from app.coordination.bus import Bus, Connected, Handler, PostgresBus, _Handlers
from app.coordination.leases import LeaseHolder, _db_now
from app.core.clock import ManualClock
from app.core.db import Database, LeaseRow, SampleRow, after_commit
from app.gates.catalog import GateCatalog
from app.gates.samples import SampleStore
from app.gates.scheduler import GateScheduler, fair_share
from app.observability import metrics
from gates.engine import Decision
from tests.app.conftest import TOKENS, open_service
from tests.app.fakes import T0, ProbeBench, RecordingNotifier, gate_yaml

API_GATE = gate_yaml(interval="10s", steady_for=1)

INTERVAL = 30.0
# Leases expire on the database's clock, in real time, while these holders renew only
# when a test steps them: long enough that no lease lapses while a test runs, except for
# the replicas whose expiry a test waits for (SHORT_TTL).
TTL = timedelta(seconds=60)
SHORT_TTL = timedelta(seconds=3)
WAIT_S = 15.0


class FakeMonotonic:
    """A monotonic clock a test moves by hand (a replica's local lease deadlines)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Fanout:
    """In-process replicas on one SQLite file: a message published by any member reaches
    every member still listening, at commit (as ``PostgresBus`` does across processes)."""

    def __init__(self) -> None:
        self.members: list[Member] = []

    def member(self) -> Member:
        member = Member(self)
        self.members.append(member)
        return member


class Member:
    def __init__(self, fanout: Fanout) -> None:
        self._fanout = fanout
        self._handlers = _Handlers()
        self.listening = False

    async def publish(self, session: Any, channel: str, payload: str) -> None:
        def deliver() -> None:
            for member in self._fanout.members:
                if member.listening:
                    member._handlers.deliver(channel, payload)

        after_commit(session, deliver)

    def subscribe(self, channel: str, handler: Handler) -> Callable[[], None]:
        return self._handlers.subscribe(channel, handler)

    def on_connected(self, handler: Connected) -> None:
        self._handlers.connected.append(handler)

    async def start(self) -> None:
        self.listening = True
        await self._handlers.run_connected()

    async def stop(self) -> None:
        self.listening = False


@dataclass
class Replica:
    name: str
    db: Database
    bench: ProbeBench
    catalog: GateCatalog
    leases: LeaseHolder
    bus: Bus
    scheduler: GateScheduler
    notifier: RecordingNotifier
    monotonic: FakeMonotonic
    statements: list[str] = field(default_factory=list)

    def owned(self) -> set[str]:
        return set(self.scheduler.owned())

    def calls(self, gate: str) -> int:
        return sum(len(p.calls) for p in self.bench.built if p.name == f"p{gate}")


@dataclass
class Cluster:
    url: str
    clock: ManualClock
    replicas: list[Replica]
    gates: list[str]
    fanout: Fanout

    async def add(self, name: str, *, answer: float = 1.0, ttl: timedelta = TTL) -> Replica:
        db = Database(self.url)
        bench = ProbeBench()
        catalog = GateCatalog(gates_dir=None, probe_builder=bench, close_grace=0)
        for gate in self.gates:
            bench.answers[f"p{gate}"] = answer
            catalog.put_api_gate(gate, gate_yaml(steady_for=1, probe=f"p{gate}"))
        monotonic = FakeMonotonic()
        leases = LeaseHolder(db, owner=name, ttl=ttl, clock=self.clock, monotonic=monotonic)
        bus: Bus = (
            PostgresBus(self.url, clock=self.clock)
            if self.url.startswith("postgresql")
            else self.fanout.member()
        )
        store = SampleStore(db, clock=self.clock, retention=timedelta(days=1))
        notifier = RecordingNotifier(self.clock)
        scheduler = GateScheduler(
            catalog,
            notifier=notifier,
            sink=store,
            clock=self.clock,
            leases=leases,
            bus=bus,
            stored=store,
        )
        replica = Replica(name, db, bench, catalog, leases, bus, scheduler, notifier, monotonic)

        def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            replica.statements.append(statement)

        event.listen(db.engine.sync_engine, "before_cursor_execute", count)
        await bus.start()
        await until(lambda: bus.listening)
        await scheduler.start()
        self.replicas.append(replica)
        return replica

    async def step(self, *replicas: Replica) -> None:
        """One lease renewal and claim on each replica, one after the other."""
        for replica in replicas or self.replicas:
            await replica.leases.step()
        await self.loops_waiting()

    async def loops_waiting(self) -> None:
        """Wait until every running gate loop sleeps on the clock (its restore read done)."""

        def waiting() -> bool:
            loops = sum(len(r.owned()) for r in self.replicas)
            buses = sum(
                1 for r in self.replicas if isinstance(r.bus, PostgresBus) and r.bus.listening
            )
            return self.clock.sleepers >= loops + buses

        await until(waiting)

    async def tick(self) -> None:
        await self.loops_waiting()
        await self.clock.advance(INTERVAL)

    async def rows(self) -> list[SampleRow]:
        async with self.replicas[0].db.session() as session:
            found = await session.scalars(
                select(SampleRow).where(SampleRow.check_id.is_(None)).order_by(SampleRow.id)
            )
            return list(found)

    async def rows_reach(self, count: int) -> list[SampleRow]:
        found: list[SampleRow] = []

        async def reached() -> bool:
            nonlocal found
            found = await self.rows()
            return len(found) >= count

        await until_async(reached)
        return found

    async def close(self) -> None:
        for replica in self.replicas:
            await replica.scheduler.stop()
            await replica.leases.stop(release=False)
            await replica.bus.stop()
            await replica.catalog.aclose()
            await replica.db.dispose()


async def until(condition: Callable[[], bool], seconds: float = WAIT_S) -> None:
    give_up = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > give_up:
            pytest.fail(f"condition not met within {seconds}s")
        await asyncio.sleep(0.01)


async def until_async(condition: Callable[[], Any], seconds: float = WAIT_S) -> None:
    give_up = time.monotonic() + seconds
    while not await condition():
        if time.monotonic() > give_up:
            pytest.fail(f"condition not met within {seconds}s")
        await asyncio.sleep(0.02)


async def expired_in_the_database(db: Database, owner: str) -> None:
    """Wait (real time, by the database's clock) until no gate lease of ``owner`` holds."""

    async def expired() -> bool:
        async with db.session() as session:
            held = await session.scalar(
                select(func.count())
                .select_from(LeaseRow)
                .where(
                    LeaseRow.kind == "gate",
                    LeaseRow.owner == owner,
                    LeaseRow.expires_at > _db_now(db.engine.dialect.name),
                )
            )
        return held == 0

    await until_async(expired)


def answers_all(replica: Replica, count: int) -> bool:
    return len(replica.scheduler.current_all()) == count


def decides(replica: Replica, gate: str, decision: Decision) -> bool:
    latest = replica.scheduler.latest(gate)
    return latest is not None and latest.decision is decision


def same_body(a: Replica, b: Replica, gate: str) -> bool:
    return b.scheduler.latest_body(gate) == a.scheduler.latest_body(gate)


def gate_names(count: int) -> list[str]:
    return [f"g{i}" for i in range(count)]


@pytest.fixture
async def cluster(database_url: str) -> AsyncIterator[Cluster]:
    made = Cluster(database_url, ManualClock(T0), [], gate_names(6), Fanout())
    try:
        yield made
    finally:
        await made.close()


def by_gate(rows: Sequence[SampleRow]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.gate] = counts.get(row.gate, 0) + 1
    return counts


def test_the_fair_share_rule() -> None:
    assert fair_share(30, 3, 0) == 11  # at most ceil(30 / 3) + 1
    assert fair_share(30, 3, 11) == 0
    assert fair_share(30, 3, 30) == -20  # above its share by more than 1: give back
    assert fair_share(30, 1, 0) == 31
    assert fair_share(0, 2, 0) == 1


async def test_three_replicas_split_the_gates_and_each_gate_is_sampled_by_exactly_one(
    cluster: Cluster,
) -> None:
    a, b, c = [await cluster.add(name) for name in ("a", "b", "c")]
    await cluster.step()  # a counts 1 replica first and takes all, b and c none yet...
    await cluster.step()  # ...then a gives back what is above its share, b and c claim
    await cluster.step()
    owned = [r.owned() for r in (a, b, c)]
    assert set().union(*owned) == set(cluster.gates)
    assert sum(len(o) for o in owned) == len(cluster.gates)  # disjoint
    assert all(1 <= len(o) <= 3 for o in owned), owned
    assert all(r.leases.replicas == 3 for r in (a, b, c))
    assert sorted(r.scheduler.owned() for r in (a, b, c)) == sorted(sorted(o) for o in owned)

    await cluster.tick()
    await cluster.tick()
    rows = await cluster.rows_reach(2 * len(cluster.gates))
    assert by_gate(rows) == {gate: 2 for gate in cluster.gates}
    for gate in cluster.gates:  # each probe asked twice in all, not twice per replica
        assert sum(r.calls(gate) for r in (a, b, c)) == 2

    # Every replica answers every gate, from what the owners stored.
    for replica in (a, b, c):
        await until(functools.partial(answers_all, replica, len(cluster.gates)))
        for gate in cluster.gates:
            view = replica.scheduler.current(gate)
            assert view is not None and view.verdict.decision is Decision.GO


async def test_a_replica_stopped_gracefully_hands_its_gates_over_at_the_next_renewal(
    cluster: Cluster,
) -> None:
    a, b = [await cluster.add(name) for name in ("a", "b")]
    await cluster.step(a)
    assert a.owned() == set(cluster.gates)
    await cluster.step(b)
    assert b.owned() == set()

    await a.scheduler.stop()
    await a.leases.stop(release=True)
    cluster.replicas.remove(a)
    await a.bus.stop()
    await cluster.step(b)  # one renew period: no waiting for the leases to expire
    assert b.owned() == set(cluster.gates)
    assert b.leases.replicas == 1
    await cluster.tick()
    rows = await cluster.rows_reach(len(cluster.gates))
    assert by_gate(rows) == {gate: 1 for gate in cluster.gates}
    await a.catalog.aclose()
    await a.db.dispose()


async def test_a_silent_owner_is_taken_over_and_its_late_write_is_fenced_off(
    cluster: Cluster,
) -> None:
    """``a`` owns every gate, then stops renewing (a pause: its local deadline never
    passes, so it still believes it owns them). Once its leases expire in the database,
    ``b`` takes them over; ``a``'s next writes are refused and its loops end."""
    a = await cluster.add("a", answer=0.97, ttl=SHORT_TTL)  # its samples say 97 %: no_go
    await cluster.step(a)
    assert a.owned() == set(cluster.gates)
    await cluster.tick()
    first = await cluster.rows_reach(len(cluster.gates))
    assert {row.decision for row in first} == {"no_go"}

    b = await cluster.add("b", answer=1.0)  # and b's 100 %: go
    await expired_in_the_database(a.db, "a")
    taken = len(await cluster.rows())
    await b.leases.step()
    await until(lambda: b.owned() == set(cluster.gates))
    # Taken over from a replica that went silent: b samples each gate at once, then at
    # its tick, when a (still believing it owns them) tries too and is fenced off.
    await cluster.rows_reach(taken + len(cluster.gates))
    await cluster.tick()
    rows = await cluster.rows_reach(taken + 2 * len(cluster.gates))
    await until(lambda: a.owned() == set())  # each fenced write ended its loop
    later = (await cluster.rows())[taken:]
    assert {row.decision for row in later} == {"go"}, [r.body["criteria"] for r in later]
    assert by_gate(later) == {gate: 2 for gate in cluster.gates}
    assert len(rows) == taken + 2 * len(cluster.gates)
    # a now serves what b stored.
    for gate in cluster.gates:
        await until(functools.partial(decides, a, gate, Decision.GO))
    assert a.scheduler.decisions_now() == {}  # gauges: the owner's only
    assert not set(cluster.gates) & set(metrics.GATE_DECISION.observed) - b.owned()


async def test_a_decision_is_served_by_another_replica_from_memory_and_goes_stale_unheard(
    cluster: Cluster,
) -> None:
    a = await cluster.add("a")
    await cluster.step(a)
    b = await cluster.add("b")
    await cluster.step(b)
    assert b.owned() == set()
    await cluster.tick()
    await cluster.rows_reach(len(cluster.gates))
    for gate in cluster.gates:
        await until(functools.partial(same_body, a, b, gate))

    b.statements.clear()
    for _ in range(200):
        for gate in cluster.gates:
            body = b.scheduler.latest_body(gate)
            assert body is not None and json.loads(body)["decision"] == "go"
    assert b.statements == []  # the read path never touches the database
    assert b.scheduler.decisions_now() == {}  # another replica's gates: not b's to export

    await b.bus.stop()  # b hears nothing more
    expires_at = json.loads(b.scheduler.latest_body("g0") or b"")["expires_at"]
    for _ in range(4):  # a keeps sampling; b's copy ages past its expires_at
        await cluster.tick()
    stale = b.scheduler.current("g0")
    assert stale is not None and stale.stale
    assert stale.verdict.decision is Decision.NO_GO
    assert stale.verdict.reasons[0].startswith("stale since ")
    assert json.loads(stale.body)["expires_at"] == expires_at
    fresh = a.scheduler.current("g0")
    assert fresh is not None and fresh.verdict.decision is Decision.GO


async def test_a_takeover_announces_nothing_and_a_real_change_is_announced_once(
    cluster: Cluster,
) -> None:
    cluster.gates[:] = ["g0"]
    a = await cluster.add("a")
    await cluster.step(a)
    await cluster.tick()
    await cluster.rows_reach(1)
    assert a.notifier.changes == [("g0", Decision.GO, None)]

    b = await cluster.add("b")
    await a.scheduler.stop()
    await a.leases.stop(release=True)
    cluster.replicas.remove(a)
    await a.bus.stop()
    await cluster.step(b)
    assert b.owned() == {"g0"}
    await cluster.tick()
    await cluster.rows_reach(2)
    assert b.notifier.changes == []  # go, as stored before the takeover

    b.bench.latest("pg0").answer = 0.97  # no_go
    await cluster.tick()
    await cluster.rows_reach(3)
    await cluster.tick()
    await cluster.rows_reach(4)
    assert b.notifier.changes == [("g0", Decision.NO_GO, Decision.GO)]
    assert a.notifier.changes == [("g0", Decision.GO, None)]
    await a.catalog.aclose()
    await a.db.dispose()


async def test_an_api_gate_put_on_one_replica_is_loaded_and_sampled_on_another(
    postgres_url: str, gates_dir: Path
) -> None:
    clock = ManualClock(T0)
    apps = []
    try:
        for name in ("a", "b"):
            app, lifespan = await open_service(
                postgres_url, gates_dir, clock, ProbeBench(), replica_id=name, lease_ttl="1s"
            )
            apps.append((app, lifespan))
        (a, _), (b, _) = apps
        clients = [
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
            for app, _ in apps
        ]
        ready = (await clients[1].get("/readyz")).json()
        assert ready["replica"] == "b" and ready["bus_listening"] is True

        admin = {"Authorization": f"Bearer {TOKENS['admin']}"}
        put = await clients[0].put("/api/v1/gates/newgate", content=API_GATE, headers=admin)
        assert put.status_code == 201, put.text
        await until(lambda: b.state.catalog.get("newgate") is not None)
        loaded_b = b.state.catalog.get("newgate")
        assert loaded_b.version == a.state.catalog.get("newgate").version

        # a stops gracefully: b takes every gate, the new one included, and samples it.
        await apps[0][1].__aexit__(None, None, None)
        apps.pop(0)
        await b.state.leases.step()
        assert set(b.state.scheduler.owned()) == {"portal", "signed", "newgate"}
        await until(lambda: clock.sleepers >= 4)
        await clock.advance(60)
        await until(lambda: b.state.scheduler.latest("newgate") is not None)
        decision = await clients[1].get("/api/v1/gates/newgate/decision", headers=admin)
        assert decision.status_code == 200 and decision.json()["evaluated_at"] is not None

        deleted = await clients[1].delete("/api/v1/gates/newgate", headers=admin)
        assert deleted.status_code == 204
        for client in clients:
            await client.aclose()
    finally:
        for _, lifespan in apps:
            await lifespan.__aexit__(None, None, None)


def _gauge(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


async def test_a_lease_past_its_local_deadline_stops_the_loop_at_once_and_drops_its_gauges(
    cluster: Cluster,
) -> None:
    a = await cluster.add("a", ttl=SHORT_TTL)
    await cluster.step(a)
    await cluster.tick()
    await cluster.rows_reach(len(cluster.gates))
    last = "gonogo_gate_last_evaluation_timestamp_seconds"
    assert _gauge(last, gate="g0") is not None
    assert _gauge("gonogo_gate_decision", gate="g0", decision="go") == 1
    evaluations = _gauge("gonogo_evaluations_total", gate="g0", decision="go")

    a.monotonic.t += 2 * SHORT_TTL.total_seconds()  # not renewed in time
    assert {lease.id for lease in a.leases.expire_local()} == set(cluster.gates)
    assert a.owned() == set()
    assert _gauge(last, gate="g0") is None
    # Nobody has sampled it since: still exported here, and stale (no_go) once expired.
    assert a.scheduler.decisions_now()["g0"] is Decision.GO
    assert (
        _gauge("gonogo_criterion_outcome", gate="g0", criterion="availability", outcome="pass")
        is None
    )
    # Counters stay per process.
    assert _gauge("gonogo_evaluations_total", gate="g0", decision="go") == evaluations

    await cluster.clock.advance(3 * INTERVAL)
    await cluster.clock.settle()
    assert len(await cluster.rows()) == len(cluster.gates)  # nothing sampled since
    assert sum(a.calls(gate) for gate in cluster.gates) == len(cluster.gates)
    assert _gauge("gonogo_gate_decision", gate="g0", decision="no_go") == 1

    # Once another replica has sampled it, only that one exports it.
    b = await cluster.add("b")
    await expired_in_the_database(a.db, "a")
    await cluster.step(b)
    await cluster.tick()
    await cluster.rows_reach(2 * len(cluster.gates))
    await until(lambda: a.scheduler.decisions_now() == {})
    assert set(b.scheduler.decisions_now()) == set(cluster.gates)
