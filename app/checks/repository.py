"""Every database read and write, as small functions on an ``AsyncSession``.

Nothing here commits: the caller's unit of work (the request's session dependency, or
the check runner's own session) owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import (
    CANCELLED,
    CHECK_STATES,
    FINAL,
    RUNNING,
    CheckRow,
    EventRow,
    SampleRow,
    SignoffRow,
)
from app.gates import repository as gate_repo

__all__ = ["CANCELLED", "CHECK_STATES", "FINAL", "RUNNING"]

# The event saying the gate has a new version while the check stays pinned to its own.
REDEFINED = "gate_redefined"


async def add_check(session: AsyncSession, check: CheckRow, *, definition: str) -> None:
    """Insert the check and keep the definition of the gate version it is pinned to, so
    any process can judge it by that version."""
    if check.gate_version is None:
        raise ValueError("a check is always pinned to a gate version")
    await gate_repo.save_gate_version(
        session, gate=check.gate, version=check.gate_version, text=definition, at=check.created_at
    )
    session.add(check)
    await session.flush()


async def check(session: AsyncSession, check_id: str) -> CheckRow | None:
    """The check as the database has it now (not a cached copy)."""
    result = await session.scalars(
        select(CheckRow).where(CheckRow.id == check_id).execution_options(populate_existing=True)
    )
    return result.one_or_none()


async def check_by_idempotency_key(session: AsyncSession, gate: str, key: str) -> CheckRow | None:
    result = await session.scalars(
        select(CheckRow).where(CheckRow.gate == gate, CheckRow.idempotency_key == key)
    )
    return result.one_or_none()


async def checks(
    session: AsyncSession,
    *,
    gate: str | None = None,
    state: str | None = None,
    limit: int = 50,
    created_before: tuple[datetime, str] | None = None,
) -> list[CheckRow]:
    """Newest first; ``created_before`` is the (created_at, id) of the previous page's last."""
    query = select(CheckRow)
    if gate is not None:
        query = query.where(CheckRow.gate == gate)
    if state is not None:
        query = query.where(CheckRow.state == state)
    if created_before is not None:
        at, check_id = created_before
        query = query.where(
            (CheckRow.created_at < at) | ((CheckRow.created_at == at) & (CheckRow.id < check_id))
        )
    query = query.order_by(CheckRow.created_at.desc(), CheckRow.id.desc()).limit(limit)
    return list(await session.scalars(query))


async def running_ids(session: AsyncSession) -> list[str]:
    """The ids of every running check (the state index answers it)."""
    return list(await session.scalars(select(CheckRow.id).where(CheckRow.state == RUNNING)))


async def _update_if_running(session: AsyncSession, check_id: str, **values: Any) -> bool:
    """Set ``values`` on the check only while it is running; False when it was not."""
    result = await session.execute(
        update(CheckRow)
        .where(CheckRow.id == check_id, CheckRow.state == RUNNING)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def lock_running(session: AsyncSession, check_id: str) -> bool:
    """Hold the check's row for this transaction if it is still running.

    Serialises a sign-off or manual decision with the runner finalising the same check
    (row lock on PostgreSQL, the write lock on SQLite)."""
    return await _update_if_running(session, check_id, state=RUNNING)


async def update_running_verdict(
    session: AsyncSession, check_id: str, verdict: dict[str, Any]
) -> bool:
    return await _update_if_running(session, check_id, verdict=verdict)


async def finish_check(
    session: AsyncSession,
    check_id: str,
    *,
    state: str,
    decision: str | None,
    verdict: dict[str, Any],
    decided_at: datetime,
    decided_by: str,
    deciding_samples: Sequence[int],
) -> bool:
    """Make a running check final (or cancelled); False if it was not running any more."""
    return await _update_if_running(
        session,
        check_id,
        state=state,
        decision=decision,
        verdict=verdict,
        decided_at=decided_at,
        decided_by=decided_by,
        deciding_samples=list(deciding_samples),
    )


async def recent_check_samples(
    session: AsyncSession, check_id: str, limit: int, *, gate_version: str | None = None
) -> list[SampleRow]:
    """The check's newest ``limit`` samples, oldest first; with ``gate_version``, only
    those that version judged."""
    query = select(SampleRow).where(SampleRow.check_id == check_id)
    if gate_version is not None:
        query = query.where(SampleRow.gate_version == gate_version)
    result = await session.scalars(query.order_by(SampleRow.id.desc()).limit(limit))
    return list(reversed(list(result)))


async def redefinitions_announced(session: AsyncSession, check_id: str) -> set[str]:
    """The gate versions a ``gate_redefined`` event of the check already named."""
    result = await session.scalars(
        select(EventRow.data).where(EventRow.check_id == check_id, EventRow.kind == REDEFINED)
    )
    return {str(data.get("current")) for data in result if isinstance(data, dict)}


async def signoffs(session: AsyncSession, check_id: str) -> list[SignoffRow]:
    result = await session.scalars(
        select(SignoffRow).where(SignoffRow.check_id == check_id).order_by(SignoffRow.id)
    )
    return list(result)


async def signoffs_for(
    session: AsyncSession, check_ids: Sequence[str]
) -> dict[str, list[SignoffRow]]:
    found: dict[str, list[SignoffRow]] = {check_id: [] for check_id in check_ids}
    if not check_ids:
        return found
    result = await session.scalars(
        select(SignoffRow).where(SignoffRow.check_id.in_(check_ids)).order_by(SignoffRow.id)
    )
    for row in result:
        found[row.check_id].append(row)
    return found


async def add_signoff(
    session: AsyncSession,
    *,
    check_id: str,
    signoff: str,
    signed_by: str,
    comment: str | None,
    at: datetime,
) -> SignoffRow:
    row = SignoffRow(
        check_id=check_id, signoff=signoff, signed_by=signed_by, comment=comment, signed_at=at
    )
    session.add(row)
    await session.flush()
    return row


async def add_event(
    session: AsyncSession,
    check_id: str,
    kind: str,
    *,
    at: datetime,
    actor: str,
    data: dict[str, Any] | None = None,
) -> None:
    session.add(EventRow(check_id=check_id, kind=kind, at=at, actor=actor, data=data or {}))
    await session.flush()


async def events(
    session: AsyncSession, check_id: str, *, after_id: int | None, limit: int
) -> list[EventRow]:
    query = select(EventRow).where(EventRow.check_id == check_id)
    if after_id is not None:
        query = query.where(EventRow.id > after_id)
    return list(await session.scalars(query.order_by(EventRow.id).limit(limit)))


async def latest_events(session: AsyncSession, check_id: str, limit: int) -> list[EventRow]:
    """The check's newest ``limit`` audit events, oldest first (read-only)."""
    result = await session.scalars(
        select(EventRow)
        .where(EventRow.check_id == check_id)
        .order_by(EventRow.id.desc())
        .limit(limit)
    )
    return list(reversed(list(result)))
