"""The stored samples a replay reads: a gate's continuous samples over a range, by pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Text, and_, cast, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import SampleRow

# Rows per read: a page is fetched on the event loop, so keep each one short.
PAGE_ROWS = 2_000


@dataclass(frozen=True, slots=True)
class StoredRow:
    """A stored sample as read, its JSON columns still text: decoding them is CPU work
    that the caller does off the event loop."""

    id: int
    evaluated_at: datetime
    body: str
    measurements: str | None


async def continuous_sample_pages(
    session: AsyncSession,
    gate: str,
    version: str,
    start: datetime,
    end: datetime,
    *,
    limit: int,
    page_rows: int = PAGE_ROWS,
) -> AsyncIterator[list[StoredRow]]:
    """Continuous samples of ``gate`` judged by ``version`` and evaluated in
    ``[start, end]``, oldest first, at most ``limit`` (the oldest ones), ``page_rows`` a
    page (keyset pages on ``(evaluated_at, id)``): a sample another definition took
    measured another query, URL or matcher."""
    after: tuple[datetime, int] | None = None
    remaining = limit
    while remaining > 0:
        query = (
            select(
                SampleRow.id,
                SampleRow.evaluated_at,
                cast(SampleRow.body, Text),
                cast(SampleRow.measurements, Text),
            )
            .where(
                SampleRow.gate == gate,
                SampleRow.gate_version == version,
                SampleRow.check_id.is_(None),
                SampleRow.evaluated_at >= start,
                SampleRow.evaluated_at <= end,
            )
            .order_by(SampleRow.evaluated_at, SampleRow.id)
            .limit(min(page_rows, remaining))
        )
        if after is not None:
            at, row_id = after
            query = query.where(
                or_(
                    SampleRow.evaluated_at > at,
                    and_(SampleRow.evaluated_at == at, SampleRow.id > row_id),
                )
            )
        page = [StoredRow(*row) for row in (await session.execute(query)).all()]
        if not page:
            return
        yield page
        remaining -= len(page)
        if len(page) < page_rows:
            return
        after = (page[-1].evaluated_at, page[-1].id)
