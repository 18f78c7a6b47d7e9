"""Leases: which replica may sample each gate and each running check.

A lease is a row of ``leases`` keyed by (kind, id), kind ``gate`` or ``check``, with its
owner (a replica id), an epoch and ``expires_at``. Every instant in these statements is
the **database's** clock, never a replica's: replicas whose clocks disagree still agree
on who holds what.

- ``claim`` takes free or expired leases in one statement (``SELECT … FOR UPDATE SKIP
  LOCKED`` on PostgreSQL, so two replicas claiming at once never take the same row; on
  SQLite the statement holds the single write lock). Every claim starts a new tenure:
  the epoch grows by one.
- ``renew`` extends everything this replica holds in one statement; a lease missing from
  its answer was lost (it expired meanwhile, and perhaps another replica took it).
- ``release`` frees leases at once (graceful stop), so another replica need not wait
  for them to expire.
- ``fence`` makes a write transaction conditional on a lease and its epoch still holding,
  on the database clock, and keeps the row locked until the transaction ends, so no
  claim can take the lease between the check and the commit.

Besides the database's view, a holder keeps a **local deadline** per lease on the
monotonic clock: the instant a successful claim or renew *started* (before the statement
was sent, so a slow answer shortens it) plus the TTL minus a margin. ``still_mine``
answers from it, so a holder cut off from the database, or paused, stops acting before
its leases can expire for anyone else, without having to hear from the database first.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

import structlog
from sqlalchemy import (
    ColumnElement,
    DateTime,
    Interval,
    String,
    Table,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import Clock
from app.core.db import LEASE_KINDS, Database, LeaseRow, after_commit
from app.observability import metrics
from probes.errors import GonogoError

log = structlog.get_logger(__name__)

LEASES = cast(Table, LeaseRow.__table__)
LeaseKind = Literal["gate", "check"]
# A row of this kind per replica, renewed with its leases, says the replica is alive, so
# a fair share (``want(..., limit=callable)`` reading ``replicas``) counts replicas that
# hold nothing yet. It is never claimed, won or lost: no listener hears of it.
PRESENCE_KIND = "replica"
Monotonic = Callable[[], float]

# A holder's local deadline ends this share of the TTL before the lease can expire in the
# database: time for a loop told to stop to finish what it is doing.
DEFAULT_MARGIN_SHARE = 0.2


@dataclass(frozen=True)
class LeaseKey:
    kind: str
    id: str


@dataclass(frozen=True)
class Lease:
    """One tenure of one lease. ``expires_at`` is as the database computed it."""

    kind: str
    id: str
    owner: str
    epoch: int
    expires_at: datetime | None = None

    @property
    def key(self) -> LeaseKey:
        return LeaseKey(self.kind, self.id)


class LeaseLost(GonogoError):
    """A write was fenced by a lease its writer no longer holds: it expired, another
    replica took it (a newer epoch), or it was released. The transaction must end
    without committing anything for it."""

    def __init__(self, lease: Lease, why: str) -> None:
        super().__init__(f"{lease.kind} {lease.id}: lease epoch {lease.epoch} lost ({why})")
        self.lease = lease


@dataclass(frozen=True)
class LeaseEvent:
    """``won``: this replica may now act for ``lease``; ``lost``: it must stop."""

    change: Literal["won", "lost"]
    lease: Lease
    reason: str
    # Won from a replica whose lease expired (it died or was cut off), not a free one.
    takeover: bool = False


LeaseListener = Callable[[LeaseEvent], None]


def _db_now(dialect: str) -> ColumnElement[Any]:
    """The database's current instant, in the form ``expires_at`` is stored in."""
    if dialect == "postgresql":
        # statement_timestamp(), not now(): a fence late in a long transaction is judged
        # at its own instant, not at the transaction's start.
        return func.statement_timestamp(type_=DateTime(timezone=True))
    # SQLite stores instants as 'YYYY-MM-DD HH:MM:SS.ffffff' text (UTC); %f gives
    # milliseconds, padded to the stored width so the text compares in time order.
    return func.strftime("%Y-%m-%d %H:%M:%f", "now", type_=String).concat("000")


def _db_later(dialect: str, seconds: float) -> ColumnElement[Any]:
    """The database's current instant plus ``seconds``."""
    if dialect == "postgresql":
        return func.statement_timestamp(type_=DateTime(timezone=True)) + bindparam(
            "lease_ttl", timedelta(seconds=seconds), type_=Interval
        )
    shift = f"+{seconds:.3f} seconds"
    return func.strftime("%Y-%m-%d %H:%M:%f", "now", shift, type_=String).concat("000")


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def fence(session: AsyncSession, lease: Lease) -> None:
    """Make the rest of ``session``'s transaction conditional on ``lease`` still holding.

    Raises ``LeaseLost`` unless the lease row still has this owner and epoch and has not
    expired by the database's clock. When it returns, the row stays locked until the
    transaction ends, so no other replica can claim the lease before this transaction's
    writes commit: on PostgreSQL ``FOR KEY SHARE``, which a claim's ``FOR UPDATE`` waits
    for (and skips) but this replica's own renewal does not; on SQLite the write lock."""
    holds = (
        LEASES.c.kind == lease.kind,
        LEASES.c.id == lease.id,
        LEASES.c.owner == lease.owner,
        LEASES.c.epoch == lease.epoch,
        LEASES.c.expires_at.is_not(None),
    )
    dialect = _dialect(session)
    still = LEASES.c.expires_at > _db_now(dialect)
    if dialect == "postgresql":
        found = await session.execute(
            select(LEASES.c.epoch).where(*holds, still).with_for_update(read=True, key_share=True)
        )
        if found.first() is None:
            raise LeaseLost(lease, "expired, taken over or released")
        return
    # A no-op update takes SQLite's write lock for the rest of the transaction.
    result = await session.execute(update(LEASES).where(*holds, still).values(epoch=LEASES.c.epoch))
    if cast(Any, result).rowcount != 1:
        raise LeaseLost(lease, "expired, taken over or released")


@dataclass
class _Held:
    lease: Lease
    deadline: float  # monotonic instant before which this replica may act


Candidates = Callable[[], Collection[str] | Awaitable[Collection[str]]]


@dataclass
class _Want:
    candidates: Candidates | None
    limit: Callable[[], int | None]
    shared: bool = False


class LeaseHolder:
    """The leases one replica holds, with their local deadlines, and the loop that renews
    them every TTL/3 and claims what the registered ``want``s ask for.

    ``clock`` is what the loop sleeps on; ``monotonic`` is what local deadlines are
    measured with (tests pass one that follows a ``ManualClock``)."""

    def __init__(
        self,
        db: Database,
        *,
        owner: str,
        ttl: timedelta,
        clock: Clock,
        monotonic: Monotonic = time.monotonic,
        margin: timedelta | None = None,
    ) -> None:
        if ttl <= timedelta(0):
            raise ValueError("a lease TTL must be longer than 0s")
        self.owner = owner
        self.ttl_s = ttl.total_seconds()
        self.period_s = self.ttl_s / 3
        self.margin_s = (
            margin.total_seconds() if margin is not None else self.ttl_s * DEFAULT_MARGIN_SHARE
        )
        if not 0 <= self.margin_s < self.ttl_s:
            raise ValueError("the margin must be shorter than the TTL")
        self._db = db
        self._clock = clock
        self._monotonic = monotonic
        self._held: dict[LeaseKey, _Held] = {}
        self._known: dict[str, set[str]] = {kind: set() for kind in LEASE_KINDS}
        self._listeners: list[LeaseListener] = []
        self._wants: dict[str, _Want] = {}
        self._task: asyncio.Task[None] | None = None
        # Live replicas (this one included) as last counted by ``announce``.
        self.replicas = 1

    @property
    def _dialect(self) -> str:
        return self._db.engine.dialect.name

    # -- what this replica holds ------------------------------------------------------

    def still_mine(self, kind: str, id: str) -> bool:
        """Whether this replica may still act for (kind, id): it holds the lease and the
        local deadline of its last successful claim or renew has not passed."""
        return self.lease(kind, id) is not None

    def lease(self, kind: str, id: str) -> Lease | None:
        """The lease this replica may still act under, or None."""
        held = self._held.get(LeaseKey(kind, id))
        if held is None or self._monotonic() >= held.deadline:
            return None
        return held.lease

    def held(self, kind: str | None = None) -> list[Lease]:
        """The leases this replica may still act under, of ``kind`` (or all)."""
        now = self._monotonic()
        return [
            h.lease
            for key, h in self._held.items()
            if (kind is None or key.kind == kind) and now < h.deadline
        ]

    def deadline(self, kind: str, id: str) -> float | None:
        """The local deadline of (kind, id) on the monotonic clock, or None if not held."""
        held = self._held.get(LeaseKey(kind, id))
        return None if held is None else held.deadline

    async def fence(self, session: AsyncSession, kind: str, id: str) -> Lease:
        """``fence`` with this replica's lease on (kind, id); raises ``LeaseLost`` at once
        when the local deadline has passed, without asking the database."""
        lease = self.lease(kind, id)
        if lease is None:
            held = self._held.get(LeaseKey(kind, id))
            lost = held.lease if held is not None else Lease(kind, id, self.owner, -1)
            raise LeaseLost(lost, "not held, or its local deadline has passed")
        await fence(session, lease)
        return lease

    # -- listeners --------------------------------------------------------------------

    def subscribe(self, listener: LeaseListener) -> Callable[[], None]:
        """Call ``listener`` on every lease won or lost; returns the unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _emit(
        self, change: Literal["won", "lost"], lease: Lease, reason: str, *, takeover: bool = False
    ) -> None:
        event = LeaseEvent(change, lease, reason, takeover)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("lease listener failed", kind=lease.kind, id=lease.id)

    def _gauge(self) -> None:
        metrics.GATES_OWNED.set(sum(1 for key in self._held if key.kind == "gate"))

    def _drop(self, keys: Iterable[LeaseKey], reason: str) -> list[Lease]:
        dropped = [self._held.pop(key).lease for key in list(keys) if key in self._held]
        for lease in dropped:
            self._emit("lost", lease, reason)
        if dropped:
            self._gauge()
        return dropped

    def expire_local(self) -> list[Lease]:
        """Drop (and announce as lost) every lease whose local deadline has passed."""
        now = self._monotonic()
        late = [key for key, held in self._held.items() if now >= held.deadline]
        dropped = self._drop(late, "local deadline passed: not renewed in time")
        if dropped:
            log.warning("leases lost: not renewed in time", count=len(dropped))
        return dropped

    # -- the statements ---------------------------------------------------------------

    async def _insert_missing(self, kind: str, ids: Collection[str]) -> None:
        """Insert ids never seen by this holder as free leases (one statement)."""
        new = sorted(set(ids) - self._known[kind])
        if not new:
            return
        insert = postgresql.insert if self._dialect == "postgresql" else sqlite.insert
        statement = (
            insert(LEASES)
            .values([{"kind": kind, "id": id, "epoch": 0} for id in new])
            .on_conflict_do_nothing(index_elements=["kind", "id"])
        )
        async with self._db.session() as session:
            await session.execute(statement)
        self._known[kind].update(new)

    async def claim(
        self, kind: str, candidates: Collection[str] | None = None, limit: int | None = None
    ) -> list[Lease]:
        """Claim up to ``limit`` free or expired leases of ``kind`` among ``candidates``
        (inserted first if new; None: any existing lease of ``kind``). Returns what was
        won, each with its new epoch."""
        if kind not in LEASE_KINDS:
            raise ValueError(f"unknown lease kind {kind!r}; kinds are {', '.join(LEASE_KINDS)}")
        if candidates is not None:
            if not candidates:
                return []
            await self._insert_missing(kind, candidates)
        if limit is not None and limit <= 0:
            return []
        dialect = self._dialect
        pick = select(LEASES.c.kind, LEASES.c.id).where(
            LEASES.c.kind == kind,
            or_(LEASES.c.expires_at.is_(None), LEASES.c.expires_at <= _db_now(dialect)),
        )
        if candidates is not None:
            pick = pick.where(LEASES.c.id.in_(sorted(set(candidates))))
        if limit is not None:
            pick = pick.limit(limit)
        # MATERIALIZED: the locked pick is computed once, never re-run per row.
        picked = pick.with_for_update(skip_locked=True).cte("picked").prefix_with("MATERIALIZED")
        statement = (
            update(LEASES)
            .where(LEASES.c.kind == picked.c.kind, LEASES.c.id == picked.c.id)
            .values(
                owner=self.owner,
                epoch=LEASES.c.epoch + 1,
                expires_at=_db_later(dialect, self.ttl_s),
                # Set from the old row: who let this lease expire without releasing it.
                taken_from=case(
                    (
                        and_(LEASES.c.expires_at.is_not(None), LEASES.c.owner != self.owner),
                        LEASES.c.owner,
                    ),
                    else_=None,
                ),
            )
            .returning(LEASES.c.id, LEASES.c.epoch, LEASES.c.expires_at, LEASES.c.taken_from)
        )
        started = self._monotonic()
        async with self._db.session() as session:
            rows = (await session.execute(statement)).all()
        deadline = started + self.ttl_s - self.margin_s
        if rows and self._monotonic() >= deadline:
            # Answered too late to act on: give the leases straight back.
            late = [Lease(kind, id, self.owner, epoch) for id, epoch, _, _ in rows]
            log.warning("claimed leases answered too late; released", kind=kind, count=len(late))
            await self._release_rows(late)
            return []
        won: list[Lease] = []
        for id, epoch, expires_at, taken_from in rows:
            lease = Lease(kind, id, self.owner, epoch, expires_at)
            previous = self._held.get(lease.key)
            if previous is not None:  # our own earlier tenure had expired
                self._drop([lease.key], "expired before it was renewed")
            self._held[lease.key] = _Held(lease, deadline)
            won.append(lease)
            if taken_from is not None:
                metrics.LEASE_TAKEOVERS.labels(kind).inc()
            reason = f"taken over from {taken_from}" if taken_from is not None else "claimed"
            self._emit("won", lease, reason, takeover=taken_from is not None)
        if won:
            self._gauge()
            log.info("leases claimed", kind=kind, count=len(won))
        return won

    async def claim_new(self, session: AsyncSession, kind: str, id: str) -> Lease | None:
        """Take (kind, id), something created here, as a lease this replica holds, inside
        ``session``'s transaction: the lease exists only if that commits, and this holder
        acts on it (``won``) once it has, with no round trip of its own. The row may exist
        already as a free lease (this holder's claim loop may have inserted it meanwhile,
        having heard of the id): a free row is taken, one another replica holds is not
        (None: the caller claims it like any other)."""
        if kind not in LEASE_KINDS:
            raise ValueError(f"unknown lease kind {kind!r}; kinds are {', '.join(LEASE_KINDS)}")
        dialect = _dialect(session)
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        now, later = _db_now(dialect), _db_later(dialect, self.ttl_s)
        values = insert(LEASES).values(
            kind=kind, id=id, owner=self.owner, epoch=1, expires_at=later
        )
        statement = values.on_conflict_do_update(
            index_elements=["kind", "id"],
            set_={"owner": self.owner, "epoch": LEASES.c.epoch + 1, "expires_at": later},
            where=or_(LEASES.c.expires_at.is_(None), LEASES.c.expires_at <= now),
        ).returning(LEASES.c.epoch, LEASES.c.expires_at)
        started = self._monotonic()
        taken = (await session.execute(statement)).first()
        if taken is None:
            return None
        lease = Lease(kind, id, self.owner, int(taken.epoch), taken.expires_at)

        def adopt() -> None:
            deadline = started + self.ttl_s - self.margin_s
            self._known[kind].add(id)
            if self._monotonic() >= deadline:
                return  # committed too late to act on: it expires, or is claimed
            self._held[lease.key] = _Held(lease, deadline)
            self._gauge()
            self._emit("won", lease, "created here")

        after_commit(session, adopt)
        return lease

    async def renew(self) -> set[LeaseKey]:
        """Renew every lease this replica holds, in one statement; returns the keys still
        held. A lease missing from the answer is dropped and announced as lost."""
        if not self._held:
            return set()
        dialect = self._dialect
        statement = (
            update(LEASES)
            .where(
                LEASES.c.kind.in_(LEASE_KINDS),
                LEASES.c.owner == self.owner,
                LEASES.c.expires_at.is_not(None),
                LEASES.c.expires_at > _db_now(dialect),
            )
            .values(expires_at=_db_later(dialect, self.ttl_s))
            .returning(LEASES.c.kind, LEASES.c.id, LEASES.c.epoch, LEASES.c.expires_at)
        )
        started = self._monotonic()
        try:
            async with asyncio.timeout(self.period_s), self._db.session() as session:
                rows = (await session.execute(statement)).all()
        except Exception as error:
            metrics.LEASE_RENEW_FAILURES.inc()
            log.warning("lease renewal failed", error=self._describe(error))
            raise
        deadline = started + self.ttl_s - self.margin_s
        answered = {LeaseKey(kind, id): (epoch, expires_at) for kind, id, epoch, expires_at in rows}
        lost = [
            key
            for key, held in self._held.items()
            if key not in answered or answered[key][0] != held.lease.epoch
        ]
        if lost:
            self._drop(lost, "not renewed: it expired, and may have been taken over")
            log.warning("leases lost: expired before renewal", count=len(lost))
        stray: list[Lease] = []
        for key, (epoch, expires_at) in answered.items():
            held = self._held.get(key)
            if held is None or held.lease.epoch != epoch:
                # Ours in the database, but not acted on here (dropped after a late answer).
                stray.append(Lease(key.kind, key.id, self.owner, epoch))
                continue
            held.lease = Lease(key.kind, key.id, self.owner, epoch, expires_at)
            held.deadline = deadline
        if self._monotonic() >= deadline:
            # The answer came too late to act on: give the leases back rather than hold
            # rows nobody here uses until they expire.
            stray.extend(self._drop(list(self._held), "renewal answered too late"))
            metrics.LEASE_RENEW_FAILURES.inc()
        if stray:
            await self._release_rows(stray)
        return set(self._held)

    async def release(self, keys: Iterable[LeaseKey] | None = None) -> None:
        """Give back ``keys`` (default: everything this replica holds) in one statement,
        so another replica may claim them at once. Local holding ends first."""
        targets = list(self._held) if keys is None else list(keys)
        dropped = self._drop(targets, "released")
        if keys is None:
            statement = update(LEASES).where(
                LEASES.c.owner == self.owner, LEASES.c.expires_at.is_not(None)
            )
            async with self._db.session() as session:
                await session.execute(statement.values(expires_at=None))
        elif dropped:
            await self._release_rows(dropped)

    async def _release_rows(self, leases: list[Lease]) -> None:
        tenures = [(lease.kind, lease.id, lease.epoch) for lease in leases]
        statement = (
            update(LEASES)
            .where(
                LEASES.c.owner == self.owner,
                tuple_(LEASES.c.kind, LEASES.c.id, LEASES.c.epoch).in_(tenures),
            )
            .values(expires_at=None)
        )
        async with self._db.session() as session:
            await session.execute(statement)

    # -- the loop ---------------------------------------------------------------------

    def want(
        self,
        kind: str,
        candidates: Candidates | None = None,
        limit: int | Callable[[], int | None] | None = None,
    ) -> None:
        """Have the loop claim leases of ``kind`` at each renewal: among ``candidates()``
        (None: any existing lease of ``kind``), at most ``limit`` at a time.
        ``candidates`` may be a coroutine function (a cheap query each renewal); it
        shares the claim's time bound."""
        if kind not in LEASE_KINDS:
            raise ValueError(f"unknown lease kind {kind!r}; kinds are {', '.join(LEASE_KINDS)}")
        limit_of: Callable[[], int | None] = (
            limit if callable(limit) else (lambda fixed=limit: fixed)  # type: ignore[misc]
        )
        self._wants[kind] = _Want(candidates, limit_of, shared=callable(limit))

    async def announce(self) -> int:
        """Say this replica is alive for one more TTL (its presence row) and count the
        live replicas, this one included, into ``replicas``: two statements."""
        dialect = self._dialect
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        later = _db_later(dialect, self.ttl_s)
        upsert = insert(LEASES).values(
            kind=PRESENCE_KIND, id=self.owner[:64], owner=self.owner, epoch=0, expires_at=later
        )
        upsert = upsert.on_conflict_do_update(
            index_elements=["kind", "id"], set_={"owner": self.owner, "expires_at": later}
        )
        live = (
            select(func.count())
            .select_from(LEASES)
            .where(LEASES.c.kind == PRESENCE_KIND, LEASES.c.expires_at > _db_now(dialect))
        )
        async with asyncio.timeout(self.period_s), self._db.session() as session:
            await session.execute(upsert)
            counted = int((await session.execute(live)).scalar_one())
        self.replicas = max(1, counted)
        return self.replicas

    async def step(self) -> None:
        """One renewal, then one claim per ``want``; each failure is logged, not raised.

        A ``want`` whose limit is a callable is a share among replicas: the presence row
        is renewed and the live replicas counted first (``replicas``). A negative limit
        gives that many of the kind's leases back (a replica above its share)."""
        with contextlib.suppress(Exception):  # counted and logged by renew
            await self.renew()
        if any(want.shared for want in self._wants.values()):
            try:
                await self.announce()
            except Exception as error:
                log.warning("counting live replicas failed", error=self._describe(error))
        for kind, want in list(self._wants.items()):
            try:
                limit = want.limit()
                if limit is not None and limit < 0:
                    extras = sorted(self.held(kind), key=lambda lease: lease.id)[limit:]
                    await self.release([lease.key for lease in extras])
                    log.info(
                        "leases above this replica's share released", kind=kind, count=len(extras)
                    )
                    continue
                async with asyncio.timeout(self.period_s):
                    found = want.candidates() if want.candidates is not None else None
                    candidates = await found if inspect.isawaitable(found) else found
                    await self.claim(kind, candidates, limit)
            except Exception as error:
                log.warning("lease claim failed", kind=kind, error=self._describe(error))

    def _describe(self, error: Exception) -> str:
        if isinstance(error, TimeoutError) and not str(error):
            return f"no answer within {self.period_s:g}s"
        return f"{type(error).__name__}: {error}"

    def start(self) -> None:
        """Start the renew loop (a task; ``stop`` ends it)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"leases:{self.owner}")

    async def stop(self, *, release: bool = True) -> None:
        """End the loop; then, on a graceful stop, release every lease at once."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # wait(), not await: a cancellation of our caller must not be swallowed.
            await asyncio.wait({task})
        if release:
            try:
                # Bounded: a database that does not answer must not hang a shutdown.
                async with asyncio.timeout(self.period_s):
                    await self.release()
            except Exception as error:
                log.warning("leases not released; they expire instead", error=self._describe(error))
        else:
            self._drop(list(self._held), "stopped")

    async def _run(self) -> None:
        """Renew every period; between and during renewals, drop what passes its local
        deadline. A renewal stuck on an unanswering database does not delay that: the
        loop waits for it and for the earliest deadline, whichever comes first."""
        while True:
            due = self._monotonic() + self.period_s
            work = asyncio.create_task(self._supervised_step())
            try:
                while True:
                    self.expire_local()
                    now = self._monotonic()
                    if work.done() and now >= due:
                        break
                    # Past ``due`` with the step still running, only deadlines wake us.
                    wakes = [held.deadline for held in self._held.values()]
                    if now < due:
                        wakes.append(due)
                    if not wakes:
                        await asyncio.wait({work})
                        continue
                    await self._sleep_or(work, max(0.0, min(wakes) - now))
            finally:
                if not work.done():
                    work.cancel()
                    await asyncio.wait({work})

    async def _supervised_step(self) -> None:
        try:
            await self.step()
        except Exception:
            log.exception("lease loop step failed")

    async def _sleep_or(self, work: asyncio.Task[None], seconds: float) -> None:
        """Sleep ``seconds`` on the clock, waking early if ``work`` ends first."""
        if work.done():
            await self._clock.sleep(seconds)
            return
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait({work, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not sleeper.done():
                sleeper.cancel()
                # wait(), not await: suppressing the sleeper's CancelledError here would
                # also swallow a cancellation of this task arriving meanwhile (stop()).
                await asyncio.wait({sleeper})
