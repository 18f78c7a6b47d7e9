"""Event-loop liveness: while ``POST /api/v1/gates/{gate}/replay`` replays the most stored
samples a replay may read (50,000), ``/healthz`` keeps answering within a bound: the
samples are read by pages and decoded, rebuilt and judged off the event loop."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from sqlalchemy import insert, select

from app.core.db import SampleRow
from app.gates.replay_service import MAX_STORED_SAMPLES
from tests.app.conftest import Service

# A blocked loop shows as seconds (the 50,000 rows read and decoded on it froze it for
# 5 s), while worker threads judging thousands of steps share the interpreter with the
# loop and delay single answers: up to ~0.55 s on a loaded 2-CPU machine, 1.3 s once with
# a CI run's services beside it. The bound sits between the two.
HEALTHZ_BOUND_SECONDS = 2.5
EVERY = timedelta(seconds=10)


async def test_healthz_answers_while_a_replay_reads_the_most_stored_samples(
    service: Service,
) -> None:
    service.probe("p").answer = 1.0

    async def sampled() -> bool:
        await service.advance(10)
        page = (await service.get("/api/v1/gates/portal/samples?limit=1")).json()
        return bool(page["items"])

    await service.until(sampled)
    db = service.app.state.db
    async with db.session() as session:
        newest = select(SampleRow).where(SampleRow.gate == "portal").limit(1)
        live = (await session.scalars(newest)).one()
        first = live.evaluated_at - EVERY * MAX_STORED_SAMPLES
        rows = [
            {
                "gate": live.gate,
                "check_id": None,
                "evaluated_at": first + EVERY * index,
                "decision": live.decision,
                "body": live.body,
                "measurements": live.measurements,
                "gate_version": live.gate_version,
            }
            for index in range(MAX_STORED_SAMPLES)
        ]
        for chunk in range(0, len(rows), 5_000):
            await session.execute(insert(SampleRow), rows[chunk : chunk + 5_000])
        await session.commit()
    span = {
        "from": first.isoformat(),
        "to": (live.evaluated_at - EVERY).isoformat(),
        "step": "30s",  # 16,667 steps over 50,000 samples
    }
    for _ in range(3):  # warm the route
        assert (await service.client.get("/healthz")).status_code == 200

    latencies: list[float] = []
    done = asyncio.Event()

    async def probe_healthz() -> None:
        # Each round's pause is counted too: a loop blocked while this task waits to be
        # woken shows as a late round as surely as a late answer.
        pause = 0.02
        while not done.is_set():
            sent = time.monotonic()
            await asyncio.sleep(pause)
            assert (await service.client.get("/healthz")).status_code == 200
            latencies.append(time.monotonic() - sent - pause)

    async def run_replay() -> tuple[int, dict[str, object], float]:
        started = time.monotonic()
        try:
            response = await service.post("/api/v1/gates/portal/replay", "viewer", json=span)
        finally:
            done.set()
        return response.status_code, response.json(), time.monotonic() - started

    (status, body, took), _ = await asyncio.gather(run_replay(), probe_healthz())
    print(
        f"replay of {MAX_STORED_SAMPLES:,} stored samples: {took:.2f} s;"
        f" {len(latencies)} /healthz during it, slowest {max(latencies) * 1000:.0f} ms"
    )
    assert status == 200, body
    criteria = body["criteria"]
    assert isinstance(criteria, list)
    # 50,000 read, and only those a step takes (one in three at a 30 s step) decoded.
    assert "from 16,667 stored samples" in criteria[0]["reason"]
    assert len(latencies) >= 5, "the replay was too quick to overlap any /healthz request"
    assert max(latencies) < HEALTHZ_BOUND_SECONDS
