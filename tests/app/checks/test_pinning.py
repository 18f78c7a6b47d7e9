"""A check is judged by the gate version it started with (docs/decisions.md, "Gate
versions and pinning"): a redefinition by PUT, by a reload of the gate files or while the
service was down never changes the definition that judges a running check, and a version
that can no longer be loaded ends the check ``no_go`` naming the version."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.clock import ManualClock
from app.core.db import SampleRow
from tests.app.conftest import PORTAL, SIGNED, Service, open_service
from tests.app.fakes import ProbeBench

# PORTAL's own criterion turned around: under this version a value of 1 fails.
REDEFINED = PORTAL.replace('go: "> 99%"', 'go: "< 50%"')
API_GATE = PORTAL.replace("description: test gate", "description: api gate")


@asynccontextmanager
async def running(
    database_url: str, gates_dir: Path, clock: ManualClock, bench: ProbeBench | None = None
) -> AsyncIterator[Service]:
    bench = bench or ProbeBench()
    app, lifespan = await open_service(database_url, gates_dir, clock, bench)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield Service(app, client, clock, bench, database_url)
    finally:
        await lifespan.__aexit__(None, None, None)


async def events(service: Service, check_id: str) -> list[dict[str, Any]]:
    response = await service.get(f"/api/v1/checks/{check_id}/events")
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def stored_versions(database_url: str, sample_ids: list[int]) -> set[str | None]:
    """The ``gate_version`` column of the given sample rows, read from the database."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(SampleRow.gate_version).where(SampleRow.id.in_(sample_ids))
            )
            return {row[0] for row in rows}
    finally:
        await engine.dispose()


async def assert_judged_by(service: Service, final: dict[str, Any], version: str) -> None:
    """The final check and every one of its deciding samples carry ``version``."""
    assert final["gate_version"] == version
    deciding = final["deciding_samples"]
    assert deciding
    by_sample = {
        e["data"]["sample_id"]: e["data"]["gate_version"]
        for e in await events(service, final["id"])
        if e["kind"] == "sample"
    }
    assert {by_sample[i] for i in deciding} == {version}
    assert set(by_sample.values()) == {version}  # every sample of the check, in fact
    assert await stored_versions(service.database_url, deciding) == {version}
    last = [e for e in await events(service, final["id"]) if e["kind"] == "final"][-1]
    assert last["data"]["gate_version"] == version


async def redefine_by_put(service: Service, gates_dir: Path) -> str:
    response = await service.client.put(
        "/api/v1/gates/api",
        content=API_GATE.replace('"> 99%"', '"< 50%"'),
        headers=service.headers("admin"),
    )
    assert response.status_code == 200, response.text
    version: str = response.json()["version"]
    return version


async def redefine_by_reload(service: Service, gates_dir: Path) -> str:
    (gates_dir / "portal.yaml").write_text(REDEFINED)
    response = await service.post("/api/v1/admin/reload", "admin")
    assert response.status_code == 200, response.text
    assert response.json()["replaced"] == ["portal"]
    version: str = (await service.get("/api/v1/gates/portal")).json()["version"]
    return version


@pytest.mark.parametrize("redefine", [redefine_by_put, redefine_by_reload], ids=["put", "reload"])
async def test_a_check_redefined_while_it_runs_is_judged_by_its_own_version(
    service: Service, gates_dir: Path, redefine: Any
) -> None:
    gate = "portal"
    if redefine is redefine_by_put:
        gate = "api"
        created = await service.client.put(
            "/api/v1/gates/api", content=API_GATE, headers=service.headers("admin")
        )
        assert created.status_code == 201
    old = (await service.get(f"/api/v1/gates/{gate}")).json()["version"]
    check = await service.start_check(gate)
    assert check["gate_version"] == old
    await service.samples_reach(check["id"], 1)

    new = await redefine(service, gates_dir)
    assert new != old

    await service.advance(10)
    final = await service.final(check["id"])
    # Under the new version a value of 1 fails; the check goes on the old one's terms.
    assert final["decision"] == "go", final["reasons"]
    await assert_judged_by(service, final, old)

    redefined = [e for e in await events(service, check["id"]) if e["kind"] == "gate_redefined"]
    assert len(redefined) == 1
    assert redefined[0]["data"]["pinned"] == old
    assert redefined[0]["data"]["current"] == new
    assert "stays pinned" in redefined[0]["data"]["note"]

    # The continuous decision follows the current version.
    async def judged_by_new() -> bool:
        page = (await service.get(f"/api/v1/gates/{gate}/samples?limit=1")).json()
        return bool(page["items"]) and page["items"][0]["gate_version"] == new

    await service.until(judged_by_new)
    latest = (await service.get(f"/api/v1/gates/{gate}/samples?limit=1")).json()["items"][0]
    assert latest["decision"] == "no_go"
    assert latest["criteria"][0]["outcome"] == "fail"


async def test_a_check_created_after_a_redefinition_uses_the_new_version(
    service: Service, gates_dir: Path
) -> None:
    new = await redefine_by_reload(service, gates_dir)
    check = await service.start_check("portal", timeout="15s")
    assert check["gate_version"] == new
    await service.samples_reach(check["id"], 1)
    await service.advance(10)
    await service.advance(10)
    final = await service.final(check["id"])
    assert final["decision"] == "no_go"
    assert final["gate_version"] == new
    assert any("50 % (go: < 50%)" in r for r in final["reasons"]), final["reasons"]


async def test_a_restarted_service_judges_a_check_by_its_pinned_version(
    database_url: str, gates_dir: Path, clock: ManualClock
) -> None:
    async with running(database_url, gates_dir, clock) as first:
        old = (await first.get("/api/v1/gates/portal")).json()["version"]
        check = await first.start_check("portal")
        await first.samples_reach(check["id"], 1)

    # The file changes while the service is down.
    (gates_dir / "portal.yaml").write_text(REDEFINED)
    await clock.advance(10)

    async with running(database_url, gates_dir, clock) as second:
        new = (await second.get("/api/v1/gates/portal")).json()["version"]
        assert new != old
        resumed = await second.check(check["id"])
        # Resumed at once (its next tick is due), it may already have ended: either way
        # it is the pinned version that judges it.
        assert resumed["state"] in ("running", "final")
        assert resumed["gate_version"] == old
        final = await second.final(check["id"])
        assert final["decision"] == "go", final["reasons"]
        await assert_judged_by(second, final, old)
        kinds = [e["kind"] for e in await events(second, check["id"])]
        assert kinds.count("gate_redefined") == 1


async def test_a_redefinition_is_announced_once_across_restarts(
    database_url: str, gates_dir: Path, clock: ManualClock
) -> None:
    bench = ProbeBench()
    bench.answers["p"] = 0.97  # fails without breaching: the check stays running
    async with running(database_url, gates_dir, clock, bench) as first:
        check = await first.start_check("portal", timeout="300s")
        await first.samples_reach(check["id"], 1)
        await redefine_by_reload(first, gates_dir)
        await first.advance(10)
        await first.samples_reach(check["id"], 2)
    async with running(database_url, gates_dir, clock, bench) as second:
        await second.advance(10)
        await second.samples_reach(check["id"], 3)
        kinds = [e["kind"] for e in await events(second, check["id"])]
        assert kinds.count("gate_redefined") == 1
        assert (await second.check(check["id"]))["state"] == "running"


async def test_a_pinned_version_that_no_longer_loads_ends_the_check_no_go(
    database_url: str, gates_dir: Path, clock: ManualClock
) -> None:
    async with running(database_url, gates_dir, clock) as first:
        old = (await first.get("/api/v1/gates/portal")).json()["version"]
        check = await first.start_check("portal")
        await first.samples_reach(check["id"], 1)

    # While the service is down the gate is redefined, and the stored text of the
    # pinned version no longer validates (as when a probe type it used was removed).
    (gates_dir / "portal.yaml").write_text(REDEFINED)
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("UPDATE gate_versions SET text = :text WHERE version = :version"),
                {"text": "criteria: 5\n", "version": old},
            )
    finally:
        await engine.dispose()

    async with running(database_url, gates_dir, clock) as second:
        final = await second.final(check["id"])
        assert final["decision"] == "no_go"
        assert final["decided_by"] == "engine"
        assert any(old in r and "cannot be loaded" in r for r in final["reasons"]), final["reasons"]


async def test_sign_offs_follow_the_pinned_version(service: Service, gates_dir: Path) -> None:
    """A redefinition that drops a sign-off or lowers its role changes nothing for a
    check pinned to the older version: that version says who must sign what."""
    old = (await service.get("/api/v1/gates/signed")).json()["version"]
    check = await service.start_check("signed")
    await service.samples_reach(check["id"], 1)
    lowered = SIGNED.replace(
        "  - {id: uat, description: UAT signed off, role: approver}\n", ""
    ).replace("role: admin", "role: approver")
    (gates_dir / "signed.yaml").write_text(lowered)
    assert (await service.post("/api/v1/admin/reload", "admin")).json()["replaced"] == ["signed"]

    path = f"/api/v1/checks/{check['id']}/signoffs"
    by_approver = await service.post(path, "approver", json={"signoff": "cso"})
    assert by_approver.status_code == 403, by_approver.text
    uat = await service.post(path, "approver", json={"signoff": "uat"})
    assert uat.status_code == 201, uat.text
    cso = await service.post(path, "admin", json={"signoff": "cso"})
    assert cso.status_code == 201, cso.text
    final = await service.final(check["id"])
    assert final["decision"] == "go"
    await assert_judged_by(service, final, old)
