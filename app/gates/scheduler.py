"""The continuous gate decision (``docs/decisions.md``): every gate sampled every ``interval``
by the one replica that holds its lease; every replica answers every gate's decision.

Each gate this replica owns has its own asyncio task. Ticks are drift-free: a gate
samples at ``anchor + k * interval``, and a sample that overruns skips the ticks it
missed instead of bunching them. When a loop starts (at start-up or when a lease is won)
the anchor is offset by a stable per-gate phase within the interval (as Prometheus spreads
its scrapes), so a thousand gates do not all ask their sources at the same instant; a gate
redefined while running is sampled at once.

Ownership (``docs/architecture.md``, "Replicas and leases"): the scheduler registers
``want("gate", ...)`` with the replica's ``LeaseHolder``, asking for a fair share of the
loaded gates (``fair_share``). On ``won`` the gate's loop starts from its stored history
(the engine's freshness and gap rules judge it, so a takeover after a long gap needs fresh
passes) and from its last stored decision, so a takeover alone never notifies. On
``lost`` the loop is cancelled at once and its gauges are dropped. Every sample write is
fenced by the lease in its own transaction and announces the gate on the bus's
``decisions`` channel; a write refused by the fence stores nothing and ends the loop.
Without a ``LeaseHolder`` (a scheduler tested on its own) it owns every gate.

Reads (``current``, ``latest``, ``latest_body``, ``latest_all``) come from memory, never
do I/O, and all go through ``PublishedDecision.view`` with the scheduler's clock: once a
decision has expired (``docs/decisions.md``, "Freshness and expiry") every one of them
answers the stale ``no_go``. No read hands out the stored body without that check. For a
gate another replica owns, memory is a cache the bus feeds: on each ``decisions`` message
the gate's newest stored sample is read (one read in flight per gate; messages arriving
meanwhile cause one more read, not one each), and on every (re)connection the newest
sample of every gate is read in one query. A replica that hears nothing keeps what it
has, which expires into the stale ``no_go`` like any other decision.

Choices worth knowing:
- Before its first sample a gate is ``no_go`` ("no sample yet"), so the first evaluation
  counts as a decision change (metric and webhook) only when it is ``go`` or ``rollback``.
- A decision change is judged against the last *stored* decision and announced only once
  its sample has been written, by the owner: a sample the database refused, or a fenced
  write, announces nothing.
- A redefined gate (new version from a file or the API) starts a fresh history: its
  criteria may mean something else now. Until its first new sample, reads return the
  last verdict of the previous version as ``no_go`` ("gate redefined ..."): it was judged
  by a definition the gate no longer has. Decision changes are judged against that
  last verdict as evaluated, so the redefinition itself sends no webhook.
- The decision is published from memory before its sample is written, so reads never
  wait on the database; the write is bounded (``SAMPLE_WRITE_BUDGET``) and a failure is
  logged and counted. While writes fail, the decision expires one freshness bound after
  the first sample that was not stored, so a database outage shows as a stale ``no_go``.
"""

from __future__ import annotations

import asyncio
import math
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.coordination.bus import Bus
from app.coordination.leases import LeaseEvent, LeaseHolder, LeaseKey, LeaseLost
from app.core.clock import Clock
from app.core.db import SampleRow
from app.core.ticker import Ticker
from app.gates.catalog import GateCatalog, LoadedGate
from app.gates.freshness import DecisionView, PublishedDecision, decision_body, encode_body
from app.gates.samples import AfterInsert, WriteGuard, stored_expires_at, verdict_from_row
from app.observability import metrics
from app.observability.notify import Notifier
from app.observability.outbox import NotificationOutbox
from gates.engine import Decision, Sample, Steady, Verdict, decide_safely, freshness_bound
from gates.model import Gate, history_size
from gates.sampler import placeholder_values, take_sample
from probes.timefmt import iso

log = structlog.get_logger(__name__)

# Samples in flight across all gates; each holds one slot for all its criteria. A safety
# bound sized so that hundreds of gates stuck on a dead source still leave room for the rest.
DEFAULT_MAX_CONCURRENT_SAMPLES = 512
# A continuous sample's write may take this long before the loop gives up on it and goes
# on (the database's own timeouts normally answer first).
SAMPLE_WRITE_BUDGET = 10.0
# A read of stored decisions for the cache (bus message or catch-up) may take this long.
CACHE_READ_BUDGET = 10.0
DECISIONS_CHANNEL = "decisions"
GATE_LEASE = "gate"


class SampleSink(Protocol):
    """Where continuous samples go, and where a restarted scheduler finds its history."""

    async def record_gate_sample(
        self,
        gate: str,
        verdict: Verdict,
        *,
        version: str,
        expires_at: datetime | None,
        guard: WriteGuard | None = None,
        then: AfterInsert | None = None,
    ) -> None: ...

    async def recent_gate_samples(self, gate: str, version: str, limit: int) -> Sequence[Sample]:
        """The newest ``limit`` samples of ``gate`` judged by ``version``, oldest first."""
        ...


class StoredDecisions(Protocol):
    """Where the newest stored sample of each gate is read (the cache, a takeover)."""

    async def newest_gate_samples(self, gates: Sequence[str]) -> Mapping[str, SampleRow]: ...


def phase_offset(name: str, interval: timedelta) -> timedelta:
    """A stable offset in ``[0, interval)`` for a gate's ticks."""
    fraction = zlib.crc32(name.encode()) / 2**32
    return timedelta(microseconds=int(interval / timedelta(microseconds=1) * fraction))


def fair_share(gates: int, replicas: int, held: int) -> int:
    """How many more gate leases to claim (negative: how many to give back).

    The rule: a replica holds at most ``ceil(gates / replicas) + 1`` gates, where
    ``replicas`` counts the live ones, itself included; one holding more than that gives
    back what is above ``ceil(gates / replicas)``. Replicas starting together therefore
    split the gates roughly evenly, and one that joins later gets its share as the others
    give theirs back."""
    share = math.ceil(gates / max(1, replicas))
    if held > share + 1:
        return share - held
    return share + 1 - held


def _expires_at(verdict: Verdict, gate: Gate) -> datetime | None:
    at = verdict.evaluated_at
    return at + freshness_bound(gate) if at is not None else None


def encode_verdict(verdict: Verdict, loaded: LoadedGate) -> bytes:
    """The decision body (``docs/api.md``) of a fresh ``verdict`` of a gate as UTF-8 JSON."""
    expires_at = _expires_at(verdict, loaded.gate)
    return encode_body(decision_body(verdict, expires_at, gate_version=loaded.version))


def _redefined(at: datetime, version: str, judged_by: str | None) -> str:
    return (
        f"gate redefined at {iso(at)}: version {version} has no sample yet"
        f" (the last decision was judged by {judged_by})"
    )


@dataclass
class _GateRun:
    loaded: LoadedGate
    history: deque[Sample]
    task: asyncio.Task[None] | None = None
    # The first sample whose write failed, while writes keep failing.
    unrecorded_since: datetime | None = None
    # The last decision stored for the gate: what a change is judged against.
    stored: Decision | None = None
    # When the last sample this replica stored for the gate was evaluated.
    stored_at: datetime | None = None


class GateScheduler:
    def __init__(
        self,
        catalog: GateCatalog,
        *,
        notifier: Notifier,
        sink: SampleSink,
        clock: Clock,
        leases: LeaseHolder | None = None,
        bus: Bus | None = None,
        stored: StoredDecisions | None = None,
        outbox: NotificationOutbox | None = None,
        max_concurrent_samples: int = DEFAULT_MAX_CONCURRENT_SAMPLES,
    ) -> None:
        self._catalog = catalog
        self._notifier = notifier
        # With an outbox, a decision change's notification is written in the transaction
        # that stores its sample (fenced by the lease), keyed by that sample: exactly once.
        self._outbox = outbox
        self._sink = sink
        self._clock = clock
        self._leases = leases
        self._bus = bus
        self._stored = stored
        self._slots = asyncio.Semaphore(max_concurrent_samples)
        self._runs: dict[str, _GateRun] = {}
        self._published: dict[str, PublishedDecision] = {}
        self._started = False
        # Cache reads in flight, one per gate, and the gates asked for again meanwhile.
        self._reading: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._new: set[str] = set()  # gates added while running, not yet sampled here
        self._unstored: set[str] = set()  # gates lost here: memory may hold an unstored sample
        # Gates lost here and not yet heard sampled elsewhere, with the instant of the
        # last decision published here.
        self._orphans: dict[str, datetime | None] = {}
        self._unsubscribe_leases: list[Callable[[], None]] = []
        catalog.subscribe(self._on_catalog_change)
        if bus is not None:  # before the bus starts: it listens to what is subscribed
            bus.subscribe(DECISIONS_CHANNEL, self._on_decision_message)
            bus.on_connected(self.catch_up)

    # -- reads: memory only ------------------------------------------------------------

    def current(self, gate: str) -> DecisionView | None:
        """The gate's decision as a reader may see it now (stale ``no_go`` once expired);
        None before its first evaluation."""
        published = self._published.get(gate)
        return published.view(self._clock.now()) if published is not None else None

    def current_all(self) -> dict[str, DecisionView]:
        now = self._clock.now()
        return {name: published.view(now) for name, published in self._published.items()}

    def latest(self, gate: str) -> Verdict | None:
        view = self.current(gate)
        return view.verdict if view is not None else None

    def latest_body(self, gate: str) -> bytes | None:
        """``current(gate)`` already serialised as the decision body JSON."""
        view = self.current(gate)
        return view.body if view is not None else None

    def latest_all(self) -> dict[str, Verdict]:
        return {name: view.verdict for name, view in self.current_all().items()}

    def decisions_now(self) -> Mapping[str, Decision]:
        """The decision of every evaluated gate this replica owns, as read now (``/metrics``
        asks at each scrape; another replica's gates are its owner's to export). A gate
        lost here stays exported (it goes stale, ``no_go``) until a sample taken by
        another replica is heard: while no replica can sample it, for instance during a
        database outage, ``/metrics`` still shows it as ``no_go`` rather than not at all."""
        now = self._clock.now()
        return {
            name: published.view(now).verdict.decision
            for name, published in self._published.items()
            if self.owns(name) or name in self._orphans
        }

    def history(self, gate: str) -> Sequence[Sample]:
        run = self._runs.get(gate)
        return tuple(run.history) if run else ()

    def owns(self, gate: str) -> bool:
        """Whether this replica samples ``gate``: its loop runs here and, with leases, the
        lease still holds by the local deadline."""
        if gate not in self._runs:
            return False
        return self._leases is None or self._leases.still_mine(GATE_LEASE, gate)

    def owned(self) -> list[str]:
        """The gates whose loops run here."""
        return sorted(self._runs)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        metrics.watch_decisions(self.decisions_now)
        leases = self._leases
        if leases is None:
            for loaded in self._catalog.all():
                self._run(loaded, spread=True, restore=True)
            return
        self._unsubscribe_leases.append(leases.subscribe(self._on_lease))
        leases.want(GATE_LEASE, candidates=self._candidates, limit=self._share)
        for lease in leases.held(GATE_LEASE):  # won before this scheduler listened
            self._on_lease(LeaseEvent("won", lease, "held at start"))

    def _candidates(self) -> list[str]:
        return [loaded.name for loaded in self._catalog.all()]

    def _share(self) -> int:
        assert self._leases is not None
        return fair_share(
            len(self._catalog.all()), self._leases.replicas, len(self._leases.held(GATE_LEASE))
        )

    async def stop(self) -> None:
        self._started = False
        metrics.unwatch_decisions(self.decisions_now)
        for unsubscribe in self._unsubscribe_leases:
            unsubscribe()
        self._unsubscribe_leases.clear()
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        tasks.extend(self._reading.values())
        tasks.extend(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runs.clear()
        self._reading.clear()

    def _spawn(self, work: asyncio.Task[None]) -> None:
        self._background.add(work)
        work.add_done_callback(self._background.discard)

    # -- leases ------------------------------------------------------------------------

    def _on_lease(self, event: LeaseEvent) -> None:
        lease = event.lease
        if lease.kind != GATE_LEASE or not self._started:
            return
        name = lease.id
        if event.change == "lost":
            self._give_up(name, event.reason)
            return
        loaded = self._catalog.get(name)
        if loaded is None:  # a lease on a gate no longer loaded: give it back
            self._release(name)
            return
        log.info("gate lease won; sampling it", gate=name, epoch=lease.epoch, why=event.reason)
        # A gate added while running, or taken over from a replica that died (its last
        # sample is a lease's length old already), is sampled at once; others at their
        # phase, so replicas starting together spread their first samples.
        spread = name not in self._new and not event.takeover
        self._run(loaded, spread=spread, restore=True)
        self._new.discard(name)

    def _give_up(self, name: str, why: str) -> None:
        """This replica no longer owns ``name``: stop its loop now, drop its gauges, and
        replace what it published with what is stored."""
        run = self._runs.get(name)
        if run is None:
            return
        self._halt(name)
        metrics.forget_gate_gauges(name)
        log.info("gate lease lost; sampling stopped", gate=name, why=why)
        if self._catalog.get(name) is not None:
            self._orphan(run)
            self._read_soon(name)

    def _orphan(self, run: _GateRun) -> None:
        name = run.loaded.name
        self._unstored.add(name)
        self._orphans[name] = run.stored_at

    def _release(self, name: str) -> None:
        leases = self._leases
        if leases is None or leases.lease(GATE_LEASE, name) is None:
            return
        self._spawn(asyncio.create_task(leases.release([LeaseKey(GATE_LEASE, name)])))

    # -- the cache of other replicas' decisions ----------------------------------------

    def _on_decision_message(self, payload: str) -> None:
        if self._catalog.get(payload) is None or payload in self._runs:
            return  # not a gate here, or sampled here (memory is newer)
        self._read_soon(payload)

    def _read_soon(self, name: str) -> None:
        """Read ``name``'s newest stored sample into the cache: one read in flight per
        gate; asked again meanwhile, it reads once more when that read ends."""
        if self._stored is None:
            return
        if name in self._reading:
            self._again.add(name)
            return
        self._reading[name] = asyncio.create_task(self._read_gate(name))

    async def _read_gate(self, name: str) -> None:
        try:
            while True:
                self._again.discard(name)
                await self._read_newest([name])
                if name not in self._again:
                    return
        finally:
            self._reading.pop(name, None)

    async def catch_up(self) -> None:
        """Read the newest stored sample of every loaded gate this replica does not own,
        in one query (the bus runs this at start and after every reconnection)."""
        names = [loaded.name for loaded in self._catalog.all() if loaded.name not in self._runs]
        await self._read_newest(names)

    async def _read_newest(self, names: Sequence[str]) -> None:
        if self._stored is None or not names:
            return
        try:
            async with asyncio.timeout(CACHE_READ_BUDGET):
                rows = await self._stored.newest_gate_samples(names)
        except Exception as fault:
            log.warning(
                "reading stored decisions failed; serving what is held until it expires",
                gates=len(names),
                error=f"{type(fault).__name__}: {fault}",
            )
            return
        for name, row in rows.items():
            loaded = self._catalog.get(name)
            if loaded is None or name in self._runs:
                continue
            current = self._published.get(name)
            # What this replica published while it owned the gate may never have been
            # stored: the first read after the loss replaces it whatever its instant.
            trusted = name not in self._unstored
            self._unstored.discard(name)
            if current is not None and trusted and not self._newer(row, current, loaded):
                continue
            if name in self._orphans:
                ours = self._orphans[name]
                if ours is None or row.evaluated_at > ours:  # sampled elsewhere since
                    del self._orphans[name]
            try:
                self._published[name] = self._from_row(row, loaded)
            except (KeyError, ValueError, TypeError):
                log.warning("a stored decision could not be read back", gate=name, sample=row.id)

    @staticmethod
    def _newer(row: SampleRow, current: PublishedDecision, loaded: LoadedGate) -> bool:
        at = current.evaluated.evaluated_at
        if at is None or row.evaluated_at > at:
            return True
        # The same instant judged by the current definition replaces a superseded one.
        return row.evaluated_at == at and row.gate_version == loaded.version

    def _from_row(self, row: SampleRow, loaded: LoadedGate) -> PublishedDecision:
        """A stored sample as a published decision, with the ``expires_at`` it was stored
        with; judged by another version than the gate's now, served as ``no_go``."""
        verdict = verdict_from_row(row)
        expires_at = stored_expires_at(row)
        bound = (
            expires_at - row.evaluated_at
            if expires_at is not None
            else freshness_bound(loaded.gate)
        )
        superseded = None
        if row.gate_version != loaded.version:
            superseded = _redefined(self._clock.now(), loaded.version, row.gate_version)
        return PublishedDecision(
            verdict,
            interval=loaded.gate.interval,
            bound=bound,
            version=row.gate_version,
            superseded=superseded,
        )

    # -- the catalog ---------------------------------------------------------------------

    def _on_catalog_change(self, name: str, loaded: LoadedGate | None) -> None:
        if not self._started:
            return
        previous = self._runs.get(name)
        owned = self.owns(name)
        self._halt(name)
        if loaded is None:
            self._published.pop(name, None)
            self._orphans.pop(name, None)
            metrics.forget_gate(name)
            self._release(name)
            return
        published = self._published.get(name)
        if published is not None and published.version != loaded.version:
            self._published[name] = published.superseded(
                _redefined(self._clock.now(), loaded.version, published.version)
            )
        if previous is not None and owned:
            self._run(loaded, spread=False, stored=previous.stored)
        elif self._leases is None:
            self._run(loaded, spread=False)
        elif published is None:  # a new gate: claimed now, if within this replica's share
            self._new.add(name)
            self._spawn(asyncio.create_task(self._claim_new(name)))
        # Otherwise its owner samples it.

    async def _claim_new(self, name: str) -> None:
        leases = self._leases
        if leases is None or self._share() <= 0:
            return
        try:
            await leases.claim(GATE_LEASE, [name], limit=1)
        except Exception as error:  # the lease loop claims it at its next renewal
            log.warning("claiming a new gate failed", gate=name, error=str(error))

    def _halt(self, name: str) -> None:
        run = self._runs.pop(name, None)
        if run is not None and run.task is not None:
            run.task.cancel()

    def _run(
        self,
        loaded: LoadedGate,
        *,
        spread: bool,
        restore: bool = False,
        stored: Decision | None = None,
    ) -> None:
        self._halt(loaded.name)
        self._orphans.pop(loaded.name, None)
        run = _GateRun(loaded, deque(maxlen=history_size(loaded.gate)), stored=stored)
        published = self._published.get(loaded.name)
        if run.stored is None and published is not None:
            run.stored = published.evaluated.decision
        run.task = asyncio.create_task(
            self._loop(run, spread=spread, restore=restore), name=f"gonogo-gate-{loaded.name}"
        )
        self._runs[loaded.name] = run

    async def _restore(self, run: _GateRun) -> None:
        """Carry on from what is stored: the samples of the gate's current version (the
        probes' windows and the runs need them; the engine's gap rule judges how old they
        are) and the last stored decision (so a takeover or a restart alone announces no
        change, and reads show it until the first sample here)."""
        loaded = run.loaded
        try:
            stored = await self._sink.recent_gate_samples(
                loaded.name, loaded.version, run.history.maxlen or 1
            )
            newest = (
                await self._stored.newest_gate_samples([loaded.name])
                if self._stored is not None
                else {}
            )
        except Exception:
            log.exception("loading a gate's stored samples failed", gate=loaded.name)
            return
        run.history.extend(stored)
        row = newest.get(loaded.name)
        if row is not None:
            run.stored = Decision(row.decision)
            run.stored_at = row.evaluated_at
            current = self._published.get(loaded.name)
            if self._runs.get(loaded.name) is run and (
                current is None or self._newer(row, current, loaded)
            ):
                self._published[loaded.name] = self._from_row(row, loaded)
        if stored:
            log.info("gate history restored", gate=loaded.name, samples=len(stored))

    # -- one gate's loop ---------------------------------------------------------------

    async def _loop(self, run: _GateRun, *, spread: bool, restore: bool = False) -> None:
        if restore:
            await self._restore(run)
        gate = run.loaded.gate
        interval = gate.interval
        anchor = self._clock.now()
        if spread:
            anchor += phase_offset(gate.name, interval)
        ticker = Ticker(self._clock, anchor=anchor, interval=interval)
        while True:
            await ticker.sleep_until_due()
            try:
                if await self._evaluate(run) == "lost":
                    return
            except Exception:  # a fault in publishing must not end the gate's sampling
                log.exception("gate loop fault", gate=gate.name)
            ticker.advance()

    async def _evaluate(self, run: _GateRun) -> Literal["stored", "failed", "lost"]:
        gate = run.loaded.gate
        started = time.perf_counter()
        try:
            async with self._slots:
                sample = await take_sample(
                    gate,
                    run.loaded.probes,
                    now=self._clock.now(),
                    values=placeholder_values(gate),
                    history=tuple(run.history),
                )
            run.history.append(sample)
            verdict = decide_safely(gate, run.history)
        except Exception as fault:  # fail closed and keep sampling
            log.exception("gate evaluation failed", gate=gate.name)
            verdict = Verdict(
                gate.name,
                Decision.NO_GO,
                self._clock.now(),
                (f"evaluation error: {type(fault).__name__}: {fault}",),
                Steady(0, gate.steady_for),
            )
        if self._leases is not None and not self._leases.still_mine(GATE_LEASE, gate.name):
            # lost while sampling: publish nothing
            self._lost(run, "lease lost while sampling")
            return "lost"
        self._publish(run, verdict, time.perf_counter() - started)
        outcome = await self._record(run, verdict)
        if outcome == "stored":
            self._announce(run, verdict)
        elif outcome == "lost":
            self._lost(run, "the sample write was fenced off: the lease is another's")
        return outcome

    def _guard(self, name: str) -> WriteGuard | None:
        leases, bus = self._leases, self._bus
        if leases is None and bus is None:
            return None

        async def guard(session: AsyncSession) -> None:
            if leases is not None:
                await leases.fence(session, GATE_LEASE, name)
            if bus is not None:
                await bus.publish(session, DECISIONS_CHANNEL, name)

        return guard

    def _queue_change(self, run: _GateRun, verdict: Verdict) -> AfterInsert | None:
        """With an outbox: queue the notification of a change against the last stored
        decision in the sample's own transaction (a rollback or a refused fence queues
        nothing; a takeover, which carries the stored decision on, queues nothing)."""
        outbox, gate, previous = self._outbox, run.loaded.gate, run.stored
        if outbox is None or not gate.notify:
            return None
        if verdict.decision is (previous if previous is not None else Decision.NO_GO):
            return None

        async def queue(session: AsyncSession, sample_id: int) -> None:
            await outbox.enqueue(
                session,
                gate=gate,
                verdict=verdict,
                previous=previous,
                key=f"gate:{gate.name}:sample:{sample_id}",
            )

        return queue

    async def _record(self, run: _GateRun, verdict: Verdict) -> Literal["stored", "failed", "lost"]:
        """Store the sample, fenced by the gate's lease, within ``SAMPLE_WRITE_BUDGET``; a
        failure is logged, counted and ages the published decision (see the module
        docstring)."""
        gate = run.loaded.gate
        try:
            async with asyncio.timeout(SAMPLE_WRITE_BUDGET):
                await self._sink.record_gate_sample(
                    gate.name,
                    verdict,
                    version=run.loaded.version,
                    expires_at=_expires_at(verdict, gate),
                    guard=self._guard(gate.name),
                    then=self._queue_change(run, verdict),
                )
        except LeaseLost as lost:
            log.warning("gate sample not stored: lease lost", gate=gate.name, error=str(lost))
            return "lost"
        except Exception as fault:
            log.error(
                "recording a gate sample failed",
                gate=gate.name,
                error=f"{type(fault).__name__}: {fault}",
            )
            metrics.sample_write_failed("gate")
            if run.unrecorded_since is None:
                run.unrecorded_since = verdict.evaluated_at or self._clock.now()
                self._refresh(run, verdict)
            return "failed"
        if run.unrecorded_since is not None:
            log.info("gate samples are stored again", gate=gate.name)
            run.unrecorded_since = None
            self._refresh(run, verdict)
        return "stored"

    def _lost(self, run: _GateRun, why: str) -> None:
        """The loop of ``run`` ends: its lease is another replica's now."""
        name = run.loaded.name
        if self._runs.get(name) is run:
            self._runs.pop(name, None)
            metrics.forget_gate_gauges(name)
            log.info("gate lease lost; sampling stopped", gate=name, why=why)
            self._orphan(run)
            self._read_soon(name)

    def _published_decision(self, run: _GateRun, verdict: Verdict) -> PublishedDecision:
        gate = run.loaded.gate
        return PublishedDecision(
            verdict,
            interval=gate.interval,
            bound=freshness_bound(gate),
            version=run.loaded.version,
            unrecorded_since=run.unrecorded_since,
        )

    def _refresh(self, run: _GateRun, verdict: Verdict) -> None:
        """Publish ``verdict`` again with its expiry recomputed (no metric, no webhook)."""
        if self._runs.get(run.loaded.name) is run:
            self._published[run.loaded.name] = self._published_decision(run, verdict)

    def _publish(self, run: _GateRun, verdict: Verdict, duration_s: float) -> None:
        """Serve ``verdict`` from memory at once and export the gate's gauges."""
        gate = run.loaded.gate
        if self._runs.get(gate.name) is not run:
            return
        self._published[gate.name] = self._published_decision(run, verdict)
        try:
            metrics.observe_evaluation(gate, verdict, duration_s)
        except Exception:
            log.exception("exporting gate metrics failed", gate=gate.name)

    def _announce(self, run: _GateRun, verdict: Verdict) -> None:
        """The sample is stored: a change against the last stored decision is counted and
        notified, once, by this (the owning) replica."""
        gate = run.loaded.gate
        previous = run.stored
        run.stored = verdict.decision
        run.stored_at = verdict.evaluated_at
        before = previous if previous is not None else Decision.NO_GO
        if verdict.decision is before:
            return
        metrics.decision_changed(gate.name, verdict.decision)
        log.info(
            "gate decision changed",
            gate=gate.name,
            decision=verdict.decision.value,
            previous=previous.value if previous is not None else None,
        )
        if self._outbox is None:
            self._notifier.decision_changed(gate, verdict, previous=previous)
