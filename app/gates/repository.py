"""Database reads and writes for gates: API-defined gates, definitions by version, samples.

Nothing here commits: the caller's unit of work owns the transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import RUNNING, CheckRow, GateRow, GateVersionRow, SampleRow


async def api_gates(session: AsyncSession) -> list[GateRow]:
    result = await session.scalars(select(GateRow).order_by(GateRow.name))
    return list(result)


async def api_gate(session: AsyncSession, name: str) -> GateRow | None:
    return await session.get(GateRow, name)


async def save_api_gate(
    session: AsyncSession,
    *,
    name: str,
    text: str,
    version: str,
    at: datetime,
    by: str,
    definition: str | None = None,
) -> bool:
    """Insert or replace; returns True when the gate is new. The version is kept too, by
    ``definition`` (the text with its templates filled in) when it differs from ``text``."""
    await save_gate_version(session, gate=name, version=version, text=definition or text, at=at)
    row = await session.get(GateRow, name, with_for_update=True)
    if row is None:
        session.add(GateRow(name=name, text=text, version=version, updated_at=at, updated_by=by))
        await session.flush()
        return True
    row.text, row.version, row.updated_at, row.updated_by = text, version, at, by
    await session.flush()
    return False


async def save_gate_version(
    session: AsyncSession, *, gate: str, version: str, text: str, at: datetime
) -> None:
    """Keep ``text`` as the definition of ``gate`` at ``version``; a version already
    stored stays as it is (the same version always means the same definition)."""
    values = {"gate": gate, "version": version, "text": text, "created_at": at}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        await session.execute(
            postgresql.insert(GateVersionRow).values(values).on_conflict_do_nothing()
        )
    elif dialect == "sqlite":
        await session.execute(sqlite.insert(GateVersionRow).values(values).on_conflict_do_nothing())
    elif await session.get(GateVersionRow, (gate, version)) is None:
        session.add(GateVersionRow(**values))
        await session.flush()


async def gate_version_text(session: AsyncSession, gate: str, version: str) -> str | None:
    """The stored definition of ``gate`` at ``version``, if any."""
    row = await session.get(GateVersionRow, (gate, version))
    return row.text if row is not None else None


async def delete_api_gate(session: AsyncSession, name: str) -> bool:
    result = await session.execute(delete(GateRow).where(GateRow.name == name))
    return bool(getattr(result, "rowcount", 0))


async def running_check_count(session: AsyncSession, gate: str) -> int:
    result = await session.scalar(
        select(func.count())
        .select_from(CheckRow)
        .where(CheckRow.gate == gate, CheckRow.state == RUNNING)
    )
    return int(result or 0)


async def add_sample(
    session: AsyncSession,
    *,
    gate: str,
    check_id: str | None,
    evaluated_at: datetime,
    decision: str,
    body: dict[str, Any],
    measurements: list[dict[str, Any]] | None = None,
    gate_version: str | None = None,
) -> int:
    row = SampleRow(
        gate=gate,
        check_id=check_id,
        evaluated_at=evaluated_at,
        decision=decision,
        body=body,
        measurements=measurements,
        gate_version=gate_version,
    )
    session.add(row)
    await session.flush()
    return row.id


async def gate_samples(
    session: AsyncSession,
    gate: str,
    *,
    since: datetime | None,
    before_id: int | None,
    limit: int,
) -> list[SampleRow]:
    """Continuous samples of ``gate``, newest first."""
    query = select(SampleRow).where(SampleRow.gate == gate, SampleRow.check_id.is_(None))
    if since is not None:
        query = query.where(SampleRow.evaluated_at > since)
    if before_id is not None:
        query = query.where(SampleRow.id < before_id)
    query = query.order_by(SampleRow.id.desc()).limit(limit)
    return list(await session.scalars(query))


async def recent_gate_samples(
    session: AsyncSession, gate: str, version: str, limit: int
) -> list[SampleRow]:
    """The newest ``limit`` continuous samples of ``gate`` judged by ``version``, oldest
    first (the history the scheduler starts from after a restart)."""
    result = await session.scalars(
        select(SampleRow)
        .where(
            SampleRow.gate == gate,
            SampleRow.check_id.is_(None),
            SampleRow.gate_version == version,
        )
        .order_by(SampleRow.evaluated_at.desc(), SampleRow.id.desc())
        .limit(limit)
    )
    return list(reversed(list(result)))


async def newest_gate_samples(session: AsyncSession, gates: Sequence[str]) -> list[SampleRow]:
    """The newest continuous sample of each of ``gates`` (those that have one): one query
    through the ``(gate, evaluated_at)`` index."""
    if not gates:
        return []
    if len(gates) == 1:
        row = await session.scalar(
            select(SampleRow)
            .where(SampleRow.gate == gates[0], SampleRow.check_id.is_(None))
            .order_by(SampleRow.evaluated_at.desc(), SampleRow.id.desc())
            .limit(1)
        )
        return [row] if row is not None else []
    newest = (
        func.row_number()
        .over(
            partition_by=SampleRow.gate,
            order_by=(SampleRow.evaluated_at.desc(), SampleRow.id.desc()),
        )
        .label("newest")
    )
    ranked = (
        select(SampleRow.id, newest)
        .where(SampleRow.check_id.is_(None), SampleRow.gate.in_(sorted(set(gates))))
        .subquery()
    )
    result = await session.scalars(
        select(SampleRow).join(ranked, ranked.c.id == SampleRow.id).where(ranked.c.newest == 1)
    )
    return list(result)


async def prune_continuous_samples(session: AsyncSession, older_than: datetime) -> int:
    """Delete continuous samples older than ``older_than``; a check's samples are kept."""
    result = await session.execute(
        delete(SampleRow).where(SampleRow.check_id.is_(None), SampleRow.evaluated_at < older_than)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def continuous_history(
    session: AsyncSession, since: Mapping[str, datetime], *, per_gate: int
) -> list[tuple[str, datetime, str, Any]]:
    """``(gate, evaluated_at, decision, criteria)`` of the continuous samples of each gate
    in ``since`` evaluated after its instant there, at most the newest ``per_gate`` of
    each gate, oldest first: one query for every gate the status page shows (read-only,
    through the ``(gate, evaluated_at)`` index). Only the decision body's ``criteria`` are
    read, not the whole body."""
    if not since or per_gate < 1:
        return []
    gates_since: dict[datetime, list[str]] = {}
    for gate, instant in since.items():
        gates_since.setdefault(instant, []).append(gate)
    newest = (
        func.row_number()
        .over(
            partition_by=SampleRow.gate,
            order_by=(SampleRow.evaluated_at.desc(), SampleRow.id.desc()),
        )
        .label("newest")
    )
    recent = (
        select(
            SampleRow.id,
            SampleRow.gate,
            SampleRow.evaluated_at,
            SampleRow.decision,
            SampleRow.body["criteria"].label("criteria"),
            newest,
        )
        .where(
            SampleRow.check_id.is_(None),
            or_(
                *(
                    and_(SampleRow.gate.in_(names), SampleRow.evaluated_at > instant)
                    for instant, names in gates_since.items()
                )
            ),
        )
        .subquery()
    )
    result = await session.execute(
        select(recent.c.gate, recent.c.evaluated_at, recent.c.decision, recent.c.criteria)
        .where(recent.c.newest <= per_gate)
        .order_by(recent.c.gate, recent.c.evaluated_at, recent.c.id)
    )
    return [(row[0], row[1], row[2], row[3]) for row in result]
