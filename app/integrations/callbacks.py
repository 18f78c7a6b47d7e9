"""The outbox of the GitHub and GitLab front doors: answers owed to a forge about a check.

A door that starts a check also writes a ``door_callbacks`` row in the same transaction,
so a check a forge waits for always has its answer queued. ``CallbackOutbox`` is one
supervised task per process: it sends every waiting row whose check has ended (final or
cancelled), woken by the check runner when a check ends and, in any case, every
``poll`` seconds, so rows left by a restart or another replica are picked up too.

A row is sent under a claim: a conditional update sets a fencing token and a deadline
(``CLAIM_TTL_S``), and the outcome is written only while that token still holds, so two
processes never both send a row, and a process that died mid-send leaves a row another
one takes over once the claim has lapsed. A sender raises ``RetryLater`` (a 5xx, a 429,
a timeout: the row is tried again after a doubling backoff, up to ``max_attempts``) or
``GiveUp`` (a 4xx such as GitHub's 422, a callback URL on a foreign host: logged, and the
row is marked failed); anything else it raises is logged and retried like ``RetryLater``.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import Clock, sleep_or_woken
from app.core.db import (
    CALLBACK_DELIVERED,
    CALLBACK_FAILED,
    CALLBACK_WAITING,
    FINAL,
    RUNNING,
    CheckRow,
    Database,
    DoorCallbackRow,
)
from app.core.logging import redactor

log = structlog.get_logger(__name__)

CLAIM_TTL_S = 60.0
POLL_S = 5.0
FIRST_BACKOFF_S = 2.0
MAX_BACKOFF_S = 300.0
MAX_ATTEMPTS = 10
BATCH = 20
COMMENT_LIMIT = 1000
ERROR_LIMIT = 500

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class RetryLater(Exception):
    """The forge did not take the answer this time (5xx, 429, timeout); try again."""


class GiveUp(Exception):
    """The answer can never be delivered as it is (a 4xx, a refused host)."""


def worth_retrying(status: int, headers: Mapping[str, str]) -> bool:
    """Whether a forge's refusal is for now, not for good: a 5xx, a 429, or a rate limit
    answered as 403 (GitHub's secondary limit sends ``Retry-After``; a spent primary limit
    ``X-RateLimit-Remaining: 0``)."""
    if status >= 500 or status == 429:
        return True
    limited = "retry-after" in headers or headers.get("x-ratelimit-remaining") == "0"
    return status == 403 and limited


class Sender(Protocol):
    """Delivers one door's answers; raises ``RetryLater`` or ``GiveUp`` when it could not."""

    async def send(self, target: Mapping[str, Any], check: CheckRow, comment: str) -> None: ...

    async def aclose(self) -> None: ...


def approved(check: CheckRow) -> bool:
    """Only a final ``go`` approves; every other end (no_go, rollback, cancelled) rejects."""
    return check.state == FINAL and check.decision == "go"


def bounded(text: str, limit: int) -> str:
    """``text`` scrubbed of every known secret and of control characters, cut at ``limit``."""
    clean = _CONTROL.sub(" ", str(redactor.clean(text)))
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def comment(check: CheckRow, *, public_url: str | None) -> str:
    """What the forge shows beside the approval: the decision, its reasons and a link."""
    outcome = check.decision if check.state == FINAL and check.decision else check.state
    by = "" if check.decided_by in (None, "engine") else f" by {check.decided_by}"
    head = f"gonogo: {outcome}{by} (gate {check.gate}, version {check.version})"
    link = (
        f"{public_url}/api/v1/checks/{check.id}"
        if public_url
        else f"check {check.id} (GET /api/v1/checks/{check.id})"
    )
    reasons = [str(r) for r in (check.verdict or {}).get("reasons") or []]
    tail = f"\n{link}"
    body = head + "".join(f"\n- {r}" for r in reasons)
    return bounded(body, COMMENT_LIMIT - len(tail)) + tail


async def enqueue(
    session: AsyncSession,
    *,
    door: str,
    key: str,
    check_id: str,
    target: Mapping[str, Any],
    now: datetime,
) -> None:
    """Queue the answer owed about ``check_id``, in the caller's transaction."""
    session.add(
        DoorCallbackRow(
            door=door,
            key=key,
            check_id=check_id,
            target=dict(target),
            state=CALLBACK_WAITING,
            attempts=0,
            due_at=now,
            created_at=now,
        )
    )
    await session.flush()


async def callback_for(session: AsyncSession, door: str, key: str) -> DoorCallbackRow | None:
    result = await session.scalars(
        select(DoorCallbackRow).where(DoorCallbackRow.door == door, DoorCallbackRow.key == key)
    )
    return result.one_or_none()


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones: 2, 4, 8 ... 300."""
    return float(min(FIRST_BACKOFF_S * 2 ** max(attempts - 1, 0), MAX_BACKOFF_S))


def _owner() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}"


class CallbackOutbox:
    def __init__(
        self,
        db: Database,
        *,
        clock: Clock,
        senders: Mapping[str, Sender],
        public_url: str | None,
        poll: float = POLL_S,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self._db = db
        self._clock = clock
        self._senders = dict(senders)
        self._public_url = public_url
        self._poll = poll
        self._max_attempts = max_attempts
        self._owner = _owner()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def check_ended(self, _check: object = None) -> None:
        """A check ended: look for answers to send now rather than at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        if self._senders and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="gonogo-door-callbacks")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for sender in self._senders.values():
            try:
                await sender.aclose()
            except Exception:
                log.exception("closing a door's HTTP client failed")

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                delay = await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception as fault:  # the database went away: try again later
                log.error("door callbacks: pass failed", error=f"{type(fault).__name__}: {fault}")
                delay = self._poll
            await sleep_or_woken(self._clock, delay, self._wake)

    async def run_due(self) -> float:
        """Send every answer that is due; returns the seconds until the next one is."""
        now = self._clock.now()
        async with self._db.session() as session:
            due = await self._due(session, now)
        for row, check in due:
            await self._deliver(row, check)
        async with self._db.session() as session:
            result = await session.execute(
                select(DoorCallbackRow.due_at, DoorCallbackRow.claimed_until)
                .join(CheckRow, CheckRow.id == DoorCallbackRow.check_id)
                .where(*self._sendable())
                .order_by(DoorCallbackRow.due_at)
                .limit(BATCH)
            )
            pending = result.all()
        if not pending:
            return self._poll
        # A row another process holds is due again when its claim lapses.
        soonest = min(max(due, claimed or due) for due, claimed in pending)
        return max(0.0, min(self._poll, (soonest - self._clock.now()).total_seconds()))

    def _sendable(self) -> tuple[Any, ...]:
        """Rows this process can send: waiting, of a configured door, their check ended."""
        return (
            DoorCallbackRow.state == CALLBACK_WAITING,
            DoorCallbackRow.door.in_(sorted(self._senders)),
            CheckRow.state != RUNNING,
        )

    async def _due(
        self, session: AsyncSession, now: datetime
    ) -> list[tuple[DoorCallbackRow, CheckRow]]:
        result = await session.execute(
            select(DoorCallbackRow, CheckRow)
            .join(CheckRow, CheckRow.id == DoorCallbackRow.check_id)
            .where(
                *self._sendable(),
                DoorCallbackRow.due_at <= now,
                (DoorCallbackRow.claimed_until.is_(None)) | (DoorCallbackRow.claimed_until < now),
            )
            .order_by(DoorCallbackRow.due_at, DoorCallbackRow.id)
            .limit(BATCH)
        )
        return [(row, check) for row, check in result.all()]

    async def _claim(self, row: DoorCallbackRow, now: datetime) -> str | None:
        token = f"{self._owner}:{uuid.uuid4().hex[:12]}"
        async with self._db.session() as session:
            result = await session.execute(
                update(DoorCallbackRow)
                .where(
                    DoorCallbackRow.id == row.id,
                    DoorCallbackRow.state == CALLBACK_WAITING,
                    (DoorCallbackRow.claimed_until.is_(None))
                    | (DoorCallbackRow.claimed_until < now),
                    # As this pass read it: another process may have tried and settled it
                    # since (a new attempt count and backoff), which a stale claim must
                    # not overwrite or skip.
                    DoorCallbackRow.attempts == row.attempts,
                    DoorCallbackRow.due_at <= now,
                )
                .values(claimed_by=token, claimed_until=now + timedelta(seconds=CLAIM_TTL_S))
            )
        return token if _rowcount(result) == 1 else None

    async def _settle(self, row: DoorCallbackRow, token: str, **values: Any) -> bool:
        async with self._db.session() as session:
            result = await session.execute(
                update(DoorCallbackRow)
                .where(DoorCallbackRow.id == row.id, DoorCallbackRow.claimed_by == token)
                .values(claimed_by=None, claimed_until=None, **values)
            )
        return _rowcount(result) == 1

    async def _deliver(self, row: DoorCallbackRow, check: CheckRow) -> None:
        sender = self._senders.get(row.door)
        if sender is None:
            return  # that door is not configured in this process; leave the row waiting
        token = await self._claim(row, self._clock.now())
        if token is None:
            return  # another process has it
        attempts = row.attempts + 1
        context = {"door": row.door, "check": check.id, "attempt": attempts}
        text = comment(check, public_url=self._public_url)
        try:
            await sender.send(row.target, check, text)
        except GiveUp as refused:
            error = bounded(str(refused), ERROR_LIMIT)
            log.warning("door callback refused; giving up", error=error, **context)
            await self._settle(
                row, token, state=CALLBACK_FAILED, attempts=attempts, last_error=error
            )
            return
        except Exception as fault:
            error = bounded(
                str(fault) if isinstance(fault, RetryLater) else f"{type(fault).__name__}",
                ERROR_LIMIT,
            )
            if not isinstance(fault, RetryLater):
                log.exception("door callback fault", **context)
            if attempts >= self._max_attempts:
                log.warning("door callback failed; giving up", error=error, **context)
                await self._settle(
                    row, token, state=CALLBACK_FAILED, attempts=attempts, last_error=error
                )
                return
            retry_in = backoff(attempts)
            log.warning(
                "door callback failed; will retry", error=error, retry_in_s=retry_in, **context
            )
            await self._settle(
                row,
                token,
                attempts=attempts,
                last_error=error,
                due_at=self._clock.now() + timedelta(seconds=retry_in),
            )
            return
        settled = await self._settle(
            row,
            token,
            state=CALLBACK_DELIVERED,
            attempts=attempts,
            last_error=None,
            delivered_at=self._clock.now(),
        )
        log.info("door callback delivered", approved=approved(check), settled=settled, **context)


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
