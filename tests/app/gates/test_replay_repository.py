"""The stored samples a replay reads come by keyset pages: every matching row once, in
order (ties on ``evaluated_at`` split across pages included), at most ``limit``, and never
a row of another gate, version or check; on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from app.core.db import Database, SampleRow
from app.gates.replay_repository import continuous_sample_pages

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def row(at: datetime, **fields: object) -> dict[str, object]:
    return {
        "gate": "portal",
        "check_id": None,
        "evaluated_at": at,
        "decision": "go",
        "body": {"criteria": [], "n": at.second},
        "measurements": None,
        "gate_version": "v1",
        **fields,
    }


async def test_pages_read_every_matching_row_once_in_order_up_to_the_limit(
    database_url: str,
) -> None:
    db = Database(database_url)
    try:
        async with db.session() as session:
            # Three rows share each instant, so pages of 4 cut through ties.
            wanted = [row(T0 + timedelta(seconds=s // 3)) for s in range(30)]
            others = [
                row(T0, gate="signed"),
                row(T0, gate_version="v0"),
                row(T0 - timedelta(seconds=1)),
                row(T0 + timedelta(seconds=11)),
            ]
            await session.execute(insert(SampleRow), wanted + others)
            await session.commit()
        async with db.session() as session:
            span = (T0, T0 + timedelta(seconds=10))
            pages = [
                page
                async for page in continuous_sample_pages(
                    session, "portal", "v1", *span, limit=1_000, page_rows=4
                )
            ]
            limited = [
                page
                async for page in continuous_sample_pages(
                    session, "portal", "v1", *span, limit=10, page_rows=4
                )
            ]
    finally:
        await db.dispose()
    read = [r for page in pages for r in page]
    assert [len(page) for page in pages] == [4] * 7 + [2]
    assert len({r.id for r in read}) == 30
    assert [(r.evaluated_at, r.id) for r in read] == sorted((r.evaluated_at, r.id) for r in read)
    assert all(isinstance(r.body, str) and '"criteria"' in r.body for r in read)
    assert [len(page) for page in limited] == [4, 4, 2]
    assert [r.id for page in limited for r in page] == [r.id for r in read[:10]]
