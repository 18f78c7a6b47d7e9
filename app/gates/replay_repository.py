"""The stored samples a replay reads: a gate's continuous samples over a range."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import SampleRow


async def continuous_samples_between(
    session: AsyncSession, gate: str, start: datetime, end: datetime, *, limit: int
) -> list[SampleRow]:
    """Continuous samples of ``gate`` evaluated in ``[start, end]``, oldest first, at most
    ``limit`` (the oldest ones)."""
    query = (
        select(SampleRow)
        .where(
            SampleRow.gate == gate,
            SampleRow.check_id.is_(None),
            SampleRow.evaluated_at >= start,
            SampleRow.evaluated_at <= end,
        )
        .order_by(SampleRow.evaluated_at, SampleRow.id)
        .limit(limit)
    )
    return list(await session.scalars(query))
