"""Gates, auth, health and bad input through HTTP (docs/api.md): every error is problem+json,
never a 500, and a rejected request changes nothing stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.db import CheckRow, EventRow, GateRow, SampleRow, SignoffRow
from app.core.settings import SettingsError, load_settings, parse_tokens
from tests.app.conftest import TOKENS, Service

API_GATE = """\
interval: 30s
probes:
  r: {type: constant, value: 1}
criteria:
  - name: ratio
    probe: r
    go: "> 0.5"
"""


async def table_counts(url: str) -> dict[str, int]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            counts = {}
            for table in (GateRow, CheckRow, SampleRow, SignoffRow, EventRow):
                query = select(func.count()).select_from(table)
                if table is SampleRow:
                    query = query.where(SampleRow.check_id.is_not(None))
                counts[table.__tablename__] = int((await connection.execute(query)).scalar_one())
            return counts
    finally:
        await engine.dispose()


async def continuous_before(url: str, instant: datetime) -> int:
    """How many continuous samples were evaluated before ``instant``."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            query = (
                select(func.count())
                .select_from(SampleRow)
                .where(SampleRow.check_id.is_(None), SampleRow.evaluated_at < instant)
            )
            return int((await connection.execute(query)).scalar_one())
    finally:
        await engine.dispose()


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    return body


async def test_tokens_and_roles(service: Service) -> None:
    client = service.client
    missing = await client.get("/api/v1/gates")
    assert_problem(missing, 401)
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = await client.get("/api/v1/gates", headers={"Authorization": "Bearer nope-nope-nope"})
    assert_problem(wrong, 401)
    assert "invalid_token" in wrong.headers["www-authenticate"]
    basic = await client.get("/api/v1/gates", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_problem(basic, 401)
    viewer_starts = await service.post(
        "/api/v1/gates/portal/checks", "viewer", json={"version": "1"}
    )
    body = assert_problem(viewer_starts, 403)
    assert "pipeline" in body["detail"]
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await client.get(path)).status_code == 200, path


async def test_public_health_ready_and_metrics(service: Service) -> None:
    assert (await service.client.get("/healthz")).json() == {"status": "ok"}
    ready = (await service.client.get("/readyz")).json()
    assert ready["database"] is True
    assert ready["gates"] == 2
    await service.start_check()
    metrics = await service.client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'gonogo_checks_running{gate="portal"} 1.0' in metrics.text


async def test_gates_list_detail_and_current_decision(service: Service) -> None:
    listed = (await service.get("/api/v1/gates")).json()
    assert [g["name"] for g in listed] == ["portal", "signed"]
    assert listed[0]["source"] == "file"
    detail = (await service.get("/api/v1/gates/portal")).json()
    assert detail["definition"]["criteria"][0]["go"] == "> 99%"
    assert detail["version"] == listed[0]["version"]

    before = (await service.get("/api/v1/gates/portal/decision")).json()
    assert before["gate"] == "portal"
    assert before["decision"] in ("no_go", "go")
    for _ in range(3):
        await service.advance(10)

    async def go() -> bool:
        body = (await service.get("/api/v1/gates/portal/decision")).json()
        return bool(body["decision"] == "go")

    await service.until(go)
    body = (await service.get("/api/v1/gates/portal/decision")).json()
    assert set(body) == {
        "gate",
        "decision",
        "evaluated_at",
        "expires_at",
        "gate_version",
        "reasons",
        "dry_run_reasons",
        "steady",
        "criteria",
    }
    assert body["criteria"][0]["outcome"] == "pass"
    detail = (await service.get("/api/v1/gates/portal")).json()
    assert body["gate_version"] == detail["version"]
    assert_problem(await service.get("/api/v1/gates/nope/decision"), 404)
    assert_problem(await service.get("/api/v1/gates/nope"), 404)


async def test_a_gate_before_its_first_sample_is_no_go(service: Service) -> None:
    created = await service.client.put(
        "/api/v1/gates/fresh", content=API_GATE, headers=service.headers("admin")
    )
    assert created.status_code == 201
    service.app.state.scheduler._published.pop("fresh", None)  # as if not sampled yet
    body = (await service.get("/api/v1/gates/fresh/decision")).json()
    assert body["decision"] == "no_go"
    assert body["reasons"] == ["no sample yet"]


async def test_api_gates_are_created_replaced_and_deleted_by_admins(service: Service) -> None:
    admin = service.headers("admin")
    path = "/api/v1/gates/api-gate"
    viewer_put = await service.client.put(path, content=API_GATE, headers=service.headers("viewer"))
    assert_problem(viewer_put, 403)

    created = await service.client.put(path, content=API_GATE, headers=admin)
    assert created.status_code == 201
    assert created.json()["source"] == "api"
    replaced = await service.client.put(
        path, content=API_GATE.replace("> 0.5", "> 0.6"), headers=admin
    )
    assert replaced.status_code == 200
    assert replaced.json()["version"] != created.json()["version"]
    as_json = await service.client.put(
        path,
        json={
            "probes": {"r": {"type": "constant", "value": 1}},
            "criteria": [{"name": "ratio", "probe": "r", "go": "> 0.7"}],
        },
        headers=admin,
    )
    assert as_json.status_code == 200
    assert as_json.json()["definition"]["criteria"][0]["go"] == "> 0.7"
    assert (await table_counts(service.database_url))["gates"] == 1

    file_gate = await service.client.put("/api/v1/gates/portal", content=API_GATE, headers=admin)
    assert_problem(file_gate, 409)
    assert_problem(await service.client.delete("/api/v1/gates/portal", headers=admin), 409)

    deleted = await service.client.delete(path, headers=admin)
    assert deleted.status_code == 204
    assert_problem(await service.get(path), 404)
    assert_problem(await service.client.delete(path, headers=admin), 404)
    assert (await table_counts(service.database_url))["gates"] == 0


async def test_invalid_gate_bodies_are_422_naming_line_and_column(service: Service) -> None:
    admin = service.headers("admin")
    before = await table_counts(service.database_url)
    broken = "interval: 30s\ncriteria:\n  - name: x\n    probe: nope\n    go: '>> 5'\n"
    response = await service.client.put("/api/v1/gates/bad", content=broken, headers=admin)
    body = assert_problem(response, 422)
    assert body["errors"]
    assert all(e["loc"][0] == "body" for e in body["errors"])
    assert any(e["line"] == 5 for e in body["errors"]), body["errors"]
    assert any("line 5, column" in e["msg"] for e in body["errors"])

    syntax = await service.client.put("/api/v1/gates/bad", content="a: [1, 2\n", headers=admin)
    assert assert_problem(syntax, 422)["errors"][0]["line"] is not None
    binary = await service.client.put("/api/v1/gates/bad", content=b"\xff\xfe", headers=admin)
    assert_problem(binary, 422)
    bad_name = await service.client.put("/api/v1/gates/Bad_Name", content=API_GATE, headers=admin)
    assert_problem(bad_name, 422)
    assert await table_counts(service.database_url) == before
    assert_problem(await service.get("/api/v1/gates/bad"), 404)


async def test_admin_reload(service: Service, gates_dir: Any) -> None:
    (gates_dir / "extra.yaml").write_text(API_GATE)
    reload = await service.post("/api/v1/admin/reload", "admin")
    assert reload.status_code == 200
    assert reload.json()["added"] == ["extra"]
    (gates_dir / "extra.yaml").write_text("criteria: nope\n")
    refused = await service.post("/api/v1/admin/reload", "admin")
    assert_problem(refused, 422)
    assert (await service.get("/api/v1/gates/extra")).status_code == 200  # still serving
    assert_problem(await service.post("/api/v1/admin/reload", "approver"), 403)


async def test_bad_input_is_a_clear_4xx_and_changes_nothing(service: Service) -> None:
    check = await service.start_check()
    # The check's first sample is written by its own loop: let it land, and every loop
    # fall asleep on the clock, before counting rows.
    await service.samples_reach(check["id"], 1)
    await service.quiet()
    before = await table_counts(service.database_url)
    checks = "/api/v1/gates/portal/checks"
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        (
            "POST",
            checks,
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            422,
        ),
        ("POST", checks, {"json": {"version": 12}}, 422),
        ("POST", checks, {"json": {}}, 422),
        ("POST", checks, {"json": {"version": "1", "vars": {"a": 1}}}, 422),
        ("POST", checks, {"json": {"version": "1", "timeout": "soon"}}, 422),
        ("POST", checks, {"json": {"version": "1", "timeout": "0s"}}, 422),
        ("POST", checks, {"json": {"version": "1", "timeout": 1e300}}, 422),
        ("POST", checks, {"json": {"version": "1", "timeout": "25h"}}, 422),
        ("POST", checks, {"json": {"version": "1", "surprise": True}}, 422),
        ("POST", checks, {"json": ["version"]}, 422),
        ("POST", "/api/v1/gates/nope/checks", {"json": {"version": "1"}}, 404),
        ("POST", checks, {"content": b"x" * (1024 * 1024 + 1)}, 413),
        ("POST", f"/api/v1/checks/{check['id']}/signoffs", {"json": {"signoff": 5}}, 422),
        (
            "POST",
            f"/api/v1/checks/{check['id']}/decision",
            {"json": {"decision": "maybe", "reason": "x"}},
            422,
        ),
        ("POST", "/api/v1/checks/unknown/cancel", {}, 404),
        ("GET", "/api/v1/checks/unknown", {}, 404),
        ("GET", "/api/v1/checks/unknown/events", {}, 404),
        ("GET", "/api/v1/checks/" + "x" * 500, {}, 404),
        ("GET", "/api/v1/gates/portal/samples?limit=5000", {}, 422),
        ("GET", "/api/v1/gates/portal/samples?since=yesterday", {}, 422),
        ("GET", "/api/v1/gates/portal/samples?since=2026-01-01T00:00:00", {}, 422),
        ("GET", "/api/v1/gates/portal/samples?cursor=abc", {}, 422),
        ("GET", "/api/v1/nothing-here", {}, 404),
        ("DELETE", "/api/v1/checks", {}, 405),
    ]
    for method, path, kwargs, status in cases:
        headers = {**service.headers("admin"), **kwargs.pop("headers", {})}
        response = await service.client.request(method, path, headers=headers, **kwargs)
        body = assert_problem(response, status)
        if status == 422 and "errors" in body:
            assert all({"loc", "msg"} <= e.keys() for e in body["errors"]), body
    assert await table_counts(service.database_url) == before


async def test_oversized_chunked_bodies_are_413(service: Service) -> None:
    async def chunks() -> Any:
        for _ in range(20):
            yield b"y" * 65536

    response = await service.client.post(
        "/api/v1/gates/portal/checks", content=chunks(), headers=service.headers("pipeline")
    )
    assert_problem(response, 413)


async def test_gate_samples_are_paginated_newest_first(service: Service) -> None:
    for _ in range(5):
        await service.advance(10)

    async def enough() -> bool:
        page = (await service.get("/api/v1/gates/portal/samples?limit=100")).json()
        return len(page["items"]) >= 4

    await service.until(enough)
    first = (await service.get("/api/v1/gates/portal/samples?limit=2")).json()
    assert len(first["items"]) == 2
    times = [s["evaluated_at"] for s in first["items"]]
    assert times == sorted(times, reverse=True)
    second = (
        await service.get(f"/api/v1/gates/portal/samples?limit=2&cursor={first['next_cursor']}")
    ).json()
    assert second["items"][0]["evaluated_at"] < times[-1]
    since = (await service.get("/api/v1/gates/portal/samples", params={"since": times[1]})).json()
    newer = [s["evaluated_at"] for s in since["items"]]
    # Only samples after ``since``: the newest read above, and any stored since then.
    assert times[0] in newer and all(t > times[1] for t in newer), (times, newer)


async def test_retention_prunes_only_continuous_samples(service: Service) -> None:
    check = await service.start_check()
    await service.samples_reach(check["id"], 1)
    await service.advance(10)
    await service.final(check["id"])
    before = await table_counts(service.database_url)
    start = service.clock.now()
    assert await continuous_before(service.database_url, start) >= 1
    await service.advance(8 * 24 * 3600)  # past the 7 day retention
    # The hourly sweep may have pruned them while the clock moved; prune once more. Only
    # the samples from before the jump are sure to be old (loops keep sampling meanwhile).
    await service.app.state.samples.prune()
    assert await continuous_before(service.database_url, start) == 0
    assert (await table_counts(service.database_url))["samples"] == before["samples"]
    assert len((await service.check(check["id"]))["deciding_samples"]) == 2


def test_settings_fail_fast_naming_the_variable_without_echoing_secrets() -> None:
    with pytest.raises(SettingsError) as bad_role:
        load_settings(tokens="ci:boss:very-secret-value")
    assert "GONOGO_TOKENS" in str(bad_role.value)
    assert "very-secret-value" not in str(bad_role.value)
    with pytest.raises(SettingsError, match="GONOGO_SAMPLE_RETENTION"):
        load_settings(sample_retention="forever")
    with pytest.raises(SettingsError, match="GONOGO_PORT"):
        load_settings(port=70000)
    with pytest.raises(SettingsError, match="GONOGO_DATABASE_URL"):
        load_settings(database_url="mysql://x")
    placeholders = "ci:pipeline:CHANGE-ME,admin:admin:CHANGE-ME"
    with pytest.raises(SettingsError, match="shorter than 16") as short:
        load_settings(tokens=placeholders)
    assert "GONOGO_TOKENS" in str(short.value)
    assert "CHANGE-ME" not in str(short.value)
    shared = "ci:pipeline:one-long-shared-secret,admin:admin:one-long-shared-secret"
    with pytest.raises(SettingsError, match="same secret") as same:
        load_settings(tokens=shared)
    assert "one-long-shared-secret" not in str(same.value)
    tokens = parse_tokens("a:viewer:secret:with:colons, b:admin:another-long-secret")
    assert [(t.name, t.role) for t in tokens] == [("a", "viewer"), ("b", "admin")]
    assert tokens[0].secret.get_secret_value() == "secret:with:colons"
    assert "secret:with" not in repr(tokens)


def test_open_access_is_refused_off_loopback() -> None:
    from app.main import create_app

    with pytest.raises(SettingsError, match="GONOGO_TOKENS"):
        create_app(load_settings(host="0.0.0.0", tokens=""))
    create_app(load_settings(host="127.0.0.1", tokens=""))
    create_app(load_settings(host="0.0.0.0", tokens=f"a:admin:{TOKENS['admin']}"))
