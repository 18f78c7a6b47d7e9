"""``POST /api/v1/gates/{gate}/replay``: a viewer replays a loaded gate with its own probes
and gets the same JSON as ``gonogo replay --json``; bad input is a 422 naming the field,
never a 5xx; a second replay of a gate while one runs is a 429; a probe type with no range
reads is "not replayable" and never gives go."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from app.core.clock import ManualClock
from app.core.db import SampleRow
from app.core.migrate import upgrade_database
from probes.base import Measurement, ProbeConfig, ProbeContext, ProbeQuery, Series
from tests.app.conftest import PORTAL, TOKENS, Service, open_service
from tests.app.fakes import ProbeBench
from tests.conftest import T0
from tests.fakeprobe import FakeProbe

RANGED = PORTAL.replace("description: test gate", "description: a gate on a source with history")


class RangeFakeProbe(FakeProbe):
    """A scripted probe whose source also keeps history: 0.999 at every step, but 0.5
    from ``T0 + 10m`` for 5 minutes; a range read can be held until released."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.range_calls = 0
        self.hold: asyncio.Event | None = None

    async def measure_range(
        self, query: ProbeQuery, ctx: ProbeContext, start: datetime, end: datetime, step: timedelta
    ) -> Series | Measurement:
        self.range_calls += 1
        if self.hold is not None:
            await self.hold.wait()
        points = []
        at = start
        while at <= end:
            bad = T0 + timedelta(minutes=10) <= at < T0 + timedelta(minutes=15)
            points.append((at, 0.5 if bad else 0.999))
            at += step
        return Series.of(points, ctx.now, source="fake")


class RangeBench(ProbeBench):
    def __call__(self, config: ProbeConfig, name: str) -> FakeProbe:
        probe = RangeFakeProbe(1.0, name=name)
        self.built.append(probe)
        return probe


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, bench: ProbeBench) -> AsyncIterator[httpx.AsyncClient]:
    gates = tmp_path / "gates"
    gates.mkdir()
    (gates / "portal.yaml").write_text(RANGED)
    url = f"sqlite+aiosqlite:///{tmp_path / 'gonogo.db'}"
    await upgrade_database(url)
    app, lifespan = await open_service(url, gates, ManualClock(T0 + timedelta(days=1)), bench)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gonogo.test") as http:
            http.headers["Authorization"] = f"Bearer {TOKENS['viewer']}"
            yield http
    finally:
        await lifespan.__aexit__(None, None, None)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, RangeBench]]:
    bench = RangeBench()
    async with serving(tmp_path, bench) as http:
        yield http, bench


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


BODY = {"from": iso(T0), "to": iso(T0 + timedelta(minutes=30)), "step": "1m"}


async def test_a_viewer_replays_a_gate_and_gets_the_timeline_and_summary(
    client: tuple[httpx.AsyncClient, RangeBench],
) -> None:
    http, _ = client
    anonymous = await http.post(
        "/api/v1/gates/portal/replay", json=BODY, headers={"Authorization": ""}
    )
    assert anonymous.status_code == 401
    response = await http.post("/api/v1/gates/portal/replay", json=BODY)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["gate"] == "portal" and body["step_seconds"] == 60
    assert len(body["timeline"]) == 31
    decisions = [s["decision"] for s in body["timeline"]]
    # steady_for 2, rollback_after 2: no_go, go..., no_go (breach 1/2), rollback x4, ...
    assert decisions[:2] == ["no_go", "go"]
    assert decisions[10:16] == ["no_go", "rollback", "rollback", "rollback", "rollback", "no_go"]
    assert decisions[16:] == ["go"] * 15
    assert body["summary"]["rollbacks"] == 1 and body["summary"]["changes"] == 5
    assert body["timeline"][11]["criteria"] == [
        {"name": "availability", "outcome": "breach", "value": 0.5}
    ]
    assert body["criteria"][0]["reads"] == 1 and body["criteria"][0]["replayable"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({**BODY, "from": iso(T0 + timedelta(hours=1))}, ["body", "from"]),
        ({**BODY, "step": "1s", "to": iso(T0 + timedelta(days=1))}, ["body", "step"]),
        ({**BODY, "to": iso(T0 + timedelta(days=40))}, ["body", "to"]),
        ({**BODY, "from": "2026-11-24T10:00:00"}, ["body", "from"]),
        ({**BODY, "from": "yesterday"}, ["body", "from"]),
        ({**BODY, "step": "soon"}, ["body", "step"]),
        ({**BODY, "vars": {"colour": "blue"}}, ["body", "vars", "colour"]),
        ({**BODY, "vars": {"window": "5m"}}, ["body", "vars", "window"]),
        ({**BODY, "extra": 1}, ["body", "extra"]),
        ({"to": BODY["to"]}, ["body", "from"]),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(
    client: tuple[httpx.AsyncClient, RangeBench], body: dict[str, Any], loc: list[str]
) -> None:
    http, _ = client
    response = await http.post("/api/v1/gates/portal/replay", json=body)
    assert response.status_code == 422, response.text
    assert loc in [error["loc"] for error in response.json()["errors"]], response.text


async def test_an_unknown_gate_is_404(client: tuple[httpx.AsyncClient, RangeBench]) -> None:
    http, _ = client
    assert (await http.post("/api/v1/gates/nope/replay", json=BODY)).status_code == 404


async def test_one_replay_per_gate_at_a_time(
    client: tuple[httpx.AsyncClient, RangeBench],
) -> None:
    http, bench = client
    probe = bench.latest("p")
    assert isinstance(probe, RangeFakeProbe)
    probe.hold = asyncio.Event()
    first = asyncio.create_task(http.post("/api/v1/gates/portal/replay", json=BODY))
    while probe.range_calls == 0:
        await asyncio.sleep(0)
    second = await http.post("/api/v1/gates/portal/replay", json=BODY)
    assert second.status_code == 429, second.text
    assert "already running" in second.json()["detail"]
    probe.hold.set()
    assert (await first).status_code == 200
    assert (await http.post("/api/v1/gates/portal/replay", json=BODY)).status_code == 200


async def test_a_probe_with_no_range_reads_is_not_replayable_and_never_go(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path, ProbeBench()) as http:  # instant reads only
        response = await http.post("/api/v1/gates/portal/replay", json=BODY)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["criteria"][0]["replayable"] is False
    assert "no range reads" in body["criteria"][0]["reason"]
    assert {s["decision"] for s in body["timeline"]} == {"no_go"}
    assert body["summary"]["not_replayable"] == ["availability"]


async def test_a_stored_stretch_of_live_samples_replays_to_the_decisions_made_live(
    service: Service,
) -> None:
    """The portal gate's probe has no range reads: the replay takes its values from the
    stored samples, judges them again and decides, and gets what was decided live."""
    scheduler = service.app.state.scheduler
    # pass x3, fail, breach x3 (rollback_after 2), pass x4
    script = [1.0] * 3 + [0.97] + [0.9] * 3 + [1.0] * 4

    def latest() -> object:
        history = scheduler.history("portal")
        return history[-1].evaluated_at if history else None

    for value in script:
        service.probe("p").answer = value
        before = latest()
        for _ in range(3):  # the first tick is offset within the interval
            await service.advance(10)
            if latest() != before:
                break
        assert latest() != before

    newest = latest()
    assert isinstance(newest, datetime)

    async def stored() -> bool:  # the last live sample is written
        page = (await service.get("/api/v1/gates/portal/samples?limit=1")).json()
        return bool(page["items"]) and page["items"][0]["evaluated_at"] == iso(newest)

    await service.until(stored)
    items = (await service.get("/api/v1/gates/portal/samples?limit=100")).json()["items"]
    live = list(reversed(items))[-len(script) :]
    response = await service.post(
        "/api/v1/gates/portal/replay",
        "viewer",
        json={"from": live[0]["evaluated_at"], "to": live[-1]["evaluated_at"], "step": "10s"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["criteria"][0]["replayable"] is True
    assert "stored samples" in body["criteria"][0]["reason"]
    replayed = [
        (s["at"], s["decision"], s["reasons"], [c["outcome"] for c in s["criteria"]])
        for s in body["timeline"]
    ]
    made = [
        (s["evaluated_at"], s["decision"], s["reasons"], [c["outcome"] for c in s["criteria"]])
        for s in live
    ]
    assert replayed == made
    assert {s["decision"] for s in live} == {"go", "no_go", "rollback"}


async def test_stored_samples_of_another_version_or_for_other_values_are_never_replayed(
    service: Service,
) -> None:
    """Samples another definition took measured another URL or query, and the gate's
    own samples measured its default values, not a replay's ``vars``: neither may stand
    in for what the replayed definition would have seen."""
    service.probe("p").answer = 1.0
    for _ in range(4):
        await service.advance(10)

    async def stored() -> bool:
        page = (await service.get("/api/v1/gates/portal/samples?limit=1")).json()
        return bool(page["items"])

    await service.until(stored)
    items = (await service.get("/api/v1/gates/portal/samples?limit=100")).json()["items"]
    span = {"from": items[-1]["evaluated_at"], "to": items[0]["evaluated_at"], "step": "10s"}
    db = service.app.state.db
    async with db.session() as session:  # as if an older definition had taken them
        await session.execute(update(SampleRow).values(gate_version="0ld0ld0ld0ld"))
    response = await service.post("/api/v1/gates/portal/replay", "viewer", json=span)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["criteria"][0]["replayable"] is False, body["criteria"][0]
    assert {s["decision"] for s in body["timeline"]} == {"no_go"}
