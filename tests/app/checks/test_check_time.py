"""A check across a restart (docs/decisions.md, "Gaps between samples"): samples from before
a long downtime do not count towards a steady run after it."""

from __future__ import annotations

from pathlib import Path

import httpx

from app.core.clock import ManualClock
from probes.base import Measurement
from tests.app.conftest import Service, open_service
from tests.app.fakes import T0, ProbeBench

STEADY = """\
interval: 10s
steady_for: 3
timeout: 24h
probes:
  s: {type: constant, value: 1}
criteria:
  - {name: availability, probe: s, go: "> 99%"}
"""


async def test_a_restart_in_the_middle_of_a_steady_run_needs_fresh_passes(
    database_url: str, gates_dir: Path, clock: ManualClock
) -> None:
    """Regression: two passes, three hours down, one pass gave go."""
    (gates_dir / "steady.yaml").write_text(STEADY)
    app, lifespan = await open_service(database_url, gates_dir, clock, ProbeBench())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        first = Service(app, c, clock, ProbeBench(), database_url)
        check = await first.start_check("steady")
        await first.samples_reach(check["id"], 1)
        await first.advance(10)
        await first.samples_reach(check["id"], 2)
        assert (await first.check(check["id"]))["steady"] == {"passes": 2, "needed": 3}
    await lifespan.__aexit__(None, None, None)

    await clock.advance(3 * 3600)  # three hours down
    app, lifespan = await open_service(database_url, gates_dir, clock, ProbeBench())
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            second = Service(app, c, clock, ProbeBench(), database_url)
            await second.samples_reach(check["id"], 3)
            resumed = await second.check(check["id"])
            assert (resumed["state"], resumed["decision"]) == ("running", "no_go")
            assert resumed["reasons"][0] == "steady 1/3"
            assert resumed["reasons"][1].startswith("gap of 3h")
            for count in (4, 5):
                await second.advance(10)
                await second.samples_reach(check["id"], count)
            final = await second.final(check["id"])
            assert final["decision"] == "go"
            assert len(final["deciding_samples"]) == 3
    finally:
        await lifespan.__aexit__(None, None, None)


FLAKY = """\
interval: 10s
steady_for: 3
rollback_after: 2
timeout: 24h
probes:
  f: {type: constant, value: 1}
criteria:
  - {name: availability, probe: f, go: "> 99%", rollback: "< 95%"}
"""


async def test_a_flaky_probe_between_breaches_still_rolls_back(service: Service) -> None:
    """Regression: breach, probe error, breach never reached rollback_after: 2."""
    created = await service.client.put(
        "/api/v1/gates/flaky", content=FLAKY, headers=service.headers("admin")
    )
    assert created.status_code in (200, 201), created.text
    probe = service.bench.latest("f")
    probe.answer = 0.9
    check = await service.start_check("flaky")
    await service.samples_reach(check["id"], 1)
    probe.answer = Measurement.error("source: connection refused after 3 tries", T0)
    await service.advance(10)
    await service.samples_reach(check["id"], 2)
    assert (await service.check(check["id"]))["state"] == "running"
    probe.answer = 0.9
    await service.advance(10)
    final = await service.final(check["id"])
    assert final["decision"] == "rollback"
    assert final["reasons"] == ["availability: 90 % < 95 % (rollback: < 95%) [breach 2/2]"]
    assert len(final["deciding_samples"]) == 3
