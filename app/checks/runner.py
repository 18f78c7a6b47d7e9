"""Checks (``docs/decisions.md``): one sampling loop per running check, until its final decision.

A check samples its gate from ``created_at + initial_delay``, every ``interval``, with
the check's own placeholder values, and is decided by the engine with the gate's
required sign-offs. It becomes final on the first ``go`` or ``rollback``, at its
deadline (``no_go`` with the last sample's reasons), on a manual decision or when
cancelled. Every sample and decision change is written to the database with the check,
so a restarted process resumes each running check with its history, sign-offs and
original deadline.

Several replicas share the running checks through leases (``app/coordination/leases``,
``docs/architecture.md``, "Checks across replicas"): each running check is a ``check``
lease, and only the replica that holds it runs the check's loop. The candidates are the
running checks in the database (one query each renew period, and at once when a check
is created here or a ``checks`` bus message names a new one). A won lease resumes the
check from the database; a lost one cancels its loop at once. Every write the loop makes
is fenced by the lease in the same transaction, so a replica that lost it (paused, cut
off) writes nothing. Sign-offs, manual decisions and cancellations are written by
whichever replica received the request; they publish ``checks`` (the check id), and the
owner re-reads the check and decides again. Long-polls on any replica wake on that
message, and re-read every ``WAIT_POLL_S`` while the bus cannot listen.

A check is pinned to the gate version it was created with: it is sampled with that
version's probes and judged by that version's definition (kept in the database by
version, so a restarted process judges it the same way), whatever the gate's current
version is; a redefinition during the check is recorded as a ``gate_redefined`` event.
A check whose pinned version can no longer be loaded ends ``no_go`` naming the version.

Writes that end a check are conditional on it still running, so the runner and an API
request that race to end the same check cannot both win.

The loop is supervised: a fault (the database restarted, "database is locked", a write
that timed out) is logged and counted, and the loop starts again after a backoff
(``RETRY_FIRST_S`` doubling up to ``RETRY_MAX_S``), so a check keeps being sampled and
its deadline is enforced as soon as gonogo can write again. Every write is bounded
(``WRITE_BUDGET_S``). A sign-off's re-decision takes a ``go`` only on a sample within the
gate's freshness bound; otherwise the next sample decides (``docs/decisions.md``, "Checks
past their deadline").
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.checks import repository as repo
from app.coordination.bus import Bus, LocalBus
from app.coordination.leases import LeaseEvent, LeaseHolder, LeaseKey, LeaseLost
from app.core.clock import Clock, SystemClock
from app.core.db import CheckRow, Database, SampleRow, SignoffRow, after_commit
from app.core.settings import default_replica_id
from app.core.ticker import Ticker
from app.gates import repository as gate_repo
from app.gates.catalog import GateCatalog, LoadedGate, PinnedVersionUnavailable
from app.gates.freshness import decision_body, stale_reason
from app.gates.samples import measurements_of, sample_from_row
from app.observability import metrics
from app.observability.notify import Notifier
from app.observability.outbox import NotificationOutbox
from gates.engine import (
    Decision,
    Sample,
    Steady,
    Verdict,
    decide_safely,
    deciding_count,
    freshness_bound,
    no_sample_verdict,
)
from gates.model import Gate, history_size
from gates.sampler import placeholder_values, take_sample

log = structlog.get_logger(__name__)


ENGINE = "engine"
# A faulted loop starts again after this, doubling up to RETRY_MAX_S.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
# One unit of work (a sample's transaction, a final write) may take this long.
WRITE_BUDGET_S = 15.0
# The bus channel of checks; its payload is a check id.
CHANNEL = "checks"
KIND = "check"
# While the bus cannot listen, a long-poll re-reads its check this often.
WAIT_POLL_S = 2.0
# The lease TTL of a runner that builds its own holder (one process, no wiring).
DEFAULT_LEASE_TTL = timedelta(seconds=15)


def _body(verdict: Verdict, gate: Gate | None) -> dict[str, Any]:
    """The stored decision body of a check's verdict, with its ``expires_at``."""
    expires_at = (
        verdict.evaluated_at + freshness_bound(gate)
        if gate is not None and verdict.evaluated_at is not None
        else None
    )
    return decision_body(verdict, expires_at)


@dataclass
class _CheckRun:
    id: str
    gate: str
    version: str
    gate_version: str | None
    environment: str | None
    stage: str | None
    vars: dict[str, str]
    created_at: datetime
    deadline: datetime
    signoffs: set[str]
    history: deque[tuple[int, Sample]]
    verdict: Verdict
    done: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ended: bool = False
    task: asyncio.Task[None] | None = None
    # The definition the check is judged by (its pinned gate version), once loaded.
    pinned: LoadedGate | None = None
    # Newer gate versions a ``gate_redefined`` event already announced.
    announced: set[str] = field(default_factory=set)

    def samples(self) -> list[Sample]:
        return [sample for _, sample in self.history]


def _last_recorded(run: _CheckRun) -> int | None:
    """The id of the check's newest recorded sample."""
    return run.history[-1][0] if run.history else None


class CheckRunner:
    """Runs the sampling loop of every running check this replica holds the lease of, and
    wakes those waiting for a check to end, whichever replica owns it.

    ``leases`` is the process's ``LeaseHolder`` and ``bus`` its bus, both started and
    stopped by their owner; without them the runner builds its own (one process: a
    holder that wins every lease, and an in-process bus) and starts and stops them
    itself."""

    def __init__(
        self,
        db: Database,
        catalog: GateCatalog,
        *,
        notifier: Notifier,
        clock: Clock,
        leases: LeaseHolder | None = None,
        bus: Bus | None = None,
        outbox: NotificationOutbox | None = None,
    ) -> None:
        self._db = db
        self._catalog = catalog
        self._notifier = notifier
        # With an outbox, a check's final notification is written in the transaction that
        # makes it final, so exactly the replica whose write committed queues it, once.
        self._outbox = outbox
        self._clock = clock
        self._own_leases = leases is None
        self._leases = leases or LeaseHolder(
            db,
            owner=f"{default_replica_id()}-{secrets.token_hex(3)}",
            ttl=DEFAULT_LEASE_TTL,
            clock=SystemClock(),
        )
        self._own_bus = bus is None
        self._bus: Bus = bus or LocalBus()
        self._runs: dict[str, _CheckRun] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._taking: dict[str, asyncio.Task[None]] = {}
        # Checks created here whose lease commits with them: ``started`` begins them.
        self._created: set[str] = set()
        # Running checks as the database last listed them: what this replica may claim.
        self._candidates: set[str] = set()
        # The long-polls waiting on each check, woken to re-read it.
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._started = False
        self._stopped = False
        # Called with each check that ended (engine, manual decision, cancellation).
        self.end_listeners: list[Callable[[CheckRow], None]] = []
        catalog.subscribe(self._on_gate_change)
        self._leases.want(KIND, candidates=self._running_ids)
        self._leases.subscribe(self._on_lease)
        self._bus.subscribe(CHANNEL, self._on_message)
        self._bus.on_connected(self._on_connected)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Claim the running checks no replica holds and resume those won; the lease
        loop claims the rest as they become free."""
        self._started = True
        if self._own_bus:
            await self._bus.start()
        try:
            async with asyncio.timeout(WRITE_BUDGET_S):
                await self._leases.claim(KIND, await self._running_ids())
        except Exception as error:
            log.warning(
                "claiming running checks failed; the lease loop tries again",
                error=f"{type(error).__name__}: {error}",
            )
        await asyncio.gather(*list(self._taking.values()), return_exceptions=True)
        if self._runs:
            log.info("checks resumed", count=len(self._runs))
        if self._own_leases:
            self._leases.start()

    async def stop(self) -> None:
        """Stop every loop, then give this replica's check leases back at once, so
        another replica takes the checks over within about a renew period."""
        self._started = False
        self._stopped = True
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        tasks.extend(self._background)
        tasks.extend(self._taking.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        gates = {run.gate for run in self._runs.values()}
        for run in self._runs.values():
            self._release(run)
        self._runs.clear()
        held = [LeaseKey(KIND, lease.id) for lease in self._leases.held(KIND)]
        if held:
            try:
                async with asyncio.timeout(WRITE_BUDGET_S):
                    await self._leases.release(held)
            except Exception as error:
                log.warning(
                    "check leases not released; they expire instead",
                    error=f"{type(error).__name__}: {error}",
                )
        for gate in gates:
            self._export_running(gate)
        if self._own_leases:
            await self._leases.stop(release=True)
        if self._own_bus:
            await self._bus.stop()

    async def created(self, session: AsyncSession, row: CheckRow) -> None:
        """A check is being created in ``session``'s transaction: its lease is inserted
        as this replica's in the same transaction, the other replicas are told at
        commit, and ``started`` (after commit) begins sampling it here at once."""
        if self._started:
            await self._leases.claim_new(session, KIND, row.id)
            self._created.add(row.id)
            self._candidates.add(row.id)  # so its own message reads nothing
        await self.publish(session, row.id)

    async def publish(self, session: AsyncSession, check_id: str) -> None:
        """Tell every replica, when ``session`` commits, that the check changed (a new
        check, a sign-off, a final state): its owner re-reads it, waiters wake."""
        await self._bus.publish(session, CHANNEL, check_id)

    # -- leases ------------------------------------------------------------------------

    async def _running_ids(self) -> Collection[str]:
        """The running checks' ids (one indexed query): the leases this replica wants;
        none once the runner has stopped (the holder may outlive it)."""
        if self._stopped:
            return set()
        async with self._db.session() as session:
            found = set(await repo.running_ids(session))
        self._candidates = found
        return found

    def _on_lease(self, event: LeaseEvent) -> None:
        if event.lease.kind != KIND:
            return
        check_id = event.lease.id
        if event.change == "won":
            if self._stopped:  # a claim that was under way when the runner stopped
                release = asyncio.ensure_future(self._give_back(check_id))
                self._background.add(release)
                release.add_done_callback(self._background.discard)
                return
            if check_id in self._runs or check_id in self._taking or check_id in self._created:
                return
            task = asyncio.ensure_future(self._take(check_id))
            task.set_name(f"gonogo-take-{check_id}")
            self._taking[check_id] = task
            task.add_done_callback(lambda _t: self._taking.pop(check_id, None))
            return
        run = self._runs.pop(check_id, None)
        if run is not None:
            log.warning(
                "check lease lost; its loop stops here", check=check_id, reason=event.reason
            )
            if run.task is not None:
                run.task.cancel()
            self._release(run)
            self._export_running(run.gate)
        self._poke(check_id)

    async def _take(self, check_id: str) -> None:
        """A won lease: resume the check from the database (pinned definition, the
        samples it had, sign-offs, deadline), or give the lease back if it has ended."""
        try:
            async with self._db.session() as session:
                row = await repo.check(session, check_id)
                signoffs = await repo.signoffs(session, check_id) if row is not None else []
            if row is None or row.state != repo.RUNNING:
                self._candidates.discard(check_id)
                await self._give_back(check_id)
                return
            if self._stopped or check_id in self._runs:
                return
            await self._resume(row, signoffs)
            self._export_running(row.gate)
            log.info("check taken", check=check_id, gate=row.gate, owner=self._leases.owner)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning(
                "taking a check failed; its lease is given back",
                check=check_id,
                error=f"{type(error).__name__}: {error}",
            )
            await self._give_back(check_id)

    async def _give_back(self, check_id: str) -> None:
        """Release the check's lease (best effort: unreleased, it expires)."""
        try:
            async with asyncio.timeout(WRITE_BUDGET_S):
                await self._leases.release([LeaseKey(KIND, check_id)])
        except Exception as error:
            log.warning(
                "check lease not released; it expires instead",
                check=check_id,
                error=f"{type(error).__name__}: {error}",
            )

    async def _claim_now(self, check_id: str) -> None:
        try:
            async with asyncio.timeout(WRITE_BUDGET_S):
                await self._leases.claim(KIND, [check_id])
        except Exception as error:
            log.warning(
                "claiming a new check failed; the lease loop tries again",
                check=check_id,
                error=f"{type(error).__name__}: {error}",
            )

    @asynccontextmanager
    async def _fenced(self, run: _CheckRun) -> AsyncIterator[AsyncSession]:
        """A bounded write transaction that commits only while this replica holds the
        check's lease (``LeaseLost`` otherwise, and nothing is written)."""
        async with asyncio.timeout(WRITE_BUDGET_S), self._db.session() as session:
            await self._leases.fence(session, KIND, run.id)
            yield session

    async def _abandon(self, run: _CheckRun, lost: LeaseLost) -> None:
        """A fenced write found the lease gone: stop here and give back what is left."""
        log.warning(
            "check lease lost; nothing written, its loop stops here", check=run.id, error=str(lost)
        )
        if self._runs.get(run.id) is run:
            del self._runs[run.id]
            self._export_running(run.gate)
        self._release(run)
        self._poke(run.id)
        await self._give_back(run.id)

    # -- the bus -----------------------------------------------------------------------

    def _on_message(self, check_id: str) -> None:
        if self._stopped or not check_id:
            return
        self._poke(check_id)
        run = self._runs.get(check_id)
        if run is not None:
            self._spawn(self._refresh(run), name=f"gonogo-refresh-{check_id}")
        elif check_id not in self._candidates:
            self._spawn(self._heard_new(check_id), name=f"gonogo-heard-{check_id}")

    async def _on_connected(self) -> None:
        """The bus listens (again): what was said meanwhile may be lost, so waiters
        re-read and the owner re-reads each of its checks."""
        for check_id in list(self._watchers):
            self._poke(check_id)
        for run in list(self._runs.values()):
            self._spawn(self._refresh(run), name=f"gonogo-refresh-{run.id}")

    async def _heard_new(self, check_id: str) -> None:
        """A check this replica did not know of: claim it if it is running."""
        try:
            async with self._db.session() as session:
                row = await repo.check(session, check_id)
        except Exception as error:
            log.warning(
                "reading a check failed", check=check_id, error=f"{type(error).__name__}: {error}"
            )
            return
        if row is not None and row.state == repo.RUNNING:
            self._candidates.add(check_id)
            await self._claim_now(check_id)

    async def _refresh(self, run: _CheckRun) -> None:
        """Re-read an owned check: ended elsewhere, stop; new sign-offs, decide again."""
        try:
            async with self._db.session() as session:
                row = await repo.check(session, run.id)
                signoffs = await repo.signoffs(session, run.id)
        except Exception as error:
            log.warning(
                "re-reading a check failed", check=run.id, error=f"{type(error).__name__}: {error}"
            )
            return
        if row is None or row.state != repo.RUNNING:
            await self._ended_elsewhere(run)
            return
        new = {s.signoff for s in signoffs} - run.signoffs
        if new and not run.ended:
            run.signoffs |= new
            await self._redecide(run)

    async def _ended_elsewhere(self, run: _CheckRun) -> None:
        """The check was ended by a request on some replica, which did the rest (events,
        listeners, notification): stop its loop here, wake waiters, free the lease."""
        run.ended = True
        if self._runs.get(run.id) is run:
            del self._runs[run.id]
            self._export_running(run.gate)
        if (
            run.task is not None
            and not run.lock.locked()
            and run.task is not asyncio.current_task()
        ):
            run.task.cancel()
        run.done.set()
        self._release(run)
        self._poke(run.id)
        self._candidates.discard(run.id)
        await self._give_back(run.id)

    def _poke(self, check_id: str) -> None:
        for event in self._watchers.get(check_id, ()):
            event.set()

    async def _resume(self, row: CheckRow, signoffs: Sequence[SignoffRow]) -> None:
        """Resume a running check with its pinned definition and that version's samples; a
        version that cannot be loaded ends the check in its loop."""
        pinned = await self._try_pin(row.gate, row.gate_version)
        keep = history_size(pinned.gate) if pinned is not None else 1
        async with self._db.session() as session:
            samples = await repo.recent_check_samples(
                session, row.id, keep, gate_version=row.gate_version
            )
            announced = await repo.redefinitions_announced(session, row.id)
        if self._stopped or row.id in self._runs or not self._leases.still_mine(KIND, row.id):
            if pinned is not None:
                self._catalog.unpin(row.gate, pinned.version)
            return
        run = self._begin(row, signoffs, samples, keep, pinned=pinned)
        run.announced |= announced

    def _begin(
        self,
        row: CheckRow,
        signoffs: Sequence[SignoffRow],
        samples: Sequence[SampleRow],
        keep: int,
        *,
        pinned: LoadedGate | None = None,
    ) -> _CheckRun:
        loaded = pinned or self._catalog.get(row.gate)
        steady_for = loaded.gate.steady_for if loaded is not None else 1
        history: deque[tuple[int, Sample]] = deque(maxlen=max(keep, 1))
        for stored in samples:
            try:
                history.append((stored.id, sample_from_row(stored)))
            except (KeyError, ValueError, TypeError):
                log.warning(
                    "a stored sample could not be read back", check=row.id, sample=stored.id
                )
        run = _CheckRun(
            id=row.id,
            gate=row.gate,
            version=row.version,
            gate_version=row.gate_version,
            environment=row.environment,
            stage=row.stage,
            vars=dict(row.vars),
            created_at=row.created_at,
            deadline=row.deadline,
            signoffs={s.signoff for s in signoffs},
            history=history,
            verdict=_verdict_from_body(row.verdict, row.gate, steady_for),
            pinned=pinned,
        )
        self._runs[run.id] = run
        run.task = asyncio.create_task(self._loop(run), name=f"gonogo-check-{run.id}")
        return run

    # -- the pinned definition ---------------------------------------------------------

    async def _pin(self, gate: str, version: str | None) -> LoadedGate:
        """The definition of ``gate`` at ``version`` with its probes, from the catalog's
        cache or the stored text; raises ``PinnedVersionUnavailable``."""
        if version is None:
            raise PinnedVersionUnavailable(
                gate, "(none)", "the check was created before gate versions were recorded"
            )
        current = self._catalog.get(gate)
        text = None
        if (current is None or current.version != version) and (
            gate,
            version,
        ) not in self._catalog.pinned_versions():
            async with self._db.session() as session:
                text = await gate_repo.gate_version_text(session, gate, version)
        return await self._catalog.pin(gate, version, text)

    async def _try_pin(self, gate: str, version: str | None) -> LoadedGate | None:
        try:
            return await self._pin(gate, version)
        except PinnedVersionUnavailable:
            return None  # the check's loop tries again and ends it with the cause
        except Exception:
            log.exception("loading a check's gate version failed", gate=gate, version=version)
            return None

    async def _judge_of(self, run: _CheckRun) -> LoadedGate | None:
        """The check's pinned definition, loaded on first use; None once the check was
        ended because that version cannot be loaded."""
        if run.pinned is not None:
            return run.pinned
        try:
            pinned = await self._pin(run.gate, run.gate_version)
        except PinnedVersionUnavailable as missing:
            reason = f"{missing}; the check is judged only by the version it started with"
            await self._end_by_engine(run, Decision.NO_GO, (reason,), None)
            return None
        if run.ended:  # ended meanwhile by a request, whose hook has already released it
            self._catalog.unpin(run.gate, pinned.version)
            return None
        run.pinned = pinned
        keep = history_size(pinned.gate)
        if run.history.maxlen != keep:
            run.history = deque(run.history, maxlen=keep)
        return pinned

    def _release(self, run: _CheckRun) -> None:
        """The check is over: let go of its pinned definition (and unused probes)."""
        pinned, run.pinned = run.pinned, None
        if pinned is not None:
            self._catalog.unpin(run.gate, pinned.version)

    def _on_gate_change(self, name: str, loaded: LoadedGate | None) -> None:
        if loaded is None:
            return
        for run in list(self._runs.values()):
            if run.gate == name:
                self._spawn(self._announce(run, loaded.version), name=f"gonogo-pin-{run.id}")

    async def _announce(self, run: _CheckRun, current: str) -> None:
        """Record once that the gate has a new version and the check stays pinned."""
        if run.ended or current == run.gate_version or current in run.announced:
            return
        run.announced.add(current)
        try:
            async with run.lock, self._fenced(run) as session:
                if run.ended or not await repo.lock_running(session, run.id):
                    return
                await repo.add_event(
                    session,
                    run.id,
                    repo.REDEFINED,
                    at=self._clock.now(),
                    actor=ENGINE,
                    data={
                        "pinned": run.gate_version,
                        "current": current,
                        "note": (
                            f"gate {run.gate!r} now has version {current}; this check stays"
                            f" pinned to version {run.gate_version}"
                        ),
                    },
                )
        except LeaseLost:
            run.announced.discard(current)  # the loop's next write stops it
        except Exception:
            run.announced.discard(current)
            log.exception("recording a gate redefinition failed", check=run.id)

    # -- called by the services after their transaction committed ----------------------

    def started(self, row: CheckRow) -> None:
        """A new check was committed here with its lease: start sampling it. Without the
        lease (committed too late to act on), claim it like any other running check."""
        self._created.discard(row.id)
        if not self._started or row.id in self._runs:
            return
        self._candidates.add(row.id)
        if not self._leases.still_mine(KIND, row.id):
            self._spawn(self._claim_now(row.id), name=f"gonogo-claim-{row.id}")
            return
        loaded = self._catalog.get(row.gate)
        self._begin(row, [], [], history_size(loaded.gate) if loaded else 1)
        self._export_running(row.gate)

    def signed(self, check_id: str, signoff: str) -> None:
        """A sign-off was committed: decide again at once with the samples already taken."""
        run = self._runs.get(check_id)
        if run is None:
            return
        run.signoffs.add(signoff)
        self._spawn(self._redecide(run), name=f"gonogo-signoff-{check_id}")

    def ended(self, row: CheckRow, verdict: Verdict | None) -> None:
        """A manual decision or a cancellation was committed on this replica: stop
        sampling if it runs here, wake waiters, and do what follows an end (listeners,
        metrics, notification) here, once. The owner, if another replica, stops on the
        ``checks`` message."""
        self._candidates.discard(row.id)
        self._poke(row.id)
        run = self._runs.pop(row.id, None)
        if run is not None:
            run.ended = True
            if run.task is not None and not run.lock.locked():
                run.task.cancel()
            run.done.set()
            self._release(run)
            self._spawn(self._give_back(row.id), name=f"gonogo-release-{row.id}")
        outcome = row.decision if row.state == repo.FINAL and row.decision else "cancelled"
        self._finished(row, outcome, verdict)

    # -- reads: memory only ------------------------------------------------------------

    async def wait_final(self, check_id: str, seconds: float) -> None:
        """Return when the check ends, whichever replica owns it, or when ``seconds`` (on
        the clock) have passed. The owner wakes its waiters from memory; elsewhere a
        waiter re-reads the check on each ``checks`` message naming it, after each bus
        reconnect, and every ``WAIT_POLL_S`` while the bus cannot listen."""
        if seconds <= 0:
            return
        give_up = self._clock.now() + timedelta(seconds=seconds)
        poke = asyncio.Event()
        watchers = self._watchers.setdefault(check_id, set())
        watchers.add(poke)
        try:
            while True:
                poke.clear()  # before reading, so a message meanwhile is not missed
                run = self._runs.get(check_id)
                if run is not None:
                    if run.done.is_set():
                        return
                elif not await self._reads_running(check_id):
                    return
                left = (give_up - self._clock.now()).total_seconds()
                if left <= 0:
                    return
                nap = left if self._bus.listening else min(left, WAIT_POLL_S)
                waits = [poke.wait(), self._clock.sleep(nap)]
                if run is not None:
                    waits.append(run.done.wait())
                await _first_of(waits)
        finally:
            watchers.discard(poke)
            if not watchers:
                self._watchers.pop(check_id, None)

    async def _reads_running(self, check_id: str) -> bool:
        """Whether the database has the check running (a failed read ends the wait: the
        request then reads the check itself and answers)."""
        try:
            async with self._db.session() as session:
                row = await repo.check(session, check_id)
        except Exception as error:
            log.warning(
                "a long-poll could not re-read its check",
                check=check_id,
                error=f"{type(error).__name__}: {error}",
            )
            return False
        return row is not None and row.state == repo.RUNNING

    def definition(self, check_id: str) -> Gate | None:
        """The gate definition a running check is judged by (its pinned version), once
        loaded; sign-offs are checked against it, not against a newer version."""
        run = self._runs.get(check_id)
        return run.pinned.gate if run is not None and run.pinned is not None else None

    async def definition_of(self, row: CheckRow) -> Gate | None:
        """The definition ``row`` is judged by, on any replica: the owner's pinned one,
        else the current one if the check is pinned to it, else its stored version
        (None when that cannot be loaded)."""
        pinned = self.definition(row.id)
        if pinned is not None:
            return pinned
        current = self._catalog.get(row.gate)
        if current is not None and current.version == row.gate_version:
            return current.gate
        try:
            loaded = await self._pin(row.gate, row.gate_version)
        except PinnedVersionUnavailable:
            return None
        self._catalog.unpin(row.gate, loaded.version)
        return loaded.gate

    def is_running(self, check_id: str) -> bool:
        return check_id in self._runs

    def running_checks(self) -> list[dict[str, Any]]:
        """Every running check with its latest decision body (for the status page)."""
        found = []
        for run in sorted(self._runs.values(), key=lambda r: r.created_at):
            loaded = run.pinned or self._catalog.get(run.gate)
            required = [s.id for s in loaded.gate.signoffs] if loaded is not None else []
            found.append(
                {
                    "id": run.id,
                    "gate": run.gate,
                    "version": run.version,
                    "gate_version": run.gate_version,
                    "environment": run.environment,
                    "stage": run.stage,
                    "created_at": run.created_at,
                    "deadline": run.deadline,
                    "latest": _body(run.verdict, loaded.gate if loaded is not None else None),
                    "missing_signoffs": [s for s in required if s not in run.signoffs],
                }
            )
        return found

    # -- one check's loop --------------------------------------------------------------

    async def _loop(self, run: _CheckRun) -> None:
        """Drive the check until it ends; a fault starts the drive again after a backoff."""
        delay = RETRY_FIRST_S
        recorded = _last_recorded(run)
        while not run.ended:
            try:
                await self._drive(run)
                break
            except asyncio.CancelledError:
                raise
            except LeaseLost as lost:
                await self._abandon(run, lost)
                return
            except Exception as fault:
                if _last_recorded(run) != recorded:  # samples since the last fault: a new one
                    recorded = _last_recorded(run)
                    delay = RETRY_FIRST_S
                metrics.sample_write_failed("check")
                log.error(
                    "check loop fault; retrying",
                    check=run.id,
                    error=f"{type(fault).__name__}: {fault}",
                    retry_in_s=delay,
                )
                await self._clock.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        if self._runs.get(run.id) is run:
            # Its conditional write found it ended by a request on another replica.
            await self._ended_elsewhere(run)

    async def _drive(self, run: _CheckRun) -> None:
        ticker: Ticker | None = None
        while not run.ended:
            current = self._catalog.get(run.gate)
            if current is None:
                await self._end_by_engine(
                    run, Decision.NO_GO, (f"gate {run.gate!r} was removed",), None
                )
                return
            await self._announce(run, current.version)
            loaded = await self._judge_of(run)
            if loaded is None:
                return
            gate = loaded.gate
            if ticker is None:
                start = run.created_at + gate.initial_delay
                ticker = Ticker(self._clock, anchor=start, interval=gate.interval)
                _skip_sampled_ticks(ticker, run)
            ticker.interval = gate.interval
            if self._clock.now() >= run.deadline:
                await self._time_out(run, gate)
                return
            if ticker.due > self._clock.now():
                await ticker.sleep_until_due(limit=run.deadline)
                continue
            await self._sample(run, loaded)
            if run.ended:
                return
            ticker.advance()

    async def _sample(self, run: _CheckRun, loaded: LoadedGate) -> None:
        gate = loaded.gate
        try:
            sample = await take_sample(
                gate,
                loaded.probes,
                now=self._clock.now(),
                values=placeholder_values(
                    gate,
                    version=run.version,
                    environment=run.environment,
                    stage=run.stage,
                    check_vars=run.vars,
                ),
                check_started_at=run.created_at,
                history=run.samples(),
            )
        except Exception as fault:  # fail closed: a sample that broke is an inconclusive one
            log.exception("check sample failed", check=run.id, gate=gate.name)
            sample = Sample(self._clock.now(), ())
            reason = f"sampling error: {type(fault).__name__}: {fault}"
            await self._record(run, gate, sample, error=reason)
            return
        await self._record(run, gate, sample, error=None)

    async def _record(
        self, run: _CheckRun, gate: Gate, sample: Sample, *, error: str | None
    ) -> None:
        async with run.lock:
            if run.ended:
                return
            samples = [*run.samples(), sample]
            verdict = (
                Verdict(
                    gate.name,
                    Decision.NO_GO,
                    sample.evaluated_at,
                    (error,),
                    Steady(0, gate.steady_for),
                )
                if error is not None
                else self._decide(run, gate, samples)
            )
            if verdict.decision is Decision.GO and not _may_go(
                run, gate, sample, self._clock.now()
            ):
                verdict = _not_fresh(verdict, gate, sample)
            previous = run.verdict
            body = _body(verdict, gate)
            final = verdict.decision in (Decision.GO, Decision.ROLLBACK)
            stored = list(run.history)
            committed: list[CheckRow | None] = []

            def on_commit(row: CheckRow | None) -> None:
                # Run by the session once the database has committed, even when the write
                # budget ran out meanwhile: what is stored is what the run goes on from.
                committed.append(row)
                run.verdict = verdict
                if row is not None:
                    self._after_engine_end(run, row, verdict, previous.decision)

            try:
                async with self._fenced(run) as session:
                    if not await repo.update_running_verdict(session, run.id, body):
                        run.ended = True  # ended by a request; its own hook does the rest
                        return
                    sample_id = await gate_repo.add_sample(
                        session,
                        gate=gate.name,
                        check_id=run.id,
                        evaluated_at=sample.evaluated_at,
                        decision=verdict.decision.value,
                        body=body,
                        measurements=measurements_of(sample),
                        gate_version=run.gate_version,
                    )
                    await repo.add_event(
                        session,
                        run.id,
                        "sample",
                        at=sample.evaluated_at,
                        actor=ENGINE,
                        data={
                            "sample_id": sample_id,
                            "gate_version": run.gate_version,
                            "decision": verdict.decision.value,
                            "reasons": list(verdict.reasons),
                        },
                    )
                    if verdict.decision is not previous.decision:
                        await repo.add_event(
                            session,
                            run.id,
                            "decision_changed",
                            at=sample.evaluated_at,
                            actor=ENGINE,
                            data={
                                "from": previous.decision.value,
                                "to": verdict.decision.value,
                                "reasons": list(verdict.reasons),
                            },
                        )
                    run.history.append((sample_id, sample))
                    row = (
                        await self._finish(session, run, gate, verdict, previous.decision)
                        if final
                        else None
                    )
                    after_commit(session, lambda: on_commit(row))
            except BaseException:
                if not committed:
                    # Not committed, so never stored: the sample leaves the history again
                    # (a steady run of samples nobody can see would otherwise build up,
                    # one per retry, and go long before its intervals had passed).
                    run.history.clear()
                    run.history.extend(stored)
                raise

    def _decide(self, run: _CheckRun, gate: Gate, samples: Sequence[Sample]) -> Verdict:
        return decide_safely(
            gate,
            samples,
            required_signoffs=[s.id for s in gate.signoffs],
            recorded_signoffs=frozenset(run.signoffs),
        )

    async def _redecide(self, run: _CheckRun) -> None:
        try:
            await self._redecide_fenced(run)
        except LeaseLost as lost:
            await self._abandon(run, lost)

    async def _redecide_fenced(self, run: _CheckRun) -> None:
        loaded = run.pinned  # a check not yet pinned has no sample to decide on either
        if loaded is None:
            return
        gate = loaded.gate
        async with run.lock:
            if run.ended or not run.history:
                return
            now = self._clock.now()
            latest = run.history[-1][1]
            previous = run.verdict
            verdict = self._decide(run, gate, run.samples())
            if verdict.decision is Decision.GO and not _may_go(run, gate, latest, now):
                # The sign-off is recorded; the go it allows waits for a fresh sample.
                log.info(
                    "sign-off recorded; go waits for a fresh sample",
                    check=run.id,
                    sample_at=latest.evaluated_at.isoformat(),
                )
                return
            row: CheckRow | None = None
            async with self._fenced(run) as session:
                if not await repo.update_running_verdict(session, run.id, _body(verdict, gate)):
                    return
                if verdict.decision is not previous.decision:
                    await repo.add_event(
                        session,
                        run.id,
                        "decision_changed",
                        at=self._clock.now(),
                        actor=ENGINE,
                        data={
                            "from": previous.decision.value,
                            "to": verdict.decision.value,
                            "reasons": list(verdict.reasons),
                            "after": "sign-off",
                        },
                    )
                if verdict.decision is Decision.GO:
                    row = await self._finish(session, run, gate, verdict, previous.decision)
            run.verdict = verdict
            if row is not None:
                self._after_engine_end(run, row, verdict, previous.decision)

    async def _time_out(self, run: _CheckRun, gate: Gate) -> None:
        timeout = run.deadline - run.created_at
        reasons = (
            *run.verdict.reasons,
            f"timed out after {_duration(timeout)} without a go decision",
        )
        last = run.history[-1][1] if run.history else None
        await self._end_by_engine(run, Decision.NO_GO, reasons, last, steady_for=gate.steady_for)

    async def _end_by_engine(
        self,
        run: _CheckRun,
        decision: Decision,
        reasons: Sequence[str],
        last: Sample | None,
        *,
        steady_for: int = 1,
    ) -> None:
        async with run.lock:
            if run.ended:
                return
            verdict = Verdict(
                run.gate,
                decision,
                self._clock.now(),
                tuple(reasons),
                run.verdict.steady if run.history else Steady(0, steady_for),
                last.results if last is not None else (),
            )
            async with self._fenced(run) as session:
                row = await self._finish(session, run, None, verdict, Decision.NO_GO)
            if row is not None:
                run.verdict = verdict
                self._after_engine_end(run, row, verdict, Decision.NO_GO)

    async def _finish(
        self,
        session: Any,
        run: _CheckRun,
        gate: Gate | None,
        verdict: Verdict,
        previous: Decision | None,
    ) -> CheckRow | None:
        deciding = _deciding_samples(run, gate, verdict)
        now = self._clock.now()
        loaded = self._catalog.get(run.gate)
        if not await repo.finish_check(
            session,
            run.id,
            state=repo.FINAL,
            decision=verdict.decision.value,
            verdict=_body(verdict, gate or (loaded.gate if loaded is not None else None)),
            decided_at=now,
            decided_by=ENGINE,
            deciding_samples=deciding,
        ):
            run.ended = True
            return None
        await repo.add_event(
            session,
            run.id,
            "final",
            at=now,
            actor=ENGINE,
            data={
                "decision": verdict.decision.value,
                "reasons": list(verdict.reasons),
                "deciding_samples": deciding,
                "gate_version": run.gate_version,
            },
        )
        await self.publish(session, run.id)
        row = await repo.check(session, run.id)
        if row is not None:
            await self.queue_final_notification(session, row, verdict, previous=previous)
        return row

    async def queue_final_notification(
        self,
        session: AsyncSession,
        row: CheckRow,
        verdict: Verdict,
        *,
        previous: Decision | None = Decision.NO_GO,
    ) -> None:
        """Queue the notification of a check's final decision in ``session``'s transaction
        (the one that makes it final), keyed by the check: written once, sent by whichever
        replica's outbox gets to it. Nothing without an outbox (the notifier sends it after
        the end instead)."""
        loaded = self._catalog.get(row.gate)
        if self._outbox is None or loaded is None:
            return
        await self._outbox.enqueue(
            session,
            gate=loaded.gate,
            verdict=verdict,
            previous=previous,
            key=f"check:{row.id}:final",
            check=_check_summary(row),
        )

    def _after_engine_end(
        self, run: _CheckRun, row: CheckRow, verdict: Verdict, previous: Decision
    ) -> None:
        run.ended = True
        self._runs.pop(run.id, None)
        self._candidates.discard(run.id)
        run.done.set()
        self._poke(run.id)
        self._release(run)
        self._spawn(self._give_back(run.id), name=f"gonogo-release-{run.id}")
        log.info("check final", check=run.id, gate=run.gate, decision=verdict.decision.value)
        self._finished(row, verdict.decision.value, verdict, previous=previous)

    def _finished(
        self,
        row: CheckRow,
        outcome: str,
        verdict: Verdict | None,
        *,
        previous: Decision | None = Decision.NO_GO,
    ) -> None:
        for listener in self.end_listeners:
            listener(row)
        try:
            metrics.check_finished(row.gate, outcome)
        except Exception:
            log.exception("exporting check metrics failed", check=row.id)
        self._export_running(row.gate)
        loaded = self._catalog.get(row.gate)
        if verdict is None or loaded is None or self._outbox is not None:
            return
        try:
            self._notifier.decision_changed(
                loaded.gate, verdict, previous=previous, check=_check_summary(row)
            )
        except Exception:
            log.exception("queueing a check notification failed", check=row.id)

    def _export_running(self, gate: str) -> None:
        count = sum(1 for run in self._runs.values() if run.gate == gate)
        try:
            metrics.set_checks_running(gate, count)
        except Exception:
            log.exception("exporting running checks failed", gate=gate)

    def _spawn(self, work: Any, *, name: str) -> None:
        task = asyncio.ensure_future(work)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def _first_of(waits: Sequence[Awaitable[Any]]) -> None:
    """Wait until the first of ``waits`` is done; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _skip_sampled_ticks(ticker: Ticker, run: _CheckRun) -> None:
    """A resumed check (a restart, a takeover) starts at the first tick after its newest
    stored sample: no tick is sampled twice, by one replica or by two."""
    if not run.history:
        return
    last = run.history[-1][1].evaluated_at
    if last >= ticker.anchor:
        ticker.tick = (last - ticker.anchor) // ticker.interval + 1


def _check_summary(row: CheckRow) -> dict[str, Any]:
    """What a notification says of the check it is about."""
    return {
        "id": row.id,
        "version": row.version,
        "environment": row.environment,
        "stage": row.stage,
        "state": row.state,
        "decided_by": row.decided_by,
    }


def _may_go(run: _CheckRun, gate: Gate, latest: Sample, now: datetime) -> bool:
    """A ``go`` may be taken only before the deadline and on a sample within the gate's
    freshness bound."""
    return now < run.deadline and now < latest.evaluated_at + freshness_bound(gate)


def _not_fresh(verdict: Verdict, gate: Gate, sample: Sample) -> Verdict:
    """A ``go`` on a sample that was already stale when it was decided (it took longer
    than the freshness bound to answer): ``no_go``, and the next sample decides."""
    expires_at = sample.evaluated_at + freshness_bound(gate)
    return dataclasses.replace(
        verdict,
        decision=Decision.NO_GO,
        reasons=(stale_reason(sample.evaluated_at, expires_at, gate.interval),),
    )


def _deciding_samples(run: _CheckRun, gate: Gate | None, verdict: Verdict) -> list[int]:
    """The samples the final decision rests on: the steady run for go, the breaches for
    rollback, the last sample otherwise."""
    ids = [sample_id for sample_id, _ in run.history]
    if not ids:
        return []
    if gate is not None and verdict.decision in (Decision.GO, Decision.ROLLBACK):
        count = deciding_count(gate, run.samples(), verdict.decision)
    elif verdict.decision is Decision.GO:
        count = verdict.steady.passes
    else:
        count = 1
    return ids[-max(1, count) :]


def _verdict_from_body(body: Mapping[str, Any], gate: str, steady_for: int) -> Verdict:
    """The latest verdict of a resumed check, enough to judge decision changes by."""
    try:
        steady = body.get("steady") or {}
        evaluated = body.get("evaluated_at")
        return Verdict(
            gate,
            Decision(body.get("decision") or Decision.NO_GO.value),
            datetime.fromisoformat(evaluated) if evaluated else None,
            tuple(body.get("reasons") or ()),
            Steady(int(steady.get("passes", 0)), int(steady.get("needed", steady_for))),
        )
    except (ValueError, TypeError):
        return no_sample_verdict(gate, steady_for)


def _duration(span: timedelta) -> str:
    from gates.conditions import format_duration

    return format_duration(span)
