"""The stored samples a replay reads: a gate's continuous samples over a range."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import SampleRow


async def continuous_samples_between(
    session: AsyncSession,
    gate: str,
    version: str,
    start: datetime,
    end: datetime,
    *,
    limit: int,
) -> list[SampleRow]:
    """Continuous samples of ``gate`` judged by ``version`` and evaluated in
    ``[start, end]``, oldest first, at most ``limit`` (the oldest ones): a sample another
    definition took measured another query, URL or matcher."""
    query = (
        select(SampleRow)
        .where(
            SampleRow.gate == gate,
            SampleRow.gate_version == version,
            SampleRow.check_id.is_(None),
            SampleRow.evaluated_at >= start,
            SampleRow.evaluated_at <= end,
        )
        .order_by(SampleRow.evaluated_at, SampleRow.id)
        .limit(limit)
    )
    return list(await session.scalars(query))
