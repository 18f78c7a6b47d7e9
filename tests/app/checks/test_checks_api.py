"""Checks through HTTP (docs/decisions.md, docs/api.md): go, no_go by timeout, rollback,
manual decisions, cancellation, sign-offs, idempotency, long-polling, resuming after a restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from app.core.clock import ManualClock
from tests.app.conftest import TOKEN_NAMES, Service, open_service
from tests.app.fakes import ProbeBench


async def test_a_check_goes_after_steady_samples_and_then_never_changes(service: Service) -> None:
    response = await service.post(
        "/api/v1/gates/portal/checks", "pipeline", json={"version": "2.0", "environment": "prod"}
    )
    assert response.status_code == 201
    check = response.json()
    assert response.headers["location"] == f"/api/v1/checks/{check['id']}"
    assert check["state"] == "running"
    assert check["decision"] == "no_go"
    assert check["reasons"] == ["no sample yet"]
    assert (check["version"], check["environment"], check["stage"]) == ("2.0", "prod", None)

    await service.samples_reach(check["id"], 1)
    running = await service.check(check["id"])
    assert running["state"] == "running"
    assert running["steady"] == {"passes": 1, "needed": 2}
    assert "steady 1/2" in running["reasons"]

    await service.advance(10)
    final = await service.final(check["id"])
    assert final["state"] == "final"
    assert final["decision"] == "go"
    assert final["decided_by"] == "engine"
    assert final["decided_at"] is not None
    assert len(final["deciding_samples"]) == 2
    assert final["criteria"][0]["name"] == "availability"
    assert final["criteria"][0]["outcome"] == "pass"

    events = (await service.get(f"/api/v1/checks/{check['id']}/events")).json()["items"]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "created"
    assert kinds.count("sample") == 2
    assert kinds[-1] == "final"
    assert events[-1]["data"]["deciding_samples"] == final["deciding_samples"]

    for path, role, body in [
        ("signoffs", "approver", {"signoff": "uat"}),
        ("decision", "admin", {"decision": "rollback", "reason": "too late"}),
        ("cancel", "pipeline", {}),
    ]:
        late = await service.post(f"/api/v1/checks/{check['id']}/{path}", role, json=body)
        assert late.status_code in (409, 422), (path, late.text)
    again = await service.post(
        f"/api/v1/checks/{check['id']}/decision", "admin", json={"decision": "no_go", "reason": "x"}
    )
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert (await service.check(check["id"]))["decision"] == "go"


async def test_a_check_that_never_steadies_ends_no_go_at_its_deadline(service: Service) -> None:
    service.probe("p").answer = 0.97  # fails go (> 99%) without breaching rollback (< 95%)
    check = await service.start_check(timeout="25s")
    assert check["deadline"] is not None
    await service.samples_reach(check["id"], 1)
    for _ in range(3):
        await service.advance(10)
    final = await service.final(check["id"])
    assert final["state"] == "final"
    assert final["decision"] == "no_go"
    assert any(r.startswith("availability: 97 % <= 99 %") for r in final["reasons"])
    assert any("timed out after 25s" in r for r in final["reasons"])
    assert final["decided_by"] == "engine"


async def test_a_check_rolls_back_after_consecutive_breaches(service: Service) -> None:
    service.probe("p").answer = 0.5
    check = await service.start_check()
    await service.samples_reach(check["id"], 1)
    assert (await service.check(check["id"]))["state"] == "running"
    await service.advance(10)
    final = await service.final(check["id"])
    assert final["decision"] == "rollback"
    assert "breach 2/2" in final["reasons"][0]
    assert len(final["deciding_samples"]) == 2


async def test_manual_decisions_need_the_right_role_and_a_reason(service: Service) -> None:
    service.probe("p").answer = 0.97
    check = await service.start_check()
    path = f"/api/v1/checks/{check['id']}/decision"

    no_reason = await service.post(path, "approver", json={"decision": "no_go", "reason": "  "})
    assert no_reason.status_code == 422
    assert no_reason.json()["errors"][0]["loc"] == ["body", "reason"]
    go_by_approver = await service.post(path, "approver", json={"decision": "go", "reason": "ok"})
    assert go_by_approver.status_code == 403
    by_pipeline = await service.post(path, "pipeline", json={"decision": "no_go", "reason": "x"})
    assert by_pipeline.status_code == 403
    assert (await service.check(check["id"]))["state"] == "running"

    decided = await service.post(path, "admin", json={"decision": "go", "reason": "CAB approved"})
    assert decided.status_code == 200
    body = decided.json()
    assert (body["state"], body["decision"], body["decided_by"]) == ("final", "go", "root")
    assert body["reasons"] == ["manual go by root: CAB approved"]
    events = (await service.get(f"/api/v1/checks/{check['id']}/events")).json()["items"]
    override = next(e for e in events if e["kind"] == "override")
    assert override["actor"] == "root"
    assert override["data"]["reason"] == "CAB approved"

    # The runner stops: more time brings no more samples and no change.
    count = await service.sample_count(check["id"])
    await service.advance(30)
    assert await service.sample_count(check["id"]) == count
    assert (await service.check(check["id"]))["decision"] == "go"


async def test_an_approver_may_roll_back_by_hand(service: Service) -> None:
    check = await service.start_check()
    decided = await service.post(
        f"/api/v1/checks/{check['id']}/decision",
        "approver",
        json={"decision": "rollback", "reason": "patients report errors"},
    )
    assert decided.status_code == 200
    assert decided.json()["decision"] == "rollback"
    assert decided.json()["decided_by"] == TOKEN_NAMES["approver"]


async def test_cancel_stops_a_check(service: Service) -> None:
    check = await service.start_check()
    cancelled = await service.post(
        f"/api/v1/checks/{check['id']}/cancel", "pipeline", json={"reason": "superseded"}
    )
    assert cancelled.status_code == 200
    body = cancelled.json()
    assert body["state"] == "cancelled"
    assert body["decision"] is None
    assert body["reasons"] == ["cancelled by ci: superseded"]
    again = await service.post(f"/api/v1/checks/{check['id']}/cancel", "pipeline")
    assert again.status_code == 409
    viewer = await service.post(f"/api/v1/checks/{check['id']}/cancel", "viewer")
    assert viewer.status_code == 403


async def test_signoffs_gate_a_steady_check_and_the_last_one_makes_it_go_at_once(
    service: Service,
) -> None:
    check = await service.start_check("signed")
    await service.samples_reach(check["id"], 1)
    running = await service.check(check["id"])
    assert running["state"] == "running"
    assert "missing sign-off: uat" in running["reasons"]
    assert "missing sign-off: cso" in running["reasons"]
    path = f"/api/v1/checks/{check['id']}/signoffs"

    unknown = await service.post(path, "approver", json={"signoff": "qa"})
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["loc"] == ["body", "signoff"]
    too_low = await service.post(path, "approver", json={"signoff": "cso"})
    assert too_low.status_code == 403
    viewer = await service.post(path, "viewer", json={"signoff": "uat"})
    assert viewer.status_code == 403

    signed = await service.post(path, "approver", json={"signoff": "uat", "comment": "UAT #12"})
    assert signed.status_code == 201
    assert signed.json()["signoffs"][0]["signed_by"] == "alice"
    assert signed.json()["signoffs"][0]["comment"] == "UAT #12"
    twice = await service.post(path, "admin", json={"signoff": "uat"})
    assert twice.status_code == 409

    await service.until(lambda: _reasons_lack(service, check["id"], "missing sign-off: uat"))
    assert (await service.check(check["id"]))["state"] == "running"

    last = await service.post(path, "admin", json={"signoff": "cso"})
    assert last.status_code == 201
    # No clock movement: the sign-off itself re-decides with the samples already taken.
    final = await service.final(check["id"])
    assert (final["state"], final["decision"]) == ("final", "go")
    assert {s["signoff"]: s["signed_by"] for s in final["signoffs"]} == {
        "uat": "alice",
        "cso": "root",
    }
    assert await service.sample_count(check["id"]) == 1


async def _reasons_lack(service: Service, check_id: str, reason: str) -> bool:
    return reason not in (await service.check(check_id))["reasons"]


async def test_idempotency_key_returns_the_same_check(service: Service) -> None:
    body = {"version": "3.1", "stage": "canary"}
    key = {"Idempotency-Key": "deploy-77"}
    first = await service.post("/api/v1/gates/portal/checks", "pipeline", json=body, headers=key)
    retry = await service.post("/api/v1/gates/portal/checks", "pipeline", json=body, headers=key)
    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json()["id"] == first.json()["id"]
    assert retry.headers["location"] == first.headers["location"]

    other = await service.post(
        "/api/v1/gates/portal/checks", "pipeline", json={"version": "3.2"}, headers=key
    )
    assert other.status_code == 409
    assert first.json()["id"] in other.json()["detail"]

    elsewhere = await service.post(
        "/api/v1/gates/signed/checks", "pipeline", json=body, headers=key
    )
    assert elsewhere.status_code == 201
    assert elsewhere.json()["id"] != first.json()["id"]

    too_long = await service.post(
        "/api/v1/gates/portal/checks",
        "pipeline",
        json=body,
        headers={"Idempotency-Key": "k" * 256},
    )
    assert too_long.status_code == 422
    for planted in ("gitlab:7:42", "flagger:prod/web:abc123", "github:0f1e"):
        door_key = await service.post(
            "/api/v1/gates/portal/checks",
            "pipeline",
            json=body,
            headers={"Idempotency-Key": planted},
        )
        assert door_key.status_code == 422, door_key.text  # a door's key: not the caller's
        assert "front doors" in door_key.text
    listed = (await service.get("/api/v1/checks?gate=portal")).json()["items"]
    assert [c["id"] for c in listed] == [first.json()["id"]]


async def test_long_poll_wakes_as_soon_as_the_check_is_final(service: Service) -> None:
    check = await service.start_check()
    await service.samples_reach(check["id"], 1)
    started = time.monotonic()
    poll = asyncio.create_task(service.get(f"/api/v1/checks/{check['id']}", params={"wait": 60}))
    await asyncio.sleep(0.05)
    assert not poll.done()
    before = service.clock.now()
    await service.advance(10)  # the second steady sample: final go
    response = await asyncio.wait_for(poll, timeout=10)
    assert response.json()["state"] == "final"
    assert response.json()["decision"] == "go"
    assert (service.clock.now() - before).total_seconds() == 10  # not the 60 s wait
    assert time.monotonic() - started < 10


async def test_long_poll_returns_the_running_check_when_time_is_up(service: Service) -> None:
    service.probe("p").answer = 0.97
    check = await service.start_check()
    await service.samples_reach(check["id"], 1)
    poll = asyncio.create_task(service.get(f"/api/v1/checks/{check['id']}", params={"wait": 5}))
    await asyncio.sleep(0.05)
    assert not poll.done()
    await service.advance(5)
    response = await asyncio.wait_for(poll, timeout=10)
    assert response.status_code == 200
    assert response.json()["state"] == "running"


async def test_bad_wait_values_are_422(service: Service) -> None:
    check = await service.start_check()
    for wait in ("-1", "61", "soon", "nan"):
        response = await service.get(f"/api/v1/checks/{check['id']}", params={"wait": wait})
        assert response.status_code == 422, wait
        assert response.json()["errors"][0]["loc"] == ["query", "wait"]


async def test_checks_list_filters_by_gate_and_state(service: Service) -> None:
    first = await service.start_check()
    second = await service.start_check("signed")
    await service.post(f"/api/v1/checks/{first['id']}/cancel", "pipeline")
    cancelled = (await service.get("/api/v1/checks?state=cancelled")).json()["items"]
    assert [c["id"] for c in cancelled] == [first["id"]]
    running = (await service.get("/api/v1/checks?state=running&gate=signed")).json()["items"]
    assert [c["id"] for c in running] == [second["id"]]
    assert (await service.get("/api/v1/checks?state=done")).status_code == 422
    assert (await service.get("/api/v1/checks?limit=0")).status_code == 422


async def test_a_restarted_service_resumes_running_checks(
    database_url: str, gates_dir: Path, clock: ManualClock
) -> None:
    """Deadline, sign-offs and sample history survive a restart."""
    bench = ProbeBench()
    app, lifespan = await open_service(database_url, gates_dir, clock, bench)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        first = Service(app, client, clock, bench, database_url)
        check = await first.start_check("signed")
        await first.samples_reach(check["id"], 1)
        signed = await first.post(
            f"/api/v1/checks/{check['id']}/signoffs", "approver", json={"signoff": "uat"}
        )
        assert signed.status_code == 201
    await lifespan.__aexit__(None, None, None)

    await clock.advance(10)
    bench = ProbeBench()
    app, lifespan = await open_service(database_url, gates_dir, clock, bench)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            second = Service(app, client, clock, bench, database_url)
            resumed = await second.check(check["id"])
            assert resumed["state"] == "running"
            assert resumed["deadline"] == check["deadline"]
            assert [s["signoff"] for s in resumed["signoffs"]] == ["uat"]
            assert app.state.checks.running_checks()[0]["missing_signoffs"] == ["cso"]
            await second.samples_reach(check["id"], 2)  # sampling resumed
            last = await second.post(
                f"/api/v1/checks/{check['id']}/signoffs", "admin", json={"signoff": "cso"}
            )
            assert last.status_code == 201
            final = await second.final(check["id"])
            assert final["decision"] == "go"
    finally:
        await lifespan.__aexit__(None, None, None)


async def test_a_resumed_check_keeps_its_deadline(
    database_url: str, gates_dir: Path, clock: ManualClock
) -> None:
    bench = ProbeBench()
    bench.answers["p"] = 0.97
    app, lifespan = await open_service(database_url, gates_dir, clock, bench)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        check = await Service(app, client, clock, bench, database_url).start_check(timeout="30s")
    await lifespan.__aexit__(None, None, None)

    await clock.advance(45)  # the deadline passed while the service was down
    app, lifespan = await open_service(database_url, gates_dir, clock, bench)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            final = await Service(app, client, clock, bench, database_url).final(check["id"])
            assert final["decision"] == "no_go"
            assert any("timed out after 30s" in r for r in final["reasons"])
    finally:
        await lifespan.__aexit__(None, None, None)
