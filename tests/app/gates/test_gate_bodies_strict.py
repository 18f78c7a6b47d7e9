"""``PUT /api/v1/gates/{g}``: loose types and overflowing numbers are a located 422, never a
500, and nothing is stored (the same loader as gate files; see tests/gates/test_loader.py)."""

from __future__ import annotations

import pytest

from tests.app.conftest import Service

BASE = """\
interval: 30s
probes:
  r: {type: constant, value: 1}
criteria:
  - name: ratio
    probe: r
    go: "> 0.5"
"""

CASES = [
    # (body, where the problem is, its line)
    (BASE + "steady_for: true\n", ["body", "steady_for"], 8),
    (BASE + "rollback_after: true\n", ["body", "rollback_after"], 8),
    (BASE + "timeout: 99999999999999999999d\n", ["body", "timeout"], 8),
    (BASE.replace("30s", "99999999999999999999d"), ["body", "interval"], 1),
    (BASE.replace('"> 0.5"', '"> 1e999"'), ["body", "criteria", 0, "go"], 7),
    (BASE + "    window: 99999999999999999999d\n", ["body", "criteria", 0, "window"], 8),
    (BASE.replace("value: 1}", "value: 1, timeout: true}"), ["body", "probes", "r", "timeout"], 3),
    (
        '{"interval": "30s", "steady_for": true, "probes": {"r": {"type": "constant", "value": 1}},'
        ' "criteria": [{"name": "ratio", "probe": "r", "go": "> 0.5"}]}',
        ["body", "steady_for"],
        1,
    ),
]


@pytest.mark.parametrize(("body", "loc", "line"), CASES)
async def test_loose_or_overflowing_gate_bodies_are_a_located_422(
    service: Service, body: str, loc: list[object], line: int
) -> None:
    response = await service.client.put(
        "/api/v1/gates/strict", content=body, headers=service.headers("admin")
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert [(e["loc"], e["line"]) for e in errors] == [(loc, line)], errors
    assert (await service.get("/api/v1/gates/strict")).status_code == 404
