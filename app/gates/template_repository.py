"""Database reads and writes for API-defined criterion templates and their audit trail.

Nothing here commits: the caller's unit of work owns the transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import GateRow, TemplateEventRow, TemplateRow
from app.gates.repository import save_gate_version


async def api_templates(session: AsyncSession) -> list[TemplateRow]:
    result = await session.scalars(select(TemplateRow).order_by(TemplateRow.name))
    return list(result)


async def save_template(
    session: AsyncSession, *, name: str, text: str, at: datetime, by: str
) -> bool:
    """Insert or replace; returns True when the template is new."""
    row = await session.get(TemplateRow, name, with_for_update=True)
    if row is None:
        session.add(TemplateRow(name=name, text=text, updated_at=at, updated_by=by))
        await session.flush()
        return True
    row.text, row.updated_at, row.updated_by = text, at, by
    await session.flush()
    return False


async def delete_template(session: AsyncSession, name: str) -> bool:
    result = await session.execute(delete(TemplateRow).where(TemplateRow.name == name))
    return bool(getattr(result, "rowcount", 0))


async def save_gate_redefinition(
    session: AsyncSession, *, gate: str, version: str, text: str, at: datetime
) -> None:
    """An API-defined gate got a new version from a template change: keep the version's
    definition, and the version on the gate's row (its own text is unchanged)."""
    await save_gate_version(session, gate=gate, version=version, text=text, at=at)
    row = await session.get(GateRow, gate, with_for_update=True)
    if row is not None:
        row.version = version
        await session.flush()


async def add_template_event(
    session: AsyncSession,
    template: str,
    kind: str,
    *,
    at: datetime,
    actor: str,
    data: dict[str, Any],
) -> None:
    session.add(TemplateEventRow(template=template, kind=kind, at=at, actor=actor, data=data))
    await session.flush()


async def template_events(
    session: AsyncSession, template: str, *, after: int | None, limit: int
) -> list[TemplateEventRow]:
    query = select(TemplateEventRow).where(TemplateEventRow.template == template)
    if after is not None:
        query = query.where(TemplateEventRow.id > after)
    result = await session.scalars(query.order_by(TemplateEventRow.id).limit(limit))
    return list(result)
