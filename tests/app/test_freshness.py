"""Freshness on every read path: a stalled loop's last ``go`` is served as a stale ``no_go``.

The whole service runs on a ``ManualClock``. A gate reaches ``go``, then its probe hangs
(a wedged probe task: the loop stalls without publishing anything), and the clock moves
past the decision's ``expires_at``. Every read path must then answer ``no_go`` with the
reason "stale since ..." (docs/decisions.md, "Freshness and expiry").
"""

from __future__ import annotations

import html as html_lib
import json
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.gates.service import gate_decision_json
from app.observability import metrics
from probes.timefmt import iso
from tests.app.conftest import Service

# PORTAL in conftest: interval 10s, steady_for 2, so the bound is max(30s, 10s) = 30s.
BOUND = timedelta(seconds=30)

Read = Callable[[Service], Awaitable[tuple[str, list[str]]]]


async def _route(service: Service) -> tuple[str, list[str]]:
    state = service.app.state
    body = json.loads(gate_decision_json(state.catalog, state.scheduler, "portal"))
    return body["decision"], body["reasons"]


async def _read_lane(service: Service) -> tuple[str, list[str]]:
    body = (await service.get("/api/v1/gates/portal/decision")).json()
    return body["decision"], body["reasons"]


async def _gate_list(service: Service) -> tuple[str, list[str]]:
    items = (await service.get("/api/v1/gates")).json()
    body = next(g for g in items if g["name"] == "portal")["decision"]
    return body["decision"], body["reasons"]


async def _gate_detail(service: Service) -> tuple[str, list[str]]:
    body = (await service.get("/api/v1/gates/portal")).json()["decision"]
    return body["decision"], body["reasons"]


async def _status_json(service: Service) -> tuple[str, list[str]]:
    items = (await service.client.get("/status.json")).json()["gates"]
    gate = next(g for g in items if g["name"] == "portal")
    return gate["decision"], gate["reasons"]


async def _status_page(service: Service) -> tuple[str, list[str]]:
    html = (await service.client.get("/")).text
    article = re.search(
        r'<article class="gate decision-(?P<decision>[a-z_]+)" data-gate="portal".*?</article>',
        html,
        re.S,
    )
    assert article is not None
    reasons = [html_lib.unescape(r) for r in re.findall(r"<li>(.*?)</li>", article[0])]
    return article["decision"], reasons


async def _metrics(service: Service) -> tuple[str, list[str]]:
    text = (await service.client.get("/metrics")).text
    current = {
        sample.labels["decision"]
        for family in text_string_to_metric_families(text)
        if family.name == "gonogo_gate_decision"
        for sample in family.samples
        if sample.labels["gate"] == "portal" and sample.value == 1
    }
    assert len(current) == 1
    decision = current.pop()
    # /metrics carries no reasons; a stale no_go is recognised by its decision alone.
    return decision, ["stale since (metrics)"] if decision == "no_go" else []


READ_PATHS: dict[str, Read] = {
    "decision-route": _route,
    "read-lane": _read_lane,
    "gate-list": _gate_list,
    "gate-detail": _gate_detail,
    "status-json": _status_json,
    "status-page": _status_page,
    "metrics": _metrics,
}


async def _go_then_stall(service: Service) -> datetime:
    """Bring ``portal`` to go, then hang its probe; returns the last evaluation's instant."""
    for _ in range(3):
        await service.advance(10)

    async def go() -> bool:
        return (await _read_lane(service))[0] == "go"

    await service.until(go)
    await service.quiet()  # every loop asleep: the last sample is stored
    evaluated = (await service.get("/api/v1/gates/portal/decision")).json()["evaluated_at"]
    service.probe("p").hang()
    return datetime.fromisoformat(evaluated)


@pytest.mark.parametrize("path", list(READ_PATHS))
async def test_a_stalled_gates_last_go_is_served_as_stale_no_go_on_every_read_path(
    service: Service, path: str
) -> None:
    read = READ_PATHS[path]
    evaluated = await _go_then_stall(service)
    assert (await read(service))[0] == "go"

    await service.clock.advance(10)  # the next tick starts a sample that hangs
    assert (await read(service))[0] == "go"  # still within the bound
    await service.clock.advance(25)  # now past evaluated_at + 30s

    decision, reasons = await read(service)
    assert decision == "no_go", (path, reasons)
    assert reasons and reasons[0].startswith("stale since"), (path, reasons)
    if path != "metrics":
        expires = iso(evaluated + BOUND)
        assert reasons[0] == (
            f"stale since {expires}: last evaluated {iso(evaluated)}, expected every 10s"
        )
    service.probe("p").release()


async def test_the_decision_body_carries_expires_at(service: Service) -> None:
    evaluated = await _go_then_stall(service)
    body: dict[str, Any] = (await service.get("/api/v1/gates/portal/decision")).json()
    assert body["expires_at"] == iso(evaluated + BOUND)
    stored = (await service.get("/api/v1/gates/portal/samples")).json()["items"]
    assert stored and all(
        s["expires_at"] == iso(datetime.fromisoformat(s["evaluated_at"]) + BOUND) for s in stored
    )
    service.probe("p").release()


async def test_staleness_is_a_view_it_stores_no_sample_and_sends_nothing(
    service: Service,
) -> None:
    await _go_then_stall(service)
    samples = (await service.get("/api/v1/gates/portal/samples")).json()["items"]
    changes_before = _decision_changes("portal")
    await service.clock.advance(40)
    for read in READ_PATHS.values():
        assert (await read(service))[0] == "no_go"
    after = (await service.get("/api/v1/gates/portal/samples")).json()["items"]
    assert [s["decision"] for s in after] == [s["decision"] for s in samples]
    assert all(not r.startswith("stale") for s in after for r in s["reasons"])
    assert _decision_changes("portal") == changes_before  # no change counted, no webhook
    service.probe("p").release()


def _decision_changes(gate: str) -> dict[str, float | None]:
    return {
        d: metrics.REGISTRY.get_sample_value(
            "gonogo_decision_changes_total", {"gate": gate, "decision": d}
        )
        for d in ("go", "no_go", "rollback")
    }


async def test_a_running_checks_expired_latest_decision_reads_stale(service: Service) -> None:
    # ``signed`` needs sign-offs, so its check stays running with a no_go after a pass.
    check = await service.start_check("signed")  # its first sample is taken at once
    await service.advance(10)
    await service.samples_reach(check["id"], 2)
    await service.quiet()
    running = await service.check(check["id"])
    assert running["state"] == "running" and running["decision"] == "no_go"
    assert running["expires_at"] is not None
    assert not running["reasons"][0].startswith("stale")

    service.probe("q").hang()
    await service.clock.advance(40)  # signed: interval 10s, so the bound is 30s
    stale = await service.check(check["id"])
    assert stale["state"] == "running" and stale["decision"] == "no_go"
    assert stale["reasons"][0].startswith(f"stale since {running['expires_at']}")
    listed = (await service.get("/api/v1/checks", params={"gate": "signed"})).json()["items"]
    assert listed[0]["reasons"][0].startswith("stale since")
    page = (await service.client.get("/status.json")).json()["checks"]
    assert page[0]["reasons"][0].startswith("stale since")
    service.probe("q").release()
