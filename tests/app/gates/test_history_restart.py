"""The continuous history survives a restart (docs/decisions.md, "Gate versions and
pinning"): the scheduler starts each gate from its stored samples of the current version,
with the measurements (status, instant, extras) its probes read back, so a windowed value
such as the ``http`` probe's availability keeps its window."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from app.core.clock import ManualClock
from gates.model import history_size
from probes.base import MeasurementStatus
from tests.app.conftest import Service, open_service
from tests.app.fakes import ProbeBench

# An http availability criterion over 60s at a 10s interval: 7 samples of history.
AVAIL = """\
interval: 10s
steady_for: 2
probes:
  health: {type: http, url: "http://health.test/up"}
criteria:
  - {name: availability, probe: health, metric: availability, window: 60s, go: "> 99%"}
"""


@asynccontextmanager
async def running(
    database_url: str, gates_dir: Path, clock: ManualClock, bench: ProbeBench
) -> AsyncIterator[Service]:
    app, lifespan = await open_service(database_url, gates_dir, clock, bench)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield Service(app, client, clock, bench, database_url)
    finally:
        await lifespan.__aexit__(None, None, None)


async def stored_count(service: Service, gate: str) -> int:
    page = (await service.get(f"/api/v1/gates/{gate}/samples?limit=100")).json()
    return len(page["items"])


async def sample_five_times(service: Service) -> None:
    """Five continuous samples of ``avail`` (its first tick is offset within the interval)."""
    scheduler = service.app.state.scheduler
    for _ in range(6):
        await service.advance(10)
        if len(scheduler.history("avail")) >= 5:
            break

    async def stored() -> bool:
        return await stored_count(service, "avail") >= len(scheduler.history("avail"))

    await service.until(stored)
    assert len(scheduler.history("avail")) == 5


async def test_the_continuous_history_is_reloaded_after_a_restart(
    database_url: str, gates_dir: Path, clock: ManualClock
) -> None:
    (gates_dir / "avail.yaml").write_text(AVAIL)
    async with running(database_url, gates_dir, clock, ProbeBench()) as first:
        await sample_five_times(first)
        before = list(first.app.state.scheduler.history("avail"))
        assert len(before) == 5

    bench = ProbeBench()
    async with running(database_url, gates_dir, clock, bench) as second:
        await second.quiet()
        restored = second.app.state.scheduler.history("avail")
        assert [s.evaluated_at for s in restored] == [s.evaluated_at for s in before]
        for sample in restored:
            (result,) = sample.results
            assert result.status is MeasurementStatus.OK
            assert result.observed_at is not None

        await second.advance(10)

        async def asked() -> bool:
            return any(p.calls for p in bench.built if p.name == "health")

        await second.until(asked)
        probe = bench.latest("health")
        # The probe sees the pre-restart measurements: its window is still covered.
        seen = [m.observed_at for m in probe.calls[-1].ctx.history]
        assert seen[-5:] == [r.results[0].observed_at for r in before][-5:]
        assert len(seen) >= 5


async def test_a_gate_redefined_while_down_starts_a_fresh_history(
    database_url: str, gates_dir: Path, clock: ManualClock
) -> None:
    (gates_dir / "avail.yaml").write_text(AVAIL)
    async with running(database_url, gates_dir, clock, ProbeBench()) as first:
        await sample_five_times(first)

    (gates_dir / "avail.yaml").write_text(AVAIL.replace("window: 60s", "window: 50s"))
    async with running(database_url, gates_dir, clock, ProbeBench()) as second:
        await second.quiet()
        # Samples of another version judged other criteria: none of them is reloaded.
        assert second.app.state.scheduler.history("avail") == ()
        portal = second.app.state.catalog.get("portal").gate
        # The unchanged gate's history is back, as much of it as the decision looks at.
        assert len(second.app.state.scheduler.history("portal")) == min(5, history_size(portal))
