"""The notification outbox: webhook requests owed for decision changes, sent by any replica.

``enqueue_decision_change`` writes one ``notification_outbox`` row per notify target of
the gate **in the caller's transaction**: the row commits with the sample or check state
that records the change, or not at all (a rollback, a lease fence that refused the write).
Each row holds the request fully built by ``app.observability.notify`` (URL, body,
headers with the HMAC signature), so whichever replica picks it up sends it without the
gate's definition. ``key`` names the decision change; ``(key, target)`` is unique, so a
replayed write of the same change adds nothing.

``NotificationOutbox`` is one supervised task per process. It sends due rows under a
claim: one conditional update sets a fencing token and a claim deadline on a batch of
rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so replicas claiming at once take
different rows), and the outcome is written only while that token still holds. Each
send is one attempt with its own timeout, run beside the others up to ``concurrency`` at
a time, so a receiver that hangs holds one slot for one timeout and delays no other row.
A 5xx, a 429, a timeout or a connection error is tried again after a doubling backoff,
up to ``max_attempts``; any other 4xx is given up at once. The loop is woken by
``wake()`` (call it once the enqueuing transaction has committed, or use
``NotificationOutbox.enqueue``, which does so) and polls every ``poll`` seconds for rows
other replicas wrote or left behind.

Delivery is **at least once**: a sender that dies between the receiver's answer and
writing the outcome leaves a claim that lapses after ``claim_ttl``, and another sender
posts the row again. Every request carries ``X-Gonogo-Delivery: <key>/<target>``, the
same on every attempt, so a receiver can drop a duplicate.

Webhook URLs can carry secrets (a Slack incoming-webhook URL is one): logs and stored
errors name a receiver by scheme and host only, and never quote a request.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import structlog
from sqlalchemy import ColumnElement, Table, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import Clock, sleep_or_woken
from app.core.db import (
    NOTIFICATION_DELIVERED,
    NOTIFICATION_FAILED,
    NOTIFICATION_WAITING,
    Database,
    NotificationOutboxRow,
    after_commit,
)
from app.observability import metrics
from app.observability.notify import build_delivery, describe_error, receiver_of, worth_retrying
from gates.engine import Decision, Verdict
from gates.model import Gate

log = structlog.get_logger(__name__)

OUTBOX = cast(Table, NotificationOutboxRow.__table__)
DELIVERY_HEADER = "X-Gonogo-Delivery"

POLL_S = 2.0
ATTEMPT_TIMEOUT_S = 5.0
# Longer than an attempt and its settling write, with room for clocks a little apart.
CLAIM_TTL_S = 30.0
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 300.0
MAX_ATTEMPTS = 8
CONCURRENCY = 8
RETENTION = timedelta(days=7)
PRUNE_EVERY_S = 3600.0
RECHECK_S = 0.1
ERROR_LIMIT = 200

# A key goes into a header: printable ASCII, no spaces, bounded.
_KEY = re.compile(r"[\x21-\x7e]{1,200}")


def delivery_id(key: str, target: int) -> str:
    """The ``X-Gonogo-Delivery`` value of target ``target`` of decision change ``key``."""
    return f"{key}/{target}"


async def enqueue_decision_change(
    session: AsyncSession,
    *,
    gate: Gate,
    verdict: Verdict,
    previous: Decision | None,
    key: str,
    check: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> int:
    """Queue the notification of ``verdict`` to each of ``gate.notify``, in ``session``'s
    transaction (the caller commits). Returns how many rows were written: 0 when the gate
    notifies nobody or ``key`` was queued before.

    ``now`` is when the rows fall due; it defaults to the verdict's evaluation time."""
    if not _KEY.fullmatch(key):
        raise ValueError("a notification key is 1-200 printable ASCII characters, no spaces")
    if not gate.notify:
        return 0
    at = now or verdict.evaluated_at or datetime.now(UTC)
    rows = []
    for index, target in enumerate(gate.notify):
        delivery = build_delivery(
            gate,
            target,
            verdict,
            previous=previous,
            check=check,
            extra_headers={DELIVERY_HEADER: delivery_id(key, index)},
        )
        rows.append(
            {
                "key": key,
                "target": index,
                "gate": gate.name,
                "url": delivery.url,
                "headers": dict(delivery.headers),
                "body": delivery.body,
                "state": NOTIFICATION_WAITING,
                "attempts": 0,
                "due_at": at,
                "created_at": at,
            }
        )
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(OUTBOX)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["key", "target"])
        .returning(OUTBOX.c.id)
    )
    written = len((await session.execute(statement)).all())
    return written


def backoff(attempts: int, *, first: float = FIRST_BACKOFF_S, cap: float = MAX_BACKOFF_S) -> float:
    """Seconds before the next try after ``attempts`` failed ones: first, 2×first ... cap."""
    return float(min(first * 2 ** max(attempts - 1, 0), cap))


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    key: str
    target: int
    gate: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    attempts: int


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one attempt came to: delivered, or an error and whether to try again."""

    status: int | None
    error: str | None
    retry: bool


class NotificationOutbox:
    def __init__(
        self,
        db: Database,
        *,
        clock: Clock,
        replica: str | None = None,
        client: httpx.AsyncClient | None = None,
        poll: float = POLL_S,
        attempt_timeout: float = ATTEMPT_TIMEOUT_S,
        claim_ttl: float = CLAIM_TTL_S,
        first_backoff: float = FIRST_BACKOFF_S,
        max_backoff: float = MAX_BACKOFF_S,
        max_attempts: int = MAX_ATTEMPTS,
        concurrency: int = CONCURRENCY,
        retention: timedelta = RETENTION,
    ) -> None:
        if claim_ttl <= attempt_timeout:
            raise ValueError("claim_ttl must be longer than attempt_timeout")
        self._db = db
        self._clock = clock
        self._owner = (replica or f"{socket.gethostname()[:30]}:{os.getpid()}")[:40]
        self._client = client
        self._owns_client = client is None
        self._poll = poll
        self._attempt_timeout = attempt_timeout
        self._claim_ttl = claim_ttl
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._max_attempts = max_attempts
        self._concurrency = concurrency
        self._retention = retention
        self._next_prune: datetime | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    @property
    def sending(self) -> int:
        """Rows this process is sending right now."""
        return len(self._inflight)

    def wake(self) -> None:
        """New rows were committed: look for them now rather than at the next poll."""
        self._wake.set()

    async def enqueue(
        self,
        session: AsyncSession,
        *,
        gate: Gate,
        verdict: Verdict,
        previous: Decision | None,
        key: str,
        check: Mapping[str, Any] | None = None,
    ) -> int:
        """``enqueue_decision_change`` at this clock's now, waking this outbox once
        ``session`` commits (a ``Database.session()``); a rollback wakes nothing."""
        written = await enqueue_decision_change(
            session,
            gate=gate,
            verdict=verdict,
            previous=previous,
            key=key,
            check=check,
            now=self._clock.now(),
        )
        if written:
            after_commit(session, self.wake)
        return written

    async def start(self) -> None:
        if self._task is not None:
            return
        if self._client is None:
            self._client = httpx.AsyncClient(
                follow_redirects=False,
                timeout=self._attempt_timeout,
                limits=httpx.Limits(max_connections=self._concurrency),
            )
        self._task = asyncio.create_task(self._loop(), name="gonogo-notification-outbox")

    async def stop(self, *, drain_timeout: float = 2.0) -> None:
        """Stop claiming, let sends in flight finish for up to ``drain_timeout`` seconds,
        then cut them off: their claims lapse and another sender posts them again."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=drain_timeout)
        for send in set(self._inflight):
            send.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            try:
                await asyncio.wait_for(client.aclose(), timeout=self._attempt_timeout)
            except TimeoutError:
                log.warning("webhook connections did not close in time")

    async def idle(self) -> None:
        """Wait for the sends in flight to end (each is bounded by its timeout)."""
        while self._inflight:
            await asyncio.gather(*set(self._inflight), return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                delay = await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception as fault:  # the database went away: try again later
                log.error("notification outbox: pass failed", error=type(fault).__name__)
                delay = self._poll
            await sleep_or_woken(self._clock, delay, self._wake)

    async def run_due(self) -> float:
        """Claim due rows for the free sending slots and start sending them; returns the
        seconds until the loop should look again."""
        if self._client is None:
            raise RuntimeError("start() the outbox first")
        now = self._clock.now()
        await self._prune(now)
        free = self._concurrency - len(self._inflight)
        if free <= 0:
            return self._poll  # a send that ends wakes the loop
        token = f"{self._owner}:{uuid.uuid4().hex[:12]}"
        claimed = await self._claim(token, now, free)
        for row in claimed:
            send = asyncio.create_task(self._send(row, token), name="gonogo-notification")
            self._inflight.add(send)
            send.add_done_callback(self._sent)
        if len(claimed) == free:
            return self._poll
        delay = await self._next_due()
        # Rows due but not claimed are being claimed by another sender right now (their
        # claim is not committed yet): look again shortly rather than at once.
        return delay if claimed else max(delay, RECHECK_S)

    def _sent(self, send: asyncio.Task[None]) -> None:
        self._inflight.discard(send)
        self._wake.set()  # a slot is free

    def _claimable(self, now: datetime) -> tuple[ColumnElement[bool], ...]:
        return (
            OUTBOX.c.state == NOTIFICATION_WAITING,
            OUTBOX.c.due_at <= now,
            or_(OUTBOX.c.claimed_until.is_(None), OUTBOX.c.claimed_until < now),
        )

    async def _claim(self, token: str, now: datetime, limit: int) -> list[_Claimed]:
        async with self._db.session() as session:
            candidates = (
                select(OUTBOX.c.id)
                .where(*self._claimable(now))
                .order_by(OUTBOX.c.due_at, OUTBOX.c.id)
                .limit(limit)
            )
            if session.get_bind().dialect.name == "postgresql":
                candidates = candidates.with_for_update(skip_locked=True)
            # MATERIALIZED: the pick runs once; as a plain subquery PostgreSQL may run it
            # again per row and claim more rows than ``limit``.
            picked = candidates.cte("picked").prefix_with("MATERIALIZED")
            result = await session.execute(
                update(OUTBOX)
                # The conditions again: a row another sender claimed since this statement
                # began is not taken from it.
                .where(OUTBOX.c.id.in_(select(picked.c.id)), *self._claimable(now))
                .values(claimed_by=token, claimed_until=now + timedelta(seconds=self._claim_ttl))
                .returning(
                    OUTBOX.c.id,
                    OUTBOX.c.key,
                    OUTBOX.c.target,
                    OUTBOX.c.gate,
                    OUTBOX.c.url,
                    OUTBOX.c.headers,
                    OUTBOX.c.body,
                    OUTBOX.c.attempts,
                )
            )
            claimed = [_Claimed(*row) for row in result.all()]
        return sorted(claimed, key=lambda row: row.id)

    async def _next_due(self) -> float:
        async with self._db.session() as session:
            result = await session.execute(
                select(OUTBOX.c.due_at, OUTBOX.c.claimed_until)
                .where(OUTBOX.c.state == NOTIFICATION_WAITING)
                .order_by(OUTBOX.c.due_at)
                .limit(self._concurrency)
            )
            pending = result.all()
        if not pending:
            return self._poll
        # A row another sender holds is due again when its claim lapses.
        soonest: datetime = min(max(due, claimed or due) for due, claimed in pending)
        return max(0.0, min(self._poll, (soonest - self._clock.now()).total_seconds()))

    async def _prune(self, now: datetime) -> None:
        if self._next_prune is not None and now < self._next_prune:
            return
        self._next_prune = now + timedelta(seconds=PRUNE_EVERY_S)
        async with self._db.session() as session:
            await session.execute(
                delete(OUTBOX).where(
                    OUTBOX.c.state.in_((NOTIFICATION_DELIVERED, NOTIFICATION_FAILED)),
                    OUTBOX.c.settled_at < now - self._retention,
                )
            )

    async def _attempt(self, row: _Claimed) -> _Outcome:
        assert self._client is not None, "start() the outbox first"
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that races with the answer, leaving a send that ignores stop().
            async with asyncio.timeout(self._attempt_timeout):
                response = await self._client.post(
                    row.url, content=row.body, headers=dict(row.headers)
                )
        except (httpx.TransportError, TimeoutError) as failure:
            return _Outcome(None, describe_error(failure), retry=True)
        except httpx.HTTPError as failure:  # an invalid URL, a bad header: never better
            return _Outcome(None, describe_error(failure), retry=False)
        status = response.status_code
        if status < 400:
            return _Outcome(status, None, retry=False)
        return _Outcome(status, f"HTTP {status}", retry=worth_retrying(status))

    async def _send(self, row: _Claimed, token: str) -> None:
        attempts = row.attempts + 1
        context = {
            "gate": row.gate,
            "receiver": receiver_of(row.url),
            "delivery": delivery_id(row.key, row.target),
            "attempt": attempts,
        }
        try:
            outcome = await self._attempt(row)
        except Exception as fault:  # a send must never take the loop down
            log.error("notification fault", error=type(fault).__name__, **context)
            outcome = _Outcome(None, type(fault).__name__, retry=True)
        now = self._clock.now()
        try:
            if outcome.error is None:
                if await self._settle(
                    row,
                    token,
                    state=NOTIFICATION_DELIVERED,
                    attempts=attempts,
                    last_error=None,
                    settled_at=now,
                ):
                    metrics.notification_sent("ok")
                    log.info("notification delivered", status=outcome.status, **context)
                else:
                    log.info("notification delivered after its claim lapsed", **context)
                return
            error = outcome.error[:ERROR_LIMIT]
            if outcome.retry and attempts < self._max_attempts:
                retry_in = backoff(attempts, first=self._first_backoff, cap=self._max_backoff)
                settled = await self._settle(
                    row,
                    token,
                    attempts=attempts,
                    last_error=error,
                    due_at=now + timedelta(seconds=retry_in),
                )
                if settled:
                    log.warning(
                        "notification failed; will retry",
                        error=error,
                        retry_in_s=retry_in,
                        **context,
                    )
                return
            if await self._settle(
                row,
                token,
                state=NOTIFICATION_FAILED,
                attempts=attempts,
                last_error=error,
                settled_at=now,
            ):
                metrics.notification_sent("error")
                log.warning("notification failed; giving up", error=error, **context)
        except Exception as fault:  # the outcome is lost; the claim lapses and it is retried
            log.error("notification outcome not recorded", error=type(fault).__name__, **context)

    async def _settle(self, row: _Claimed, token: str, **values: Any) -> bool:
        """Write a send's outcome, only while this sender's claim on the row holds."""
        async with self._db.session() as session:
            result = await session.execute(
                update(OUTBOX)
                .where(OUTBOX.c.id == row.id, OUTBOX.c.claimed_by == token)
                .values(claimed_by=None, claimed_until=None, **values)
            )
        return int(getattr(result, "rowcount", 0) or 0) == 1
