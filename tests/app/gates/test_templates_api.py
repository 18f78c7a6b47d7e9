"""Criterion templates through the API and the gate directory (docs/templates.md): a
template change redefines every gate that uses it, or is refused naming the gate; a
running check stays pinned to the definition it started with, also across a restart and
after its template has changed or gone."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from app.core import problems
from app.core.clock import ManualClock
from app.gates import template_repository
from tests.app.checks.test_pinning import assert_judged_by, events, running
from tests.app.conftest import PORTAL, Service

TEMPLATE = """\
description: availability of the one constant probe
params:
  - {name: floor, default: 99%}
criterion:
  probe: p
  go: "> {{ args.floor }}"
  rollback: "< 95%"
"""
# The same template turned around: under it a value of 1 fails.
TURNED = TEMPLATE.replace('go: "> {{ args.floor }}"', 'go: "< {{ args.floor }}"')
USER = """\
interval: 10s
steady_for: 2
rollback_after: 2
timeout: 60s
probes:
  p: {type: constant, value: 1}
criteria:
  - {template: availability, name: availability}
"""
INLINE = PORTAL  # the same criterion as USER resolves to under TEMPLATE, written out


async def put(service: Service, path: str, text: str | bytes, role: str = "admin") -> Any:
    return await service.client.put(path, content=text, headers=service.headers(role))


async def template_events(service: Service, name: str) -> list[dict[str, Any]]:
    response = await service.get(f"/api/v1/templates/{name}/events")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_templates_are_created_read_listed_and_deleted_by_role(service: Service) -> None:
    assert (
        await put(service, "/api/v1/templates/availability", TEMPLATE, "approver")
    ).status_code == 403
    anonymous = await service.client.put("/api/v1/templates/availability", content=TEMPLATE)
    assert anonymous.status_code == 401
    created = await put(service, "/api/v1/templates/availability", TEMPLATE)
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == "/api/v1/templates/availability"
    body = created.json()
    assert body["source"] == "api"
    assert body["params"] == [{"name": "floor", "default": "99%"}]
    assert body["criterion"]["go"] == "> {{ args.floor }}"
    assert body["used_by"] == []

    listed = await service.get("/api/v1/templates")
    assert [t["name"] for t in listed.json()] == ["availability"]
    assert (await service.get("/api/v1/templates/availability")).json()["text"] == TEMPLATE
    assert (await service.get("/api/v1/templates/nothing")).status_code == 404
    assert (await service.client.get("/api/v1/templates")).status_code == 401

    again = await put(service, "/api/v1/templates/availability", TEMPLATE)
    assert again.status_code == 200
    viewer_delete = await service.client.delete(
        "/api/v1/templates/availability", headers=service.headers("viewer")
    )
    assert viewer_delete.status_code == 403
    deleted = await service.client.delete(
        "/api/v1/templates/availability", headers=service.headers("admin")
    )
    assert deleted.status_code == 204
    assert (await service.get("/api/v1/templates/availability")).status_code == 404
    # The audit trail outlives the template: who, when, what.
    trail = await template_events(service, "availability")
    assert [e["kind"] for e in trail] == ["created", "replaced", "deleted"]
    assert {e["actor"] for e in trail} == {"root"}
    assert trail[0]["data"]["text"] == TEMPLATE
    assert all(e["at"].endswith("Z") for e in trail)


@pytest.mark.parametrize(
    ("body", "status", "where"),
    [
        (b"\xff\xfe", 422, ["body"]),
        ("params: [\n", 422, ["body"]),
        ("[1, 2]", 422, ["body"]),
        ('{"criterion": {"probe": "p", "go": "> 1"}, "extra": 1}', 422, ["body", "extra"]),
        ("criterion: {probe: p, go: '> {{ args.nope }}'}", 422, ["body", "criterion", "go"]),
        ("criterion: {template: other, probe: p}", 422, ["body", "criterion", "template"]),
        ("x: " + "a" * 300_000, 413, ["body"]),
    ],
    ids=["not-utf8", "bad-yaml", "a-list", "unknown-key", "unknown-param", "nested", "too-large"],
)
async def test_a_bad_template_is_a_located_4xx_never_a_5xx(
    service: Service, body: str | bytes, status: int, where: list[Any]
) -> None:
    response = await put(service, "/api/v1/templates/bad", body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert where in [e["loc"] for e in response.json()["errors"]]
    assert (await service.get("/api/v1/templates/bad")).status_code == 404


async def test_a_bad_template_name_is_a_422(service: Service) -> None:
    response = await put(service, "/api/v1/templates/Bad_Name", TEMPLATE)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["path", "name"]


async def test_a_template_change_redefines_its_gates_while_a_running_check_stays_pinned(
    service: Service,
) -> None:
    assert (await put(service, "/api/v1/templates/availability", TEMPLATE)).status_code == 201
    assert (await put(service, "/api/v1/gates/user", USER)).status_code == 201
    detail = (await service.get("/api/v1/gates/user")).json()
    old = detail["version"]
    assert detail["templates"] == ["availability"] and detail["text"] == USER
    assert detail["definition"]["criteria"][0]["go"] == "> 99%"
    used_by = (await service.get("/api/v1/templates/availability")).json()["used_by"]
    assert used_by == ["user"]
    check = await service.start_check("user")
    await service.samples_reach(check["id"], 1)

    changed = await put(service, "/api/v1/templates/availability", TURNED)
    assert changed.status_code == 200, changed.text
    new = (await service.get("/api/v1/gates/user")).json()["version"]
    assert new != old
    replaced = (await template_events(service, "availability"))[-1]
    assert replaced["kind"] == "replaced"
    assert replaced["data"]["gates"] == {"user": {"from": old, "to": new}}

    await service.advance(10)
    final = await service.final(check["id"])
    assert final["decision"] == "go", final["reasons"]  # judged by the template it began with
    await assert_judged_by(service, final, old)
    redefined = [e for e in await events(service, check["id"]) if e["kind"] == "gate_redefined"]
    assert [(e["data"]["pinned"], e["data"]["current"]) for e in redefined] == [(old, new)]

    async def judged_by_new() -> bool:
        page = (await service.get("/api/v1/gates/user/samples?limit=1")).json()
        return bool(page["items"]) and page["items"][0]["gate_version"] == new

    await service.until(judged_by_new)
    latest = (await service.get("/api/v1/gates/user/samples?limit=1")).json()["items"][0]
    assert latest["criteria"][0]["outcome"] == "fail"


async def test_a_change_that_breaks_a_gate_is_refused_naming_the_gate(service: Service) -> None:
    assert (await put(service, "/api/v1/templates/availability", TEMPLATE)).status_code == 201
    assert (await put(service, "/api/v1/gates/user", USER)).status_code == 201
    before = (await service.get("/api/v1/gates/user")).json()["version"]

    broken = TEMPLATE.replace("probe: p", "probe: missing")
    refused = await put(service, "/api/v1/templates/availability", broken)
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["gates"] == ["user"]
    error = body["errors"][0]
    assert error["loc"][:3] == ["gates", "user", "criteria"]
    assert "gate 'user'" in error["msg"] and "unknown probe 'missing'" in error["msg"]
    assert (await service.get("/api/v1/gates/user")).json()["version"] == before
    assert (await service.get("/api/v1/templates/availability")).json()["text"] == TEMPLATE

    still_used = await service.client.delete(
        "/api/v1/templates/availability", headers=service.headers("admin")
    )
    assert still_used.status_code == 422
    assert "unknown template 'availability'" in still_used.json()["errors"][0]["msg"]
    assert (await service.get("/api/v1/gates/user")).json()["version"] == before
    kinds = [e["kind"] for e in await template_events(service, "availability")]
    assert kinds == ["created"]  # refused changes leave no event


async def test_an_api_gate_with_an_unknown_template_is_a_located_422(service: Service) -> None:
    response = await put(
        service, "/api/v1/gates/user", USER.replace("availability,", "availabilty,")
    )
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert error["loc"] == ["body", "criteria", 0, "template"]
    assert "unknown template 'availabilty'" in error["msg"]


async def test_a_restart_judges_a_pinned_check_whose_template_changed_and_went(
    database_url: str, gates_dir: Path, clock: ManualClock
) -> None:
    async with running(database_url, gates_dir, clock) as service:
        assert (await put(service, "/api/v1/templates/availability", TEMPLATE)).status_code == 201
        assert (await put(service, "/api/v1/gates/user", USER)).status_code == 201
        old = (await service.get("/api/v1/gates/user")).json()["version"]
        check = await service.start_check("user")
        await service.samples_reach(check["id"], 1)
        assert (await put(service, "/api/v1/templates/availability", TURNED)).status_code == 200
        # The gate stops using the template, which then goes altogether.
        assert (await put(service, "/api/v1/gates/user", INLINE)).status_code == 200
        gone = await service.client.delete(
            "/api/v1/templates/availability", headers=service.headers("admin")
        )
        assert gone.status_code == 204

    async with running(database_url, gates_dir, clock) as service:
        assert (await service.get("/api/v1/templates/availability")).status_code == 404
        await service.advance(10)
        final = await service.final(check["id"])
        assert final["decision"] == "go", final["reasons"]
        await assert_judged_by(service, final, old)


async def test_stored_templates_load_before_the_gates_that_use_them(
    database_url: str, gates_dir: Path, clock: ManualClock
) -> None:
    async with running(database_url, gates_dir, clock) as service:
        assert (await put(service, "/api/v1/templates/availability", TEMPLATE)).status_code == 201
        assert (await put(service, "/api/v1/gates/user", USER)).status_code == 201
        version = (await service.get("/api/v1/gates/user")).json()["version"]
    async with running(database_url, gates_dir, clock) as service:
        gate = await service.get("/api/v1/gates/user")
        assert gate.status_code == 200
        assert gate.json()["version"] == version
        assert (await service.get("/api/v1/templates/availability")).json()["used_by"] == ["user"]


async def test_a_template_file_change_reloads_its_gates_or_is_reported(
    database_url: str, gates_dir: Path, clock: ManualClock
) -> None:
    (gates_dir / "templates").mkdir()
    (gates_dir / "templates" / "availability.yaml").write_text(TEMPLATE)
    (gates_dir / "user.yaml").write_text(USER)
    async with running(database_url, gates_dir, clock) as service:
        entry = (await service.get("/api/v1/templates/availability")).json()
        assert entry["source"] == "file" and entry["used_by"] == ["user"]
        assert (await put(service, "/api/v1/templates/availability", TEMPLATE)).status_code == 409
        old = (await service.get("/api/v1/gates/user")).json()["version"]
        check = await service.start_check("user")
        await service.samples_reach(check["id"], 1)

        (gates_dir / "templates" / "availability.yaml").write_text(TURNED)
        reloaded = await service.post("/api/v1/admin/reload", "admin")
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json()["replaced"] == ["user"]
        new = (await service.get("/api/v1/gates/user")).json()["version"]
        assert new != old

        (gates_dir / "templates" / "availability.yaml").write_text(
            TEMPLATE.replace("probe: p", "probe: missing")
        )
        refused = await service.post("/api/v1/admin/reload", "admin")
        assert refused.status_code == 422
        problems = [e["msg"] for e in refused.json()["errors"]]
        assert any("availability.yaml" in p and "user.yaml" in p for p in problems), problems
        assert (await service.get("/api/v1/gates/user")).json()["version"] == new

        await service.advance(10)
        final = await service.final(check["id"])
        assert final["decision"] == "go", final["reasons"]
        await assert_judged_by(service, final, old)


async def test_a_failed_write_puts_the_template_and_its_gates_back(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await put(service, "/api/v1/templates/availability", TEMPLATE)).status_code == 201
    assert (await put(service, "/api/v1/gates/user", USER)).status_code == 201
    before = (await service.get("/api/v1/gates/user")).json()["version"]

    async def unavailable(*_args: Any, **_kwargs: Any) -> None:
        raise OSError("the database went away")

    monkeypatch.setattr(template_repository, "add_template_event", unavailable)
    # The unexpected error is logged with its traceback, slowly; the answer is what counts.
    monkeypatch.setattr(problems, "log", SimpleNamespace(error=lambda *a, **k: None))
    transport = httpx.ASGITransport(app=service.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        failed = await client.put(
            "/api/v1/templates/availability", content=TURNED, headers=service.headers("admin")
        )
    assert failed.status_code == 500  # the write failed: nothing changed
    assert (await service.get("/api/v1/gates/user")).json()["version"] == before
    assert (await service.get("/api/v1/templates/availability")).json()["text"] == TEMPLATE


async def test_a_template_with_a_fixed_bad_condition_is_refused_without_users(
    service: Service,
) -> None:
    response = await put(service, "/api/v1/templates/odd", "criterion: {probe: p, go: '<< 1'}\n")
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["loc"] == ["body", "criterion", "go"]
    assert error["msg"].startswith("line 1, column 27: bad condition '<< 1'")
