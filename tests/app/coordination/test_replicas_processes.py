"""Three ``gonogo serve`` processes on one PostgreSQL database share 30 gates (1 s
interval, ``GONOGO_LEASE_TTL=2s``): each gate is sampled once per interval in total, a
replica killed, paused or stopped loses nothing and doubles nothing, checks end once, and
every replica answers the current decision.

Who sampled what is read from the fake Prometheus (each replica sends its own token) and
from the stored samples (each replica's answers carry its tag in the value, so a row names
its writer; see ``replicas.py``).
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from tests.app.coordination.replicas import (
    Cluster,
    CountingPrometheus,
    Replica,
    WebhookReceiver,
    criterion_value,
    fresh_postgres,
    until,
    within,
    write_gates,
    writer_of,
)

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio(loop_scope="module")]

REPLICAS = 3
GATES = 30
INTERVAL_S = 1.0
TTL_S = 2.0
RENEW_S = TTL_S / 3
CHECK_GATE = "chk"
OWNER_WINDOW_S = 2.5 * INTERVAL_S  # a sample late by a busy machine still counts
SETTLE_S = 15.0  # start-up claims: every gate sampled by exactly one replica
SAMPLE_WRITE_S = 5.0  # a sample's write, commit included, on a busy machine
CLAIM_LAPSE_S = 10.0  # an outbox claim at a short TTL: two attempts of 5 s
SLACK_S = 1.0  # scheduling on a shared machine: a sample's own duration, a loop's wake-up


@dataclass
class World:
    prometheus: CountingPrometheus
    hook: WebhookReceiver
    cluster: Cluster
    gates: list[str]

    def owners(self, window: float = OWNER_WINDOW_S) -> dict[str, set[str]]:
        return self.prometheus.askers(time.monotonic() - window)

    def explain_owners(self) -> str:
        owners = self.owners()
        doubled = {g: sorted(rs) for g, rs in sorted(owners.items()) if len(rs) > 1}
        missing = sorted(set(self.gates) - set(owners))
        return f"sampled by several replicas {doubled}; not sampled {missing}"

    async def settled(self, *, among: list[Replica] | None = None) -> dict[str, str]:
        """Wait until every gate is sampled by exactly one of ``among`` (default: the
        live replicas) over the last ``OWNER_WINDOW_S``; return gate -> its sampler."""
        start = time.monotonic()
        names = {r.name for r in (among or self.cluster.live())}

        def single() -> bool:
            if time.monotonic() - start < OWNER_WINDOW_S:
                return False
            owners = self.owners()
            return set(owners) >= set(self.gates) and all(
                len(owners[g]) == 1 and owners[g] <= names for g in self.gates
            )

        await until(
            single, seconds=SETTLE_S, what="one sampler per gate", explain=self.explain_owners
        )
        return {g: next(iter(rs)) for g, rs in self.owners().items() if g in self.gates}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def cluster_world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    """One cluster for the whole module: starting three processes costs more than every
    test together on a busy machine. Each test begins with ``healthy`` (below)."""
    url = await fresh_postgres()
    work = tmp_path_factory.mktemp("replicas")
    prometheus = CountingPrometheus([f"r{i}" for i in range(REPLICAS)])
    hook = WebhookReceiver()
    async with prometheus.serving(), hook.serving():
        gates_dir = work / "gates"
        gates_dir.mkdir()
        gates = write_gates(
            gates_dir,
            GATES,
            interval=f"{INTERVAL_S:g}s",
            prometheus=prometheus.url,
            hook=hook.url,
            check_gate=CHECK_GATE,
        )
        cluster = Cluster(
            work,
            database_url=url,
            gates_dir=gates_dir,
            replicas=REPLICAS,
            lease_ttl=f"{TTL_S:g}s",
        )
        try:
            await cluster.start()
            yield World(prometheus, hook, cluster, gates)
        finally:
            await cluster.close()


@pytest_asyncio.fixture(loop_scope="module")
async def world(cluster_world: World) -> World:
    """The cluster with all three replicas running and settled: a replica an earlier test
    killed or stopped is restarted (or continued), and flipped values are restored."""
    cluster = cluster_world.cluster
    cluster_world.prometheus.values.clear()
    for replica in cluster.replicas:
        if replica.stopped:
            replica.signal(signal.SIGCONT)
    await cluster.start([r for r in cluster.replicas if not r.alive])
    await cluster_world.settled()
    return cluster_world


def owned(owners: dict[str, str], replica: str) -> set[str]:
    return {g for g, r in owners.items() if r == replica}


def busiest(owners: dict[str, str], cluster: Cluster) -> Replica:
    """The replica sampling the most gates (so a test about its gates has some)."""
    return max(cluster.replicas, key=lambda r: len(owned(owners, r.name)))


async def test_three_replicas_sample_each_gate_once_per_interval_in_total(world: World) -> None:
    await world.settled()
    span = 5.0
    start = time.monotonic()
    await asyncio.sleep(span)  # the measured span itself, not a synchronisation
    hits = world.prometheus.since(start, start + span)
    per_gate = {g: sum(1 for h in hits if h.gate == g) for g in world.gates}
    expected = span / INTERVAL_S
    # Once per interval in total: 5 +- 1 in 5 s (3 replicas each sampling would be ~15).
    wrong = {g: n for g, n in per_gate.items() if not expected - 1 <= n <= expected + 1}
    assert not wrong, f"queries per gate in {span:g}s (expected ~{expected:g}): {wrong}"
    askers = world.prometheus.askers(start, start + span)
    assert all(len(askers[g]) == 1 for g in world.gates), world.explain_owners()
    # Every replica takes a share.
    assert {next(iter(askers[g])) for g in world.gates} == set(world.cluster.names)

    owned_total = 0.0
    for replica in world.cluster.replicas:
        value = await world.cluster.metric(replica, "gonogo_gates_owned")
        assert value is not None, f"{replica.name} exports no gonogo_gates_owned"
        owned_total += value
    assert owned_total == GATES + 1  # the check-only gate is leased too


async def test_a_killed_replicas_gates_are_sampled_again_within_ttl_plus_two_intervals(
    world: World,
) -> None:
    owners = await world.settled()
    victim = busiest(owners, world.cluster)
    lost = owned(owners, victim.name)
    assert lost
    victim.signal(signal.SIGKILL)
    killed_at = time.monotonic()
    bound = TTL_S + 2 * INTERVAL_S

    def resumed() -> bool:
        return all(
            world.prometheus.first_after(g, killed_at, not_by=victim.name) is not None for g in lost
        )

    def explain() -> str:
        waiting = [
            g
            for g in sorted(lost)
            if world.prometheus.first_after(g, killed_at, not_by=victim.name) is None
        ]
        return f"gates of {victim.name} not sampled again: {waiting}"

    await until(resumed, seconds=bound + SLACK_S, what="takeover after kill -9", explain=explain)
    gaps = {
        g: (world.prometheus.first_after(g, killed_at, not_by=victim.name) or 0) - killed_at
        for g in lost
    }
    assert max(gaps.values()) <= bound + SLACK_S, gaps
    # And from then on each of them is sampled by one survivor only.
    survivors = [r for r in world.cluster.replicas if r is not victim]
    await world.settled(among=survivors)


async def test_a_replica_paused_past_its_ttl_writes_nothing_for_the_gates_it_lost(
    world: World,
) -> None:
    owners = await world.settled()
    paused = busiest(owners, world.cluster)
    its_gates = owned(owners, paused.name)
    paused.signal(signal.SIGSTOP)
    # Rows the paused process had committed all have ids up to this one; anything it
    # writes after it resumes (or had in flight) gets a higher id.
    frozen_top = await world.cluster.max_sample_id()
    stopped_at = time.monotonic()
    others = [r for r in world.cluster.replicas if r is not paused]

    def taken_over() -> bool:
        return all(
            world.prometheus.first_after(g, stopped_at, not_by=paused.name) is not None
            for g in its_gates
        )

    if not await within(taken_over, seconds=TTL_S + 2 * INTERVAL_S + SLACK_S):
        waiting = sorted(
            g
            for g in its_gates
            if world.prometheus.first_after(g, stopped_at, not_by=paused.name) is None
        )
        leases = await world.cluster.leases()
        pytest.fail(
            f"gates of the paused {paused.name} not sampled by another replica within"
            f" TTL + 2 intervals: {waiting}; their leases {[leases.get(g) for g in waiting]};"
            f" long open transactions {await world.cluster.stuck_transactions()}"
        )
    # Past its TTL, with the others sampling its gates, it resumes.
    await until(
        lambda: time.monotonic() - stopped_at > TTL_S + 2 * INTERVAL_S,
        seconds=10,
        what="pause past TTL",
    )
    # While it runs again, follow the lease table: a gate it claims back (the others give
    # up gates above their share) is its own again from that claim on. ``rewon[g]`` is
    # the last moment the lease was seen held by another replica before that claim.
    rewon: dict[str, tuple[datetime, float]] = {}
    last_other: dict[str, tuple[datetime, float]] = {}
    paused.signal(signal.SIGCONT)
    resumed_at = time.monotonic()
    while time.monotonic() - resumed_at < 3 * INTERVAL_S:  # its chance to write what it had
        seen = (datetime.now(UTC), time.monotonic())
        for gate, row in (await world.cluster.leases()).items():
            if gate not in its_gates or gate in rewon:
                continue
            if row["owner"] == paused.name and row["live"]:
                rewon[gate] = last_other.get(gate, seen)
            else:
                last_other[gate] = seen
        await asyncio.sleep(0.05)
    await world.settled()

    samples = await world.cluster.continuous_samples(after_id=frozen_top)
    unfenced = [
        s
        for s in samples
        if s.gate in its_gates
        and s.writer == paused.name
        and (s.gate not in rewon or s.evaluated_at <= rewon[s.gate][0])
    ]
    assert not unfenced, (
        f"{paused.name} wrote samples for gates it had lost: {unfenced[:5]} (claimed back:"
        f" {sorted(rewon)})"
    )
    # The others did sample them meanwhile (the tags name the writers).
    names = {r.name for r in others}
    taken = {s.gate for s in samples if s.gate in its_gates and s.writer in names}
    assert taken == its_gates
    # Its loops for the gates it lost stop too: no query from it for one of them after
    # an interval, unless it claimed the gate back.
    late = [
        h
        for h in world.prometheus.since(resumed_at + INTERVAL_S + SLACK_S)
        if h.replica == paused.name
        and h.gate in its_gates
        and (h.gate not in rewon or h.at <= rewon[h.gate][1])
    ]
    assert not late, f"{paused.name} still samples gates it lost: {late[:5]}"


async def test_sigterm_hands_a_replicas_gates_over_within_a_renew_period(world: World) -> None:
    owners = await world.settled()
    leaving = busiest(owners, world.cluster)
    its_gates = owned(owners, leaving.name)
    leaving.signal(signal.SIGTERM)
    termed_at = time.monotonic()
    # A graceful stop: uvicorn shuts the app down, then ends by the signal it received.
    assert await world.cluster.until_exited(leaving) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in leaving.log_tail(20_000)
    exited_at = time.monotonic()
    # Released at once: no lease row left to expire in the database.
    leases = await world.cluster.leases()
    still = {g: row for g, row in leases.items() if row["owner"] == leaving.name and row["live"]}
    assert not still, f"{leaving.name} left live leases behind on SIGTERM: {still}"
    # Taken over by the others within about one renew period (their next claim), plus
    # the new owner's first sample, counted from the moment the process was gone.
    bound = RENEW_S + INTERVAL_S + SLACK_S

    def resumed() -> bool:
        return all(
            world.prometheus.first_after(g, termed_at, not_by=leaving.name) is not None
            for g in its_gates
        )

    await until(resumed, seconds=bound + (exited_at - termed_at), what="takeover after SIGTERM")
    late = max(
        (world.prometheus.first_after(g, termed_at, not_by=leaving.name) or 0.0) for g in its_gates
    )
    assert late - exited_at <= bound, (
        f"took {late - exited_at:.2f}s after exit (bound {bound:.2f}s)"
    )


async def test_a_check_whose_owner_is_killed_ends_once_on_another_replica(world: World) -> None:
    cluster = world.cluster
    await world.settled()
    creator = cluster.replicas[0]
    response = await cluster.post(
        creator, f"/api/v1/gates/{CHECK_GATE}/checks", "pipeline", json={"version": "7.1.0"}
    )
    assert response.status_code == 201, response.text
    check_id = response.json()["id"]

    def samplers() -> set[str]:
        return {h.replica for h in world.prometheus.hits if h.version == "7.1.0" and h.replica}

    await until(
        lambda: bool(samplers()), seconds=3 * INTERVAL_S + SLACK_S, what="the check sampled"
    )
    [owner_name] = samplers()
    owner = cluster[owner_name]
    poller = (
        next(r for r in cluster.replicas if r is not owner and r is not creator)
        if owner is not creator
        else cluster.replicas[1]
    )

    long_poll = asyncio.create_task(
        cluster.get(poller, f"/api/v1/checks/{check_id}", params={"wait": 45}, timeout=50)
    )
    owner.signal(signal.SIGKILL)
    killed_at = time.monotonic()

    def resumed() -> bool:
        return any(
            h.version == "7.1.0" and h.replica != owner.name and h.at > killed_at
            for h in world.prometheus.hits
        )

    await until(
        resumed, seconds=TTL_S + 2 * INTERVAL_S + SLACK_S, what="the check resumed after kill -9"
    )
    answer = await asyncio.wait_for(long_poll, 45)
    assert answer.status_code == 200, answer.text
    ended = answer.json()
    assert ended["state"] == "final", ended
    assert ended["decision"] == "go", ended

    survivors = [r for r in cluster.replicas if r is not owner]
    for replica in survivors:
        events = await cluster.get(replica, f"/api/v1/checks/{check_id}/events")
        assert events.status_code == 200, events.text
        finals = [e for e in events.json()["items"] if e["kind"] == "final"]
        assert len(finals) == 1, f"{replica.name}: {finals}"
    rows = await cluster.rows(
        "SELECT count(*) AS n FROM events WHERE check_id = :id AND kind = 'final'", id=check_id
    )
    assert rows[0]["n"] == 1
    # One owner at a time: the stored samples (each naming its writer by its tag) are
    # the killed owner's, then the new owner's, never interleaved.
    writers = [
        writer_of(criterion_value(row["body"]), REPLICAS)
        for row in await cluster.rows(
            "SELECT body FROM samples WHERE check_id = :id ORDER BY id", id=check_id
        )
    ]
    runs = [w for k, w in enumerate(writers) if k == 0 or writers[k - 1] != w]
    # The killed owner may have died after its query and before storing its sample; then
    # every stored sample is the new owner's.
    taken_over = runs[1:] if runs and runs[0] == owner.name else runs
    assert len(taken_over) == 1 and owner.name not in taken_over, writers


async def flip_and_watch(world: World, gate: str) -> float:
    """Flip ``gate``'s value into a breach; return when every live replica answers
    ``rollback``, how long after the owner's first breaching sample it took."""
    cluster = world.cluster
    flipped_at = time.monotonic()
    world.prometheus.values[gate] = 0.0

    def first_breach() -> float | None:
        return next(
            (
                h.at
                for h in world.prometheus.hits
                if h.gate == gate and h.at >= flipped_at and h.value < 0.5
            ),
            None,
        )

    async def everywhere() -> bool:
        seen = [await cluster.decision(r, gate) for r in cluster.live()]
        return all(d == "rollback" for d in seen)

    await until(
        everywhere,
        seconds=2 * INTERVAL_S + TTL_S + 2 * SLACK_S,
        what=f"rollback of {gate} on every replica",
        every=0.02,
    )
    visible_at = time.monotonic()
    breach = first_breach()
    assert breach is not None
    return visible_at - breach


async def test_a_decision_change_is_seen_on_every_replica_within_an_interval_and_notified_once(
    world: World,
) -> None:
    cluster = world.cluster
    owners = await world.settled()
    quiet_gate, takeover_gate = world.gates[3], None

    async def all_go() -> bool:
        for replica in cluster.replicas:
            for gate in world.gates:
                if await cluster.decision(replica, gate) != "go":
                    return False
        return True

    await until(all_go, seconds=3 * INTERVAL_S, what="go on every replica")

    # A change with every replica up.
    start = time.monotonic()
    lag = await flip_and_watch(world, quiet_gate)
    assert lag <= INTERVAL_S, f"rollback reached every replica {lag:.2f}s after the sample"

    # A change right after its owner was killed: the new owner decides it. (Another
    # replica than the first gate's owner, whose notification may still be on its way.)
    victim = next(r for r in cluster.replicas if r.name != owners[quiet_gate])
    takeover_gate = next(g for g in world.gates if owners[g] == victim.name)
    killed_at = time.monotonic()
    victim.signal(signal.SIGKILL)
    lag = await flip_and_watch(world, takeover_gate)
    assert lag <= INTERVAL_S, f"rollback reached every replica {lag:.2f}s after the sample"

    # Duplicates would come within a lease TTL plus a retry: wait that long.
    await until(
        lambda: time.monotonic() - killed_at > 2 * TTL_S + 2 * INTERVAL_S, seconds=15, what="quiet"
    )
    for gate, since in ((quiet_gate, start), (takeover_gate, killed_at)):
        sent = world.hook.of(gate, since=since)
        decisions = [n.body.get("decision") for n in sent]
        assert decisions == ["rollback"], f"{gate}: notifications since the change: {decisions}"
    # A takeover alone sends nothing: the killed replica's other gates were not re-announced.
    others = owned(owners, victim.name) - {takeover_gate}
    resent = {
        g: len(world.hook.of(g, since=killed_at))
        for g in others
        if world.hook.of(g, since=killed_at)
    }
    assert not resent, f"takeover re-sent notifications: {resent}"


async def test_an_owner_killed_once_its_decision_change_is_stored_still_notifies_it_once(
    world: World,
) -> None:
    """The change is committed (a stored ``rollback`` sample) and its owner dies while
    delivering the webhook (the receiver waits for the stored row, kills the sender, and
    answers 503): the notification is owed by the database (an outbox row written with
    the sample), so another replica delivers it, once. Without an outbox nobody does: the
    new owner carries on from the stored ``rollback``, which is no change."""
    cluster = world.cluster
    owners = await world.settled()
    gate = world.gates[7]
    owner = cluster[owners[gate]]
    before = await cluster.max_sample_id()

    async def stored() -> bool:
        rows = await cluster.rows(
            "SELECT id FROM samples WHERE gate = :gate AND id > :before AND decision = 'rollback'",
            gate=gate,
            before=before,
        )
        return bool(rows)

    async def respond(to: str, body: dict[str, object]) -> int:
        if to != gate or not owner.alive:
            return 204
        await until(stored, seconds=SAMPLE_WRITE_S, what=f"a stored rollback of {gate}")
        owner.signal(signal.SIGKILL)
        return 503

    world.hook.respond = respond
    try:
        flipped_at = time.monotonic()
        world.prometheus.values[gate] = 0.0
        await until(
            lambda: not owner.alive,
            seconds=2 * INTERVAL_S + SAMPLE_WRITE_S,
            what="the owner killed",
        )

        async def everywhere() -> bool:
            return all([await cluster.decision(r, gate) == "rollback" for r in cluster.live()])

        await until(
            everywhere, seconds=TTL_S + 2 * INTERVAL_S + SLACK_S, what="rollback everywhere"
        )
        # The dead sender's claim lapses (two attempts' time at a short TTL), then another
        # replica's outbox sends the row; then a while more, in which no second one comes.
        await until(
            lambda: bool(world.hook.of(gate, since=flipped_at, delivered=True)),
            seconds=CLAIM_LAPSE_S + 2 * TTL_S + 4 * INTERVAL_S,
            what="the owed notification delivered by another replica",
        )
        quiet_from = time.monotonic()
        await until(
            lambda: time.monotonic() - quiet_from > 2 * INTERVAL_S + TTL_S,
            seconds=20,
            what="quiet",
        )
    finally:
        world.hook.respond = None
    sent = world.hook.of(gate, since=flipped_at, delivered=True)
    decisions = [n.body.get("decision") for n in sent]
    assert decisions == ["rollback"], f"{gate}: delivered since the change: {decisions}"
